"""Parameter estimation: QBER with confidence bounds and finite-size decoy bounds.

Hazmat layer. From the counts of one sifted block:

* decoy-state BB84 (three intensities μ1 > μ2 + μ3, μ2 > μ3 ≥ 0): the lower bounds on the
  vacuum and single-photon key bits s_Z,0, s_Z,1, the upper bound on the single-photon test
  errors v_X,1 and the phase-error bound φ of Lim, Curty, Walenta, Xu, Zbinden, PRA 89,
  022307 (2014), Eqs. (2)–(5), with Hoeffding deviations √(n/2 · ln(21/ε_sec)); and the
  secret-key length of their Eq. (1),
  ℓ = ⌊s_Z,0 + s_Z,1 − s_Z,1 h(φ) − λ_EC − 6 log₂(21/ε_sec) − log₂(2/ε_cor)⌋.
  (Lim's key basis is called X; here the key basis is Z and the test basis X.) The
  probabilities p_k of the intensity classes are taken as the fractions of pulses sent.
* BBM92 (no decoys needed, every coincidence comes from the source): the key length of
  Tomamichel, Lim, Gisin, Renner, Nat. Commun. 3, 634 (2012), Eq. (2),
  ℓ = ⌊n (1 − h(Q_X + μ)) − λ_EC − log₂(2/(ε_sec² ε_cor))⌋ with
  μ = √((n + k)/(n k) · (k + 1)/k · ln(2/ε_sec)), k the number of test bits.

The QBER reported is the test-basis error rate with a two-sided Clopper–Pearson interval.
A block whose test QBER exceeds the threshold aborts with :class:`QberTooHigh`; a block
with no positive key length aborts with :class:`ProtocolAbort`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betaincinv

from qkdnet.errors import ParameterError, ProtocolAbort, QberTooHigh, RecordsError
from qkdnet.postprocessing.sifting import SiftedBlock
from qkdnet.quantum.bbm92 import statistical_deviation, tomamichel_key_length

__all__ = [
    "Estimate",
    "binary_entropy",
    "clopper_pearson",
    "estimate_parameters",
    "secret_key_length",
]

_SECRECY_TERMS = 21.0


def binary_entropy(p: float) -> float:
    """Binary Shannon entropy h(p), bits; h(0) = h(1) = 0, and h(p) = 1 for p ≥ 1/2."""
    if p <= 0.0:
        return 0.0
    if p >= 0.5:
        return 1.0
    return -p * math.log2(p) - (1.0 - p) * math.log2(1.0 - p)


def clopper_pearson(errors: int, n: int, confidence: float = 0.999) -> tuple[float, float]:
    """Two-sided Clopper–Pearson interval on an error rate (Clopper & Pearson, 1934)."""
    if n <= 0:
        return 0.0, 1.0
    alpha = 1.0 - confidence
    # quantiles of Beta(a, b): the inverse regularized incomplete beta function, which is
    # what scipy.stats.beta.ppf evaluates too, without its ~30 us of argument handling
    lo = 0.0 if errors == 0 else float(betaincinv(errors, n - errors + 1, alpha / 2.0))
    hi = 1.0 if errors == n else float(betaincinv(errors + 1, n - errors, 1.0 - alpha / 2.0))
    return lo, hi


@dataclass(frozen=True)
class Estimate:
    """Parameter estimates of one block (counts in bits, rates as fractions).

    ``qber`` is the observed test-basis error rate, ``qber_lower``/``qber_upper`` its
    Clopper–Pearson interval; ``vacuum_bits``/``single_photon_bits`` the lower bounds s_Z,0
    and s_Z,1 on the key bits from vacuum and single-photon pulses (equal to the key length
    and 0 for BBM92), ``phase_error`` the upper bound φ on their phase-error rate.
    """

    protocol: str
    key_bits: int
    test_bits: int
    test_errors: int
    qber: float
    qber_lower: float
    qber_upper: float
    vacuum_bits: float
    single_photon_bits: float
    single_photon_test_bits: float
    single_photon_test_errors: float
    phase_error: float
    epsilon_sec: float
    epsilon_cor: float


def _lim_bounds(
    counts: np.ndarray, mu: np.ndarray, p: np.ndarray, eps_sec: float, total: float
) -> tuple[float, float]:
    """s_0 (Eq. 2) and s_1 (Eq. 3) lower bounds from per-class counts (Lim et al. 2014)."""
    dev = math.sqrt(total / 2.0 * math.log(_SECRECY_TERMS / eps_sec))
    weight = np.exp(mu) / p
    lo = weight * (counts - dev)
    hi = weight * (counts + dev)
    tau0 = float(np.sum(p * np.exp(-mu)))
    tau1 = float(np.sum(p * mu * np.exp(-mu)))
    mu1, mu2, mu3 = (float(x) for x in mu)
    s0 = tau0 * (mu2 * lo[2] - mu3 * hi[1]) / (mu2 - mu3)
    s0 = max(float(s0), 0.0)  # a negative lower bound says nothing; 0 is valid
    s1 = (
        tau1
        * mu1
        * (lo[1] - hi[2] - (mu2**2 - mu3**2) / mu1**2 * (hi[0] - s0 / tau0))
        / (mu1 * (mu2 - mu3) - mu2**2 + mu3**2)
    )
    return s0, max(float(s1), 0.0)


def _gamma(a: float, b: float, c: float, d: float) -> float:
    """γ(a, b, c, d) of Lim et al. 2014, Eq. (5)."""
    b = min(max(b, 1e-12), 0.5)
    spread = (c + d) / (c * d)
    bb = b * (1.0 - b)
    return math.sqrt(
        max(spread * bb / math.log(2.0) * math.log2(spread / bb * _SECRECY_TERMS**2 / a**2), 0.0)
    )


def estimate_parameters(
    block: SiftedBlock,
    *,
    epsilon_sec: float = 1e-10,
    epsilon_cor: float = 1e-15,
    qber_threshold: float = 0.11,
    confidence: float = 0.999,
) -> Estimate:
    """Estimate QBER and the decoy bounds of one sifted block (Lim et al. 2014, Eqs. 2–5).

    Raises QberTooHigh when the test-basis QBER exceeds ``qber_threshold`` (a fraction),
    ProtocolAbort when there are no test or key bits, RecordsError when the intensities do
    not satisfy μ1 > μ2 + μ3, μ2 > μ3 ≥ 0 (three classes) for decoy BB84, and
    ParameterError for ε or thresholds out of range.
    """
    for name, eps in (("epsilon_sec", epsilon_sec), ("epsilon_cor", epsilon_cor)):
        if not (0.0 < eps < 1.0):
            raise ParameterError(name, f"must be in (0, 1), got {eps!r}")
    if not (0.0 < qber_threshold <= 0.5):
        raise ParameterError("qber_threshold", f"must be in (0, 0.5], got {qber_threshold!r}")
    n_key = int(block.key_counts.sum())
    n_test = int(block.test_counts.sum())
    m_test = int(block.test_errors.sum())
    if n_key == 0 or n_test == 0:
        raise ProtocolAbort(
            f"too few detections: {n_key} key bits and {n_test} test bits; send more pulses"
        )
    qber = m_test / n_test
    lo, hi = clopper_pearson(m_test, n_test, confidence)
    if qber > qber_threshold:
        raise QberTooHigh(
            f"QBER {qber:.2%} (test basis, {m_test}/{n_test}) exceeds the threshold "
            f"{qber_threshold:.2%}; the block is discarded"
        )
    if block.protocol == "bbm92":
        mu_dev = float(statistical_deviation(n_key, n_test, epsilon_sec))
        return Estimate(
            protocol=block.protocol, key_bits=n_key, test_bits=n_test, test_errors=m_test,
            qber=qber, qber_lower=lo, qber_upper=hi, vacuum_bits=0.0,
            single_photon_bits=float(n_key), single_photon_test_bits=float(n_test),
            single_photon_test_errors=float(m_test), phase_error=min(qber + mu_dev, 0.5),
            epsilon_sec=epsilon_sec, epsilon_cor=epsilon_cor,
        )
    mu = np.asarray(block.intensities, dtype=float)
    if mu.size != 3 or not (mu[0] > mu[1] + mu[2] and mu[1] > mu[2] >= 0.0):
        raise RecordsError(
            "intensities: decoy BB84 needs three classes with mu1 > mu2 + mu3 and "
            f"mu2 > mu3 >= 0 (signal, decoy, weakest), got {block.intensities}"
        )
    sent = block.pulses_sent.astype(float)
    if np.any(sent <= 0):
        raise ProtocolAbort("an intensity class has no pulses sent; decoy bounds need all three")
    p = sent / sent.sum()
    s0, s1 = _lim_bounds(block.key_counts.astype(float), mu, p, epsilon_sec, n_key)
    _, s1_test = _lim_bounds(block.test_counts.astype(float), mu, p, epsilon_sec, n_test)
    # Eq. (4): upper bound on single-photon errors in the test basis.
    dev_m = math.sqrt(m_test / 2.0 * math.log(_SECRECY_TERMS / epsilon_sec))
    weight = np.exp(mu) / p
    m = block.test_errors.astype(float)
    tau1 = float(np.sum(p * mu * np.exp(-mu)))
    v1 = tau1 * (weight[1] * (m[1] + dev_m) - weight[2] * (m[2] - dev_m)) / (mu[1] - mu[2])
    v1 = max(float(v1), 0.0)
    if s1_test > 0.0 and s1 > 0.0:
        ratio = min(v1 / s1_test, 0.5)
        phi = min(ratio + _gamma(epsilon_sec, ratio, s1_test, s1), 0.5)
    else:
        phi = 0.5
    return Estimate(
        protocol=block.protocol, key_bits=n_key, test_bits=n_test, test_errors=m_test,
        qber=qber, qber_lower=lo, qber_upper=hi, vacuum_bits=s0, single_photon_bits=s1,
        single_photon_test_bits=s1_test, single_photon_test_errors=v1, phase_error=phi,
        epsilon_sec=epsilon_sec, epsilon_cor=epsilon_cor,
    )


def secret_key_length(estimate: Estimate, leaked_bits: int) -> int:
    """Secret-key length ℓ in bits allowed by the security proof, given the leakage λ_EC.

    Decoy BB84: Lim et al. 2014, Eq. (1). BBM92: Tomamichel et al. 2012, Eq. (2). Returns
    0 (never negative) when no key can be extracted. ``leaked_bits`` counts every bit
    disclosed about the key after sifting (reconciliation and verification).
    """
    if leaked_bits < 0:
        raise ParameterError("leaked_bits", f"must be >= 0, got {leaked_bits}")
    eps_sec, eps_cor = estimate.epsilon_sec, estimate.epsilon_cor
    if estimate.protocol == "bbm92":
        # Q_tol is the observed test-basis QBER; phase_error above is Q_tol + μ.
        ell = float(tomamichel_key_length(
            estimate.key_bits, estimate.test_bits, estimate.qber, leaked_bits, eps_sec, eps_cor
        ))
    else:
        if estimate.phase_error >= 0.5:
            return 0
        ell = (
            estimate.vacuum_bits
            + estimate.single_photon_bits * (1.0 - binary_entropy(estimate.phase_error))
            - leaked_bits
            - 6.0 * math.log2(_SECRECY_TERMS / eps_sec)
            - math.log2(2.0 / eps_cor)
        )
    return max(0, min(int(math.floor(ell)), estimate.key_bits))
