"""Finite-key decoy-state BB84 after Lim, Curty, Walenta, Xu and Zbinden (2014).

Implements the secret-key length of C. C. W. Lim et al., "Concise security bounds for
practical decoy-state quantum key distribution", Phys. Rev. A 89, 022307 (2014),
arXiv:1311.7129 — Eqs. (1)-(5) — for their fibre system model (Sec. IV), and the
optimisation of the free protocol parameters {q_x, p_mu1, p_mu2, mu1, mu2} per distance.

The protocol: Alice picks basis X with probability q_x, intensity mu1 > mu2 + mu3,
mu2 > mu3 >= 0 with probabilities p_mu1, p_mu2, p_mu3 = 1 - p_mu1 - p_mu2. The key comes
from the n_X detections where both chose X (the post-processing block); the Z basis
estimates the phase error. The secret key length is (Eq. 1)

    l = floor(s_X0 + s_X1 - s_X1 h(phi_X) - lambda_EC - 6 log2(21/eps_sec) - log2(2/eps_cor))

with the decoy bounds of Eqs. (2)-(4) (Hoeffding deviations sqrt(n/2 ln(21/eps_sec))) and
the phase-error bound of Eq. (5). Lim et al. evaluate it with eps_sec = kappa * l,
kappa = 1e-15 (secrecy leakage per key bit); :class:`FiniteKeyParameters` supports that
(``epsilon_sec_per_bit``) and a fixed eps_sec.

Also the one-decoy variant of Rusca, Boaron, Gruenenfelder, Martin and Zbinden, "Finite-key
analysis for the 1-decoy state QKD protocol", Appl. Phys. Lett. 112, 171104 (2018),
arXiv:1801.03443, Eqs. (A16)-(A25): ``FiniteKeyParameters.rusca2018()`` or
``decoy_states=1``.

Everything is vectorised over distance; the optimiser is a Nelder-Mead search run on all
distances at once (one simplex per distance, all advanced together), its objective a Numba
kernel (two decoys) or NumPy (one decoy). Pure computation: no I/O, no clocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkdnet.errors import ParameterError
from qkdnet.quantum._finite_key_kernel import objective_kernel

if TYPE_CHECKING:
    from qkdnet.quantum.link import LinkSpec

__all__ = [
    "FiniteKeyParameters",
    "FiniteKeyResult",
    "finite_key_rate",
    "asymptotic_decoy_rate",
    "maximum_distance_km",
]

FloatArray = NDArray[np.float64]

#: Number of error terms the secrecy parameter is split into in Lim et al., Eq. (B4).
_SECRECY_TERMS = 21.0
_LN2 = math.log(2.0)
#: Iterations of the fixed point eps_sec = kappa * l inside the optimiser and at the end.
_EPS_ITERATIONS_SEARCH = 3
_EPS_ITERATIONS_FINAL = 8


def _check_probability(name: str, value: float, *, open_interval: bool = False) -> None:
    ok = (0.0 < value < 1.0) if open_interval else (0.0 <= value <= 1.0)
    if not ok or math.isnan(value):
        interval = "(0, 1)" if open_interval else "[0, 1]"
        raise ParameterError(name, f"must be a probability in {interval}, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    if not (value > 0.0) or math.isinf(value):
        raise ParameterError(name, f"must be a finite number > 0, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not (value >= 0.0) or math.isinf(value):
        raise ParameterError(name, f"must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class FiniteKeyParameters:
    """System model and protocol settings of finite-key decoy BB84 (Lim et al. 2014, Sec. IV).

    The defaults are Lim et al.'s parameter set (see :meth:`lim2014`). The protocol settings
    (``basis_probability_x`` ... ``decoy_intensity``) are used as given when
    ``finite_key_rate(..., optimise=False)`` and as the starting point of the optimiser
    otherwise. Units are in the field names; probabilities are per pulse (per gate).

    Raises :class:`qkdnet.errors.ParameterError` naming the field for any value out of range.
    """

    #: Fibre attenuation, dB/km (Lim et al.: 0.2).
    loss_db_per_km: float = 0.2
    #: Loss outside the fibre and detector (connectors, splices), dB.
    extra_loss_db: float = 0.0
    #: Bob's detection efficiency eta_Bob, 0..1 (Lim et al.: 10 %).
    detector_efficiency: float = 0.10
    #: Dark-count probability per detector and gate p_dc (Lim et al.: 6e-7).
    dark_count_probability: float = 6e-7
    #: After-pulse probability p_ap (Lim et al.: 4e-2).
    afterpulse_probability: float = 4e-2
    #: Optical misalignment error e_mis (Lim et al.: 5e-3), 0..0.5.
    misalignment_error: float = 5e-3
    #: Error-correction efficiency f_EC >= 1; lambda_EC = f_EC n_X h(e_obs) (Lim et al.: 1.16).
    error_correction_efficiency: float = 1.16
    #: Correctness parameter eps_cor (Lim et al.: 1e-15).
    epsilon_cor: float = 1e-15
    #: Secrecy parameter eps_sec, used only when ``epsilon_sec_per_bit`` is None.
    epsilon_sec: float = 1e-9
    #: kappa in eps_sec = kappa * l (secrecy leakage per key bit; Lim et al.: 1e-15), or None
    #: to use the fixed ``epsilon_sec``.
    epsilon_sec_per_bit: float | None = 1e-15
    #: Weakest intensity mu3, mean photons per pulse (Lim et al.: 2e-4).
    vacuum_intensity: float = 2e-4
    #: Probability q_x of the X (key) basis, for Alice and for Bob.
    basis_probability_x: float = 0.85
    #: Probability p_mu1 of the signal intensity.
    signal_probability: float = 0.65
    #: Probability p_mu2 of the decoy intensity (p_mu3 = 1 - p_mu1 - p_mu2).
    decoy_probability: float = 0.25
    #: Signal intensity mu1, mean photons per pulse.
    signal_intensity: float = 0.5
    #: Decoy intensity mu2, mean photons per pulse.
    decoy_intensity: float = 0.15
    #: 2: signal + two decoys (Lim et al. 2014); 1: signal + one decoy, no vacuum-like state
    #: (Rusca et al., APL 112, 171104, 2018), where ``vacuum_intensity`` and
    #: ``decoy_probability`` are unused (p_mu2 = 1 - p_mu1).
    decoy_states: int = 2

    def __post_init__(self) -> None:
        _check_non_negative("loss_db_per_km", self.loss_db_per_km)
        _check_non_negative("extra_loss_db", self.extra_loss_db)
        _check_probability("detector_efficiency", self.detector_efficiency)
        if self.detector_efficiency == 0.0:
            raise ParameterError("detector_efficiency", "must be > 0, got 0.0")
        _check_probability("dark_count_probability", self.dark_count_probability)
        if self.dark_count_probability > 0.5:
            raise ParameterError(
                "dark_count_probability",
                f"must be in [0, 0.5], got {self.dark_count_probability!r}",
            )
        _check_probability("afterpulse_probability", self.afterpulse_probability)
        if not (0.0 <= self.misalignment_error <= 0.5):
            raise ParameterError(
                "misalignment_error", f"must be in [0, 0.5], got {self.misalignment_error!r}"
            )
        if not (self.error_correction_efficiency >= 1.0) or math.isinf(
            self.error_correction_efficiency
        ):
            raise ParameterError(
                "error_correction_efficiency",
                f"must be a finite number >= 1 (1 is the Shannon limit), "
                f"got {self.error_correction_efficiency!r}",
            )
        _check_probability("epsilon_cor", self.epsilon_cor, open_interval=True)
        _check_probability("epsilon_sec", self.epsilon_sec, open_interval=True)
        if self.epsilon_sec_per_bit is not None:
            _check_probability("epsilon_sec_per_bit", self.epsilon_sec_per_bit, open_interval=True)
        if self.decoy_states not in (1, 2):
            raise ParameterError(
                "decoy_states",
                f"must be 1 (Rusca et al. 2018) or 2 (Lim et al. 2014), got {self.decoy_states!r}",
            )
        _check_non_negative("vacuum_intensity", self.vacuum_intensity)
        _check_probability("basis_probability_x", self.basis_probability_x, open_interval=True)
        _check_probability("signal_probability", self.signal_probability, open_interval=True)
        _check_probability("decoy_probability", self.decoy_probability, open_interval=True)
        total = self.signal_probability + self.decoy_probability
        if self.decoy_states == 2 and not (total < 1.0):
            raise ParameterError(
                "decoy_probability",
                "signal_probability + decoy_probability must be < 1 (the weakest intensity "
                f"needs a probability > 0), got {total!r}",
            )
        _check_positive("decoy_intensity", self.decoy_intensity)
        _check_positive("signal_intensity", self.signal_intensity)
        if self.decoy_states == 1:
            if not (self.signal_intensity > self.decoy_intensity):
                raise ParameterError(
                    "signal_intensity",
                    f"must be > decoy_intensity ({self.decoy_intensity!r}), "
                    f"got {self.signal_intensity!r}",
                )
            return
        if not (self.decoy_intensity > self.vacuum_intensity):
            raise ParameterError(
                "decoy_intensity",
                f"must be > vacuum_intensity ({self.vacuum_intensity!r}), "
                f"got {self.decoy_intensity!r}",
            )
        if not (self.signal_intensity > self.decoy_intensity + self.vacuum_intensity):
            raise ParameterError(
                "signal_intensity",
                "must be > decoy_intensity + vacuum_intensity "
                f"({self.decoy_intensity + self.vacuum_intensity!r}), "
                f"got {self.signal_intensity!r}",
            )

    @classmethod
    def lim2014(cls) -> FiniteKeyParameters:
        """Lim et al., PRA 89, 022307 (2014), Sec. IV: their fibre system and security settings.

        mu3 = 2e-4, eta_Bob = 10 %, p_dc = 6e-7, p_ap = 4e-2, 0.2 dB/km, e_mis = 5e-3,
        f_EC = 1.16, eps_cor = 1e-15 and eps_sec = kappa * l with kappa = 1e-15.
        """
        return cls()

    @classmethod
    def rusca2018(cls) -> FiniteKeyParameters:
        """The one-decoy protocol of Rusca et al., APL 112, 171104 (2018), on Lim's system.

        Two intensities mu1 > mu2 (no vacuum-like third one); system and security settings as
        :meth:`lim2014`, so that the two protocols can be compared on one system.
        """
        return cls(decoy_states=1, signal_probability=0.7, decoy_probability=0.3)

    @classmethod
    def from_link(cls, link: LinkSpec) -> FiniteKeyParameters:
        """The finite-key model of a :class:`~qkdnet.quantum.link.LinkSpec`.

        Takes loss, detector, misalignment and error-correction figures from the link and,
        when the link has three intensities (signal, decoy, weakest), its intensities and
        their probabilities and its basis probability (Z in the link is the key basis, X
        here). Security settings keep Lim et al.'s values.
        """
        values: dict[str, Any] = {
            "loss_db_per_km": link.loss_db_per_km,
            "extra_loss_db": link.extra_loss_db,
            "detector_efficiency": link.detector_efficiency,
            "dark_count_probability": link.dark_count_probability,
            "afterpulse_probability": link.afterpulse_probability,
            "misalignment_error": link.misalignment_error,
            "error_correction_efficiency": link.error_correction_efficiency,
        }
        if len(link.intensities) == 3 and link.intensity_probabilities[2] > 0.0:
            values.update(
                signal_intensity=link.intensities[0],
                decoy_intensity=link.intensities[1],
                vacuum_intensity=link.intensities[2],
                signal_probability=link.intensity_probabilities[0],
                decoy_probability=link.intensity_probabilities[1],
            )
        if 0.0 < link.basis_probability_z < 1.0:
            values["basis_probability_x"] = link.basis_probability_z
        return cls(**values)

    def with_(self, **changes: float | None) -> FiniteKeyParameters:
        """A copy with some fields changed (validated again)."""
        known = {f.name for f in fields(self)}
        for name in changes:
            if name not in known:
                raise ParameterError(name, f"unknown field; known fields are {sorted(known)}")
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FiniteKeyResult:
    """Finite-key rates and the protocol settings used, one entry per distance.

    ``rate_per_pulse`` is secret bits per pulse sent by Alice (l / N), 0 where no key;
    ``secret_key_length`` is l in bits for one block of ``block_size`` = n_X detections;
    ``pulses_sent`` is N, the pulses Alice sends to collect the block.
    """

    distance_km: FloatArray
    block_size: float
    rate_per_pulse: FloatArray
    secret_key_length: FloatArray
    pulses_sent: FloatArray
    basis_probability_x: FloatArray
    signal_probability: FloatArray
    decoy_probability: FloatArray
    signal_intensity: FloatArray
    decoy_intensity: FloatArray
    #: Upper bound phi_X on the phase-error rate of the single-photon events (Eq. 5).
    phase_error_bound: FloatArray
    #: Secrecy parameter eps_sec actually used at each distance.
    epsilon_sec: FloatArray
    params: FiniteKeyParameters


# --------------------------------------------------------------------------------------------
# The key-length formula, vectorised (all arguments broadcast together)
# --------------------------------------------------------------------------------------------


def _binary_entropy(x: FloatArray) -> FloatArray:
    x = np.clip(x, 1e-300, 0.5)
    return np.asarray(-x * np.log2(x) - (1.0 - x) * np.log2(1.0 - x))


@dataclass(frozen=True)
class _Model:
    """Expected per-pulse statistics of Lim et al.'s fibre model at given settings."""

    inv_pulses: FloatArray  # 1/N; 0 for an infinite block
    n_x: FloatArray  # n_X,k / N, shape (3, ...)
    n_z: FloatArray
    m_x_total: FloatArray  # m_X / N
    m_x: FloatArray  # m_X,k / N, shape (3, ...)
    m_z: FloatArray  # m_Z,k / N, shape (3, ...)
    mu: FloatArray  # (3, ...)
    p: FloatArray  # (3, ...)


def _system_model(
    eta_sys: FloatArray,
    block_size: FloatArray,
    qx: FloatArray,
    p1: FloatArray,
    p2: FloatArray,
    mu1: FloatArray,
    mu2: FloatArray,
    params: FiniteKeyParameters,
) -> _Model:
    """Detection and error probabilities of Lim et al. Sec. IV, scaled to counts per pulse.

    D_k = 1 - (1 - 2 p_dc) exp(-eta_sys k); R_k = D_k (1 + p_ap);
    e_k = p_dc + e_mis (1 - exp(-eta_sys k)) + p_ap D_k / 2. The paper prints eta_ch in the
    misalignment term; we use eta_sys, the photons that reach a detector, since only those
    can cause optical errors (see docs/validation-finite-key.md). With one decoy
    (Rusca et al. 2018) the third class has probability 0.
    """
    pdc = params.dark_count_probability
    pap = params.afterpulse_probability
    emis = params.misalignment_error
    one_decoy = params.decoy_states == 1
    mu3 = np.full_like(mu1, 0.0 if one_decoy else params.vacuum_intensity)
    mu = np.stack(np.broadcast_arrays(mu1, mu2, mu3))
    p3 = np.zeros_like(p1) if one_decoy else 1.0 - p1 - p2
    p = np.stack(np.broadcast_arrays(p1, p2, p3))
    transmitted = 1.0 - np.exp(-eta_sys * mu)
    detect = 1.0 - (1.0 - 2.0 * pdc) * np.exp(-eta_sys * mu)
    rate = detect * (1.0 + pap)
    error = pdc + emis * transmitted + pap * detect / 2.0
    p_detect = np.sum(p * rate, axis=0)
    qx2 = qx * qx
    qz2 = (1.0 - qx) * (1.0 - qx)
    with np.errstate(divide="ignore"):
        inv_pulses = np.where(np.isinf(block_size), 0.0, qx2 * p_detect / block_size)
    return _Model(
        inv_pulses=inv_pulses,
        n_x=qx2 * p * rate,
        n_z=qz2 * p * rate,
        m_x_total=qx2 * np.sum(p * error, axis=0),
        m_x=qx2 * p * error,
        m_z=qz2 * p * error,
        mu=mu,
        p=p,
    )


def _decoy_bounds(
    counts: FloatArray, deviation: FloatArray, model: _Model
) -> tuple[FloatArray, FloatArray]:
    """Lower bounds on vacuum and single-photon events, Eqs. (2)-(3), per pulse sent."""
    mu, p = model.mu, model.p
    weight = np.exp(mu) / p
    lower = weight * (counts - deviation)
    upper = weight * (counts + deviation)
    tau0 = np.sum(p * np.exp(-mu), axis=0)
    tau1 = np.sum(p * mu * np.exp(-mu), axis=0)
    mu1, mu2, mu3 = mu[0], mu[1], mu[2]
    s0 = tau0 * (mu2 * lower[2] - mu3 * upper[1]) / (mu2 - mu3)
    # A negative lower bound says nothing; 0 is valid and only raises the s1 bound (Eq. 3).
    s0 = np.maximum(s0, 0.0)
    s1 = (
        tau1
        * mu1
        * (lower[1] - upper[2] - (mu2**2 - mu3**2) / mu1**2 * (upper[0] - s0 / tau0))
        / (mu1 * (mu2 - mu3) - mu2**2 + mu3**2)
    )
    return s0, s1


def _gamma(
    eps: FloatArray,
    b: FloatArray,
    c: FloatArray,
    d: FloatArray,
    inv_pulses: FloatArray,
    terms: float = _SECRECY_TERMS,
) -> FloatArray:
    """gamma(a, b, c, d) of Lim et al. Eq. (5), with c, d given per pulse (times 1/N).

    ``terms`` is the number of error terms eps_sec is split into: 21 for Lim et al.,
    19 for Rusca et al. (their Eq. A24).
    """
    c = np.maximum(c, 1e-150)
    d = np.maximum(d, 1e-150)
    spread = inv_pulses * (c + d) / (c * d)  # (c+d)/(cd) in counts
    bb = b * (1.0 - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        inner = np.log2(spread / bb * terms**2 / eps**2)
        value = np.sqrt(np.maximum(spread * bb / _LN2 * inner, 0.0))
    return np.where(inv_pulses > 0.0, value, 0.0)


def _key_per_pulse(
    model: _Model, eps_sec: FloatArray, params: FiniteKeyParameters
) -> tuple[FloatArray, FloatArray]:
    """Lim et al. Eq. (1) divided by N (not floored), and phi_X; eps_sec may be an array."""
    inv = model.inv_pulses
    log_term = np.log(_SECRECY_TERMS / eps_sec)
    n_x_total = np.sum(model.n_x, axis=0)
    n_z_total = np.sum(model.n_z, axis=0)
    m_z_total = np.sum(model.m_z, axis=0)
    # Hoeffding deviation sqrt(n/2 ln(21/eps)) / N = sqrt((n/N) (1/N) ln(21/eps) / 2).
    dev_x = np.sqrt(n_x_total * inv * log_term / 2.0)
    dev_z = np.sqrt(n_z_total * inv * log_term / 2.0)
    dev_mz = np.sqrt(m_z_total * inv * log_term / 2.0)
    s_x0, s_x1 = _decoy_bounds(model.n_x, dev_x, model)
    _, s_z1 = _decoy_bounds(model.n_z, dev_z, model)
    mu, p = model.mu, model.p
    tau1 = np.sum(p * mu * np.exp(-mu), axis=0)
    weight = np.exp(mu) / p
    v_z1 = (
        tau1
        * (weight[1] * (model.m_z[1] + dev_mz) - weight[2] * (model.m_z[2] - dev_mz))
        / (mu[1] - mu[2])
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(s_z1 > 0.0, v_z1 / s_z1, 0.5)
    ratio = np.clip(ratio, 1e-12, 0.5)
    phi = ratio + _gamma(eps_sec, ratio, s_z1, s_x1, inv)
    phi = np.where((s_z1 > 0.0) & (s_x1 > 0.0), phi, 0.5)
    e_obs = model.m_x_total / n_x_total
    leak = params.error_correction_efficiency * n_x_total * _binary_entropy(e_obs)
    constants = 6.0 * np.log2(_SECRECY_TERMS / eps_sec) + math.log2(2.0 / params.epsilon_cor)
    # Where phi >= 1/2 the protocol aborts (no key); keep the value continuous for the search.
    ell = s_x0 + s_x1 * (1.0 - _binary_entropy(phi)) - leak - constants * inv
    return ell, phi


#: Error terms of eps_sec in Rusca et al. 2018, Eq. (A24): eps_sec = 19 eps.
_SECRECY_TERMS_ONE_DECOY = 19.0


def _one_decoy_bounds(
    n: FloatArray, m: FloatArray, dev_n: FloatArray, dev_m: FloatArray, model: _Model
) -> tuple[FloatArray, FloatArray]:
    """Rusca et al. 2018: s_0^l (A19) and s_1^l (A17) with the vacuum upper bound (A16)."""
    mu1, mu2 = model.mu[0], model.mu[1]
    p1, p2 = model.p[0], model.p[1]
    tau0 = p1 * np.exp(-mu1) + p2 * np.exp(-mu2)
    tau1 = p1 * mu1 * np.exp(-mu1) + p2 * mu2 * np.exp(-mu2)
    w1 = np.exp(mu1) / p1
    w2 = np.exp(mu2) / p2
    # Vacuum detections err with probability 1/2, so twice the decoy's errors bound them.
    s0_upper = 2.0 * (tau0 * w2 * (m[1] + dev_m) + dev_n)
    s0 = tau0 / (mu1 - mu2) * (mu1 * w2 * (n[1] - dev_n) - mu2 * w1 * (n[0] + dev_n))
    s1 = (
        tau1
        * mu1
        / (mu2 * (mu1 - mu2))
        * (
            w2 * (n[1] - dev_n)
            - mu2**2 / mu1**2 * w1 * (n[0] + dev_n)
            - (mu1**2 - mu2**2) / mu1**2 * s0_upper / tau0
        )
    )
    return np.maximum(s0, 0.0), s1


def _key_per_pulse_one_decoy(
    model: _Model, eps_sec: FloatArray, params: FiniteKeyParameters
) -> tuple[FloatArray, FloatArray]:
    """Rusca et al., APL 112, 171104 (2018), Eqs. (A16)-(A25), divided by N; X is the key basis.

    n^+- = e^k/p_k (n_k +- delta) as in Lim et al. (the printed A18 drops e^k/p_k, which
    A10 needs); deviations delta(n) = sqrt(n/2 ln(19/eps_sec)); 19 error terms (A24).
    """
    terms = _SECRECY_TERMS_ONE_DECOY
    inv = model.inv_pulses
    log_term = np.log(terms / eps_sec)

    def dev(total: FloatArray) -> FloatArray:
        return np.asarray(np.sqrt(total * inv * log_term / 2.0))

    n_x_total = np.sum(model.n_x, axis=0)
    n_z_total = np.sum(model.n_z, axis=0)
    m_z_total = np.sum(model.m_z, axis=0)
    s_x0, s_x1 = _one_decoy_bounds(
        model.n_x, model.m_x, dev(n_x_total), dev(model.m_x_total), model
    )
    _, s_z1 = _one_decoy_bounds(model.n_z, model.m_z, dev(n_z_total), dev(m_z_total), model)
    mu1, mu2 = model.mu[0], model.mu[1]
    p1, p2 = model.p[0], model.p[1]
    tau1 = p1 * mu1 * np.exp(-mu1) + p2 * mu2 * np.exp(-mu2)
    dev_mz = dev(m_z_total)
    v_z1 = (
        tau1
        / (mu1 - mu2)
        * (np.exp(mu1) / p1 * (model.m_z[0] + dev_mz) - np.exp(mu2) / p2 * (model.m_z[1] - dev_mz))
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(s_z1 > 0.0, v_z1 / s_z1, 0.5)
    ratio = np.clip(ratio, 1e-12, 0.5)
    phi = ratio + _gamma(eps_sec, ratio, s_z1, s_x1, inv, terms)
    phi = np.where((s_z1 > 0.0) & (s_x1 > 0.0), phi, 0.5)
    e_obs = model.m_x_total / n_x_total
    leak = params.error_correction_efficiency * n_x_total * _binary_entropy(e_obs)
    constants = 6.0 * np.log2(terms / eps_sec) + math.log2(2.0 / params.epsilon_cor)
    ell = s_x0 + s_x1 * (1.0 - _binary_entropy(phi)) - leak - constants * inv
    return ell, phi


def _key_per_pulse_any(
    model: _Model, eps_sec: FloatArray, params: FiniteKeyParameters
) -> tuple[FloatArray, FloatArray]:
    """Eq. (1) of Lim et al. or Eq. (A25) of Rusca et al., by ``params.decoy_states``."""
    if params.decoy_states == 1:
        return _key_per_pulse_one_decoy(model, eps_sec, params)
    return _key_per_pulse(model, eps_sec, params)


def _secure_key_per_pulse(
    model: _Model, params: FiniteKeyParameters, iterations: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Key per pulse with eps_sec = kappa * l solved by fixed-point iteration (or fixed eps).

    l(eps) grows with eps, so starting from eps = kappa * n_X (an upper bound on l) the
    iteration decreases monotonically to the largest self-consistent l; a few steps suffice
    because l depends on eps only through logarithms.
    """
    inv = model.inv_pulses
    kappa = params.epsilon_sec_per_bit
    if kappa is None:
        eps = np.full_like(inv, params.epsilon_sec)
        ell, phi = _key_per_pulse_any(model, eps, params)
        return ell, phi, eps
    with np.errstate(divide="ignore"):
        block = np.where(inv > 0.0, np.sum(model.n_x, axis=0) / np.where(inv > 0, inv, 1.0), 1.0)
    eps = np.minimum(kappa * block, 0.5)
    ell, phi = _key_per_pulse_any(model, eps, params)
    for _ in range(iterations):
        with np.errstate(divide="ignore"):
            bits = np.where(inv > 0.0, ell / np.where(inv > 0, inv, 1.0), 1.0)
        eps = np.clip(kappa * bits, kappa, 0.5)
        ell, phi = _key_per_pulse_any(model, eps, params)
    return ell, phi, eps


# --------------------------------------------------------------------------------------------
# The optimiser: Nelder-Mead on every distance at once
# --------------------------------------------------------------------------------------------

_DIM = 5


#: Box of the search (Lim et al. give none; the optimum lies well inside at every distance):
#: q_x in [0.01, 1 - 1e-9], each p_k >= 1e-4, mu2 - mu3 in (1e-4, 1.5), mu1 - mu2 - mu3 in
#: (1e-3, 2). Bounded coordinates keep the simplex away from degenerate settings where the
#: formulas overflow.
_QX_RANGE = (1e-4, 1.0 - 1e-9)
_P_FLOOR = 1e-4
_MU2_RANGE = (1e-4, 1.5)
_MU1_RANGE = (1e-3, 2.0)


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


def _logit(y: FloatArray) -> FloatArray:
    return np.asarray(np.log(y / (1.0 - y)))


def _to_settings(
    x: FloatArray, mu3: float
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Unconstrained coordinates -> (q_x, p_mu1, p_mu2, mu1, mu2) obeying every constraint."""
    qx = _QX_RANGE[0] + (_QX_RANGE[1] - _QX_RANGE[0]) * _sigmoid(x[..., 0])
    e1 = np.exp(np.clip(x[..., 1], -30.0, 30.0))
    e2 = np.exp(np.clip(x[..., 2], -30.0, 30.0))
    free = 1.0 - 3.0 * _P_FLOOR
    total = 1.0 + e1 + e2
    p1 = _P_FLOOR + free * e1 / total
    p2 = _P_FLOOR + free * e2 / total
    mu2 = mu3 + _MU2_RANGE[0] + (_MU2_RANGE[1] - _MU2_RANGE[0]) * _sigmoid(x[..., 3])
    mu1 = mu2 + mu3 + _MU1_RANGE[0] + (_MU1_RANGE[1] - _MU1_RANGE[0]) * _sigmoid(x[..., 4])
    return qx, p1, p2, mu1, mu2


def _from_settings(
    qx: FloatArray, p1: FloatArray, p2: FloatArray, mu1: FloatArray, mu2: FloatArray, mu3: float
) -> FloatArray:
    """Inverse of :func:`_to_settings` (settings are clipped into the search box first)."""
    eps = 1e-12
    free = 1.0 - 3.0 * _P_FLOOR
    a1 = np.clip((p1 - _P_FLOOR) / free, eps, 1.0)
    a2 = np.clip((p2 - _P_FLOOR) / free, eps, 1.0)
    a3 = np.clip(1.0 - a1 - a2, eps, 1.0)
    q = np.clip((qx - _QX_RANGE[0]) / (_QX_RANGE[1] - _QX_RANGE[0]), eps, 1.0 - eps)
    m2 = np.clip((mu2 - mu3 - _MU2_RANGE[0]) / (_MU2_RANGE[1] - _MU2_RANGE[0]), eps, 1.0 - eps)
    m1 = np.clip(
        (mu1 - mu2 - mu3 - _MU1_RANGE[0]) / (_MU1_RANGE[1] - _MU1_RANGE[0]), eps, 1.0 - eps
    )
    return np.stack(
        np.broadcast_arrays(_logit(q), np.log(a1 / a3), np.log(a2 / a3), _logit(m2), _logit(m1)),
        axis=-1,
    ).astype(float)


def _objective(
    x: FloatArray, eta_sys: FloatArray, block_size: FloatArray, params: FiniteKeyParameters
) -> FloatArray:
    """Search objective per row, by the Numba kernel (same numbers as _objective_reference).

    The one-decoy protocol has no kernel and uses the NumPy reference.
    """
    if params.decoy_states == 1:
        return _objective_reference(x, eta_sys, block_size, params)
    box = np.array([*_QX_RANGE, _P_FLOOR, *_MU2_RANGE, *_MU1_RANGE])
    kappa = params.epsilon_sec_per_bit
    model = np.array(
        [
            params.vacuum_intensity,
            params.dark_count_probability,
            params.afterpulse_probability,
            params.misalignment_error,
            params.error_correction_efficiency,
            params.epsilon_cor,
            params.epsilon_sec,
            -1.0 if kappa is None else kappa,
        ]
    )
    return np.asarray(
        objective_kernel(
            np.ascontiguousarray(x, dtype=float).reshape(-1, _DIM),
            np.ascontiguousarray(eta_sys, dtype=float).reshape(-1),
            np.ascontiguousarray(block_size, dtype=float).reshape(-1),
            box,
            model,
            _EPS_ITERATIONS_SEARCH,
        )
    )


def _objective_reference(
    x: FloatArray, eta_sys: FloatArray, block_size: FloatArray, params: FiniteKeyParameters
) -> FloatArray:
    """Negative key per pulse (continuous, may be positive where there is no key)."""
    qx, p1, p2, mu1, mu2 = _settings(x, params)
    with np.errstate(all="ignore"):
        model = _system_model(eta_sys, block_size, qx, p1, p2, mu1, mu2, params)
        ell, _, _ = _secure_key_per_pulse(model, params, _EPS_ITERATIONS_SEARCH)
        # With key: bits per pulse (scaled by 1/eta_sys to be comparable across distances).
        # Without: the deficit per block detection. Per pulse would reward sending more pulses
        # per block (q_x -> 0) just to shrink the deficit; both are 0 at l = 0, so the
        # objective stays continuous and any setting with key beats any without.
        per_block = np.where(np.isinf(block_size), ell, ell / (model.inv_pulses * block_size))
        value = np.where(ell > 0.0, -ell / eta_sys, -per_block)
    return np.where(np.isfinite(value), value, np.inf)


def _nelder_mead(
    x0: FloatArray,
    eta_sys: FloatArray,
    block_size: FloatArray,
    params: FiniteKeyParameters,
    step: float,
    iterations: int,
) -> tuple[FloatArray, FloatArray]:
    """Minimise _objective for every row of x0 (shape (n, 5)) with its own simplex."""
    n = x0.shape[0]
    simplex = np.repeat(x0[:, None, :], _DIM + 1, axis=1)
    for i in range(_DIM):
        simplex[:, i + 1, i] += step
    values = _objective(
        simplex.reshape(-1, _DIM),
        np.repeat(eta_sys, _DIM + 1),
        np.repeat(block_size, _DIM + 1),
        params,
    ).reshape(n, _DIM + 1)
    active = np.arange(n)
    for _ in range(iterations):
        if active.size == 0:
            break
        s = simplex[active]
        f = values[active]
        order = np.argsort(f, axis=1)
        s = np.take_along_axis(s, order[:, :, None], axis=1)
        f = np.take_along_axis(f, order, axis=1)
        eta_a, block_a = eta_sys[active], block_size[active]
        centroid = s[:, :-1].mean(axis=1)
        worst = s[:, -1]
        reflected = centroid + (centroid - worst)
        f_r = _objective(reflected, eta_a, block_a, params)
        best, second, worst_f = f[:, 0], f[:, -2], f[:, -1]
        expand = f_r < best
        outside = (f_r >= second) & (f_r < worst_f)
        inside = f_r >= worst_f
        trial = np.where(
            expand[:, None],
            centroid + 2.0 * (reflected - centroid),
            np.where(
                outside[:, None],
                centroid + 0.5 * (reflected - centroid),
                centroid + 0.5 * (worst - centroid),
            ),
        )
        need = expand | outside | inside
        f_t = np.full(active.size, np.inf)
        if need.any():
            f_t[need] = _objective(trial[need], eta_a[need], block_a[need], params)
        new_point = reflected.copy()
        new_value = f_r.copy()
        take_expand = expand & (f_t < f_r)
        take_outside = outside & (f_t <= f_r)
        take_inside = inside & (f_t < worst_f)
        take_trial = take_expand | take_outside | take_inside
        new_point[take_trial] = trial[take_trial]
        new_value[take_trial] = f_t[take_trial]
        shrink = (outside & ~take_outside) | (inside & ~take_inside)
        s[:, -1] = np.where(shrink[:, None], s[:, -1], new_point)
        f[:, -1] = np.where(shrink, f[:, -1], new_value)
        if shrink.any():
            rows = np.flatnonzero(shrink)
            shrunk = s[rows, :1] + 0.5 * (s[rows, 1:] - s[rows, :1])
            f_s = _objective(
                shrunk.reshape(-1, _DIM),
                np.repeat(eta_a[rows], _DIM),
                np.repeat(block_a[rows], _DIM),
                params,
            ).reshape(rows.size, _DIM)
            s[rows, 1:] = shrunk
            f[rows, 1:] = f_s
        simplex[active] = s
        values[active] = f
        # A row is done when its simplex is small in both coordinates and value.
        size = np.max(np.abs(s[:, 1:] - s[:, :1]), axis=(1, 2))
        spread = np.abs(f[:, -1] - f[:, 0])
        scale = np.maximum(np.abs(f[:, 0]), 1e-300)
        done = (size < 1e-4) | (np.isfinite(spread) & (spread <= 1e-7 * scale) & (size < 1e-2))
        active = active[~done]
    best_index = np.argmin(values, axis=1)
    x_best = simplex[np.arange(n), best_index]
    return x_best, values[np.arange(n), best_index]


def _settings(
    x: FloatArray, params: FiniteKeyParameters
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Coordinates -> (q_x, p_mu1, p_mu2, mu1, mu2) for the protocol in ``params``.

    One decoy (Rusca et al. 2018): p_mu2 = 1 - p_mu1 and mu1 > mu2 > 0; the third
    coordinate is unused.
    """
    if params.decoy_states == 2:
        return _to_settings(x, params.vacuum_intensity)
    qx = _QX_RANGE[0] + (_QX_RANGE[1] - _QX_RANGE[0]) * _sigmoid(x[..., 0])
    p1 = _P_FLOOR + (1.0 - 2.0 * _P_FLOOR) * _sigmoid(x[..., 1])
    mu2 = _MU2_RANGE[0] + (_MU2_RANGE[1] - _MU2_RANGE[0]) * _sigmoid(x[..., 3])
    mu1 = mu2 + _MU1_RANGE[0] + (_MU1_RANGE[1] - _MU1_RANGE[0]) * _sigmoid(x[..., 4])
    return qx, p1, 1.0 - p1, mu1, mu2


def _default_start(params: FiniteKeyParameters, n: int) -> FloatArray:
    if params.decoy_states == 1:
        eps = 1e-12

        def unit(value: float, lo: float, hi: float) -> float:
            return float(_logit(np.clip((value - lo) / (hi - lo), eps, 1.0 - eps)))

        one = np.array(
            [
                unit(params.basis_probability_x, *_QX_RANGE),
                unit(params.signal_probability, _P_FLOOR, 1.0 - _P_FLOOR),
                0.0,
                unit(params.decoy_intensity, *_MU2_RANGE),
                unit(params.signal_intensity - params.decoy_intensity, *_MU1_RANGE),
            ]
        )
        return np.repeat(one[None, :], n, axis=0)
    start = _from_settings(
        np.asarray(params.basis_probability_x),
        np.asarray(params.signal_probability),
        np.asarray(params.decoy_probability),
        np.asarray(params.signal_intensity),
        np.asarray(params.decoy_intensity),
        params.vacuum_intensity,
    )
    return np.repeat(start[None, :], n, axis=0)


#: Anchors of the global search, and starting points tried at each anchor.
_ANCHORS = 40
_CANDIDATES = 128
_KEEP = 3


def _radical_inverse(index: NDArray[np.int64], base: int) -> FloatArray:
    result = np.zeros(index.shape)
    fraction = 1.0 / base
    i = index.copy()
    while np.any(i > 0):
        result += fraction * (i % base)
        i //= base
        fraction /= base
    return result


def _candidate_starts() -> FloatArray:
    """A deterministic low-discrepancy set of starting points (Halton sequence, bases 2..11)."""
    index = np.arange(1, _CANDIDATES + 1, dtype=np.int64)
    unit = np.stack([_radical_inverse(index, b) for b in (2, 3, 5, 7, 11)], axis=1)
    return np.asarray(-4.0 + 8.0 * unit)


def _optimise(
    eta_sys: FloatArray,
    block_size: FloatArray,
    params: FiniteKeyParameters,
    start: FloatArray | None = None,
) -> FloatArray:
    """Optimal unconstrained coordinates per row (one row per distance and block size).

    The key rate is far from concave in the settings, and for small blocks the region with
    key is small (e.g. n_X = 1e4 needs p_mu1 of a few per cent), so a local search from a
    fixed start fails. Hence: (1) at up to 40 anchor rows spread over the transmittances, 128
    Halton starting points are evaluated and the best three polished by Nelder-Mead; (2)
    every row starts from the best anchor nearest in transmittance (or from ``start``, when
    given and better) and runs Nelder-Mead, then once more from its own optimum with a
    smaller simplex; (3) rows left without key restart from the nearest row with key.
    """
    n = eta_sys.size
    log_eta = np.log(eta_sys)
    order = np.argsort(log_eta, kind="stable")
    anchors = np.unique(order[np.linspace(0, n - 1, min(n, _ANCHORS)).round().astype(int)])
    cand = _candidate_starts()
    a = anchors.size
    trial = np.concatenate([np.tile(cand, (a, 1)), _default_start(params, a)])
    rows = np.concatenate([np.repeat(anchors, _CANDIDATES), anchors])
    if start is not None:
        trial = np.concatenate([trial, start[anchors]])
        rows = np.concatenate([rows, anchors])
    values = _objective(trial, eta_sys[rows], block_size[rows], params)
    # Best _KEEP starts per anchor.
    per_anchor = np.full((a, _CANDIDATES + 2), np.inf)
    index_of = {int(r): i for i, r in enumerate(anchors)}
    slot = np.zeros(a, dtype=int)
    points = np.zeros((a, _CANDIDATES + 2, _DIM))
    for k, r in enumerate(rows):
        i = index_of[int(r)]
        per_anchor[i, slot[i]] = values[k]
        points[i, slot[i]] = trial[k]
        slot[i] += 1
    top = np.argsort(per_anchor, axis=1)[:, :_KEEP]
    x_top = np.take_along_axis(points, top[:, :, None], axis=1).reshape(-1, _DIM)
    rows_top = np.repeat(anchors, _KEEP)
    x_top, f_top = _nelder_mead(
        x_top, eta_sys[rows_top], block_size[rows_top], params, step=0.5, iterations=200
    )
    best = np.argmin(f_top.reshape(a, _KEEP), axis=1)
    x_anchor = x_top.reshape(a, _KEEP, _DIM)[np.arange(a), best]
    # Every row starts at the anchor nearest in transmittance.
    nearest = np.argmin(np.abs(log_eta[:, None] - log_eta[None, anchors]), axis=1)
    x = x_anchor[nearest]
    if start is not None:
        f_given = _objective(start, eta_sys, block_size, params)
        f_anchor = _objective(x, eta_sys, block_size, params)
        x = np.where((f_given < f_anchor)[:, None], start, x)
    x, f = _nelder_mead(x, eta_sys, block_size, params, step=0.3, iterations=200)
    x, f = _nelder_mead(x, eta_sys, block_size, params, step=0.1, iterations=150)
    x, f = _neighbour_sweeps(x, f, eta_sys, block_size, params)
    for _ in range(2):
        bad = f >= 0.0
        good = np.flatnonzero(~bad)
        if not bad.any() or good.size == 0:
            break
        bad_rows = np.flatnonzero(bad)
        near = good[np.argmin(np.abs(log_eta[bad_rows, None] - log_eta[None, good]), axis=1)]
        x_new, f_new = _nelder_mead(
            x[near], eta_sys[bad_rows], block_size[bad_rows], params, step=0.3, iterations=200
        )
        better = f_new < f[bad_rows]
        x[bad_rows[better]] = x_new[better]
        f[bad_rows[better]] = f_new[better]
    x, _ = _neighbour_sweeps(x, f, eta_sys, block_size, params)
    return x


#: Above this many distances, optimise a subset and interpolate (see _optimise_curve).
_DENSE_ROWS = 400


def _optimise_curve(
    eta_sys: FloatArray, block_size: FloatArray, params: FiniteKeyParameters
) -> FloatArray:
    """Optimal coordinates for a dense curve (one block size): coarse to fine.

    The optimal settings change smoothly with distance, so a full search runs on
    ``_DENSE_ROWS`` distances spread over the curve; the other rows start from the settings
    interpolated (in log transmittance) between them, get a short Nelder-Mead polish and the
    neighbour sweeps, which also carry key into rows past the last searched one.
    """
    n = eta_sys.size
    if n <= _DENSE_ROWS:
        return _optimise(eta_sys, block_size, params)
    log_eta = np.log(eta_sys)
    order = np.argsort(log_eta, kind="stable")
    picked = order[np.linspace(0, n - 1, _DENSE_ROWS).round().astype(int)]
    picked = picked[np.unique(log_eta[picked], return_index=True)[1]]
    x_picked = _optimise(eta_sys[picked], block_size[picked], params)
    x = np.stack([np.interp(log_eta, log_eta[picked], x_picked[:, i]) for i in range(_DIM)], axis=1)
    x, f = _nelder_mead(x, eta_sys, block_size, params, step=0.05, iterations=60)
    x[picked] = x_picked
    f[picked] = _objective(x_picked, eta_sys[picked], block_size[picked], params)
    x, _ = _neighbour_sweeps(x, f, eta_sys, block_size, params)
    return x


def _neighbour_sweeps(
    x: FloatArray,
    f: FloatArray,
    eta_sys: FloatArray,
    block_size: FloatArray,
    params: FiniteKeyParameters,
    sweeps: int = 40,
) -> tuple[FloatArray, FloatArray]:
    """Warm starts from the neighbours: a row takes its neighbour's optimum where better.

    Rows are ordered by block size, then transmittance; a local search that stopped short
    at one distance is repaired by its neighbours' settings, which propagate one row per
    sweep; the rows that changed are then polished by a short Nelder-Mead.
    """
    order = np.lexsort((np.log(eta_sys), block_size))
    same = block_size[order][1:] == block_size[order][:-1]
    changed_any = np.zeros(x.shape[0], dtype=bool)
    for _ in range(sweeps):
        changed = False
        for src, dst in ((order[:-1][same], order[1:][same]), (order[1:][same], order[:-1][same])):
            if src.size == 0:
                continue
            f_try = _objective(x[src], eta_sys[dst], block_size[dst], params)
            better = f_try < f[dst] - 1e-12 * np.abs(f[dst])
            if better.any():
                rows = dst[better]
                x[rows] = x[src[better]]
                f[rows] = f_try[better]
                changed_any[rows] = True
                changed = True
        if not changed:
            break
    rows = np.flatnonzero(changed_any)
    if rows.size:
        x_new, f_new = _nelder_mead(
            x[rows], eta_sys[rows], block_size[rows], params, step=0.05, iterations=150
        )
        better = f_new < f[rows]
        x[rows[better]] = x_new[better]
        f[rows[better]] = f_new[better]
    return x, f


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def _system_transmittance(distance_km: FloatArray, params: FiniteKeyParameters) -> FloatArray:
    loss_db = params.loss_db_per_km * distance_km + params.extra_loss_db
    return np.asarray(params.detector_efficiency * 10.0 ** (-loss_db / 10.0))


def _check_distance(distance_km: ArrayLike) -> FloatArray:
    try:
        d = np.atleast_1d(np.asarray(distance_km, dtype=float))
    except (TypeError, ValueError) as exc:
        raise ParameterError("distance_km", f"must be numbers in km, got {distance_km!r}") from exc
    if d.ndim != 1:
        raise ParameterError("distance_km", f"must be a number or a 1-D array, got shape {d.shape}")
    if not np.all(np.isfinite(d)) or np.any(d < 0.0):
        raise ParameterError("distance_km", "must be finite and >= 0 km")
    return d


def _check_block(block_size: float) -> float:
    try:
        value = float(block_size)
    except (TypeError, ValueError) as exc:
        raise ParameterError("block_size", f"must be a number, got {block_size!r}") from exc
    if not (value >= 1.0) or math.isinf(value):
        raise ParameterError(
            "block_size", f"must be a finite number of detections >= 1, got {block_size!r}"
        )
    return value


def finite_key_rate(
    distance_km: ArrayLike,
    block_size: float,
    params: FiniteKeyParameters | None = None,
    optimise: bool = True,
) -> FiniteKeyResult:
    """Finite-key secret key rate of decoy-state BB84 (Lim et al., PRA 89, 022307, 2014).

    ``distance_km`` (km, scalar or 1-D array) is the fibre length; ``block_size`` is n_X,
    the number of sifted X-basis detections in one post-processing block. With
    ``optimise=True`` the protocol settings {q_x, p_mu1, p_mu2, mu1, mu2} are optimised
    for the largest rate at every distance (vectorised Nelder-Mead); otherwise the settings
    in ``params`` are used. Returns a :class:`FiniteKeyResult`: ``rate_per_pulse`` is
    l/N in secret bits per pulse sent (0 where Eq. (1) gives no key or phi_X >= 1/2),
    ``secret_key_length`` is l in bits per block.

    Raises :class:`qkdnet.errors.ParameterError` for a negative or non-finite distance or a
    block size below 1.
    """
    params = FiniteKeyParameters.lim2014() if params is None else params
    distance = _check_distance(distance_km)
    n_x = _check_block(block_size)
    eta_sys = _system_transmittance(distance, params)
    block = np.full(distance.shape, n_x)
    x = (
        _optimise_curve(eta_sys, block, params)
        if optimise and distance.size > 0
        else _default_start(params, distance.size)
    )
    return _evaluate(distance, eta_sys, n_x, x, params)


def _evaluate(
    distance: FloatArray,
    eta_sys: FloatArray,
    n_x: float,
    x: FloatArray,
    params: FiniteKeyParameters,
) -> FiniteKeyResult:
    qx, p1, p2, mu1, mu2 = _settings(x, params)
    block = np.full(distance.shape, n_x)
    model = _system_model(eta_sys, block, qx, p1, p2, mu1, mu2, params)
    ell, phi, eps = _secure_key_per_pulse(model, params, _EPS_ITERATIONS_FINAL)
    pulses = 1.0 / model.inv_pulses
    with np.errstate(invalid="ignore"):
        length = np.floor(ell * pulses)
    valid = np.isfinite(length) & (length > 0.0) & (phi < 0.5)
    length = np.where(valid, length, 0.0)
    return FiniteKeyResult(
        distance_km=distance,
        block_size=n_x,
        rate_per_pulse=length / pulses,
        secret_key_length=length,
        pulses_sent=pulses,
        basis_probability_x=qx,
        signal_probability=p1,
        decoy_probability=p2,
        signal_intensity=mu1,
        decoy_intensity=mu2,
        phase_error_bound=phi,
        epsilon_sec=eps,
        params=params,
    )


def asymptotic_decoy_rate(
    distance_km: ArrayLike,
    params: FiniteKeyParameters | None = None,
    optimise: bool = True,
) -> FloatArray:
    """Asymptotic (n_X -> infinity) rate of the same three-intensity protocol, bits per pulse.

    The dashed curve of Lim et al. (2014), Fig. 1: Eqs. (1)-(5) without statistical
    deviations and constant terms, still with three intensities; the basis probability q_x
    tends to 1 (sifting costs nothing asymptotically), so it is fixed at 1 - 1e-9.
    Raises :class:`qkdnet.errors.ParameterError` for a negative or non-finite distance.
    """
    params = FiniteKeyParameters.lim2014() if params is None else params
    distance = _check_distance(distance_km)
    eta_sys = _system_transmittance(distance, params)
    block = np.full(distance.shape, np.inf)
    start = _default_start(params, distance.size)
    start[:, 0] = 40.0  # q_x at the top of its range, 1 - 1e-9
    x = _optimise(eta_sys, block, params, start) if optimise and distance.size > 0 else start
    x[:, 0] = start[:, 0]
    qx, p1, p2, mu1, mu2 = _settings(x, params)
    model = _system_model(eta_sys, block, qx, p1, p2, mu1, mu2, params)
    # No deviations or constant terms when 1/N = 0, so eps_sec plays no role here.
    ell, phi = _key_per_pulse_any(model, np.full(distance.shape, 0.5), params)
    return np.where((ell > 0.0) & (phi < 0.5), ell, 0.0)


def _has_key(
    x: FloatArray, eta_sys: FloatArray, block_size: FloatArray, params: FiniteKeyParameters
) -> NDArray[np.bool_]:
    """At least one secret bit per block and phi_X < 1/2 (the protocol does not abort)."""
    qx, p1, p2, mu1, mu2 = _settings(x, params)
    model = _system_model(eta_sys, block_size, qx, p1, p2, mu1, mu2, params)
    ell, phi, _ = _secure_key_per_pulse(model, params, _EPS_ITERATIONS_FINAL)
    return np.asarray((ell / model.inv_pulses >= 1.0) & (phi < 0.5))


def maximum_distance_km(
    block_size: ArrayLike,
    params: FiniteKeyParameters | None = None,
    tolerance_km: float = 0.05,
    upper_km: float = 400.0,
) -> FloatArray:
    """Largest fibre length (km) with a positive optimised finite key, per block size n_X.

    Bisection on distance for all block sizes at once; at each step the settings are
    optimised starting from the optimum at the longest distance known to give key
    (Lim et al. 2014, Fig. 1: the end points of the curves). Returns 0 where even 0 km
    gives no key. Raises :class:`qkdnet.errors.ParameterError` for a bad block size.
    """
    params = FiniteKeyParameters.lim2014() if params is None else params
    blocks = np.atleast_1d(np.asarray(block_size, dtype=float))
    for value in blocks:
        _check_block(float(value))
    n = blocks.size
    if n == 0:
        return np.zeros(0)
    lo = np.zeros(n)
    hi = np.full(n, float(upper_km))
    eta_lo = _system_transmittance(lo, params)
    x_lo = _optimise(eta_lo, blocks, params)
    has_key = _has_key(x_lo, eta_lo, blocks, params)
    # Coarse scan first (a handful of distances) so the bisection starts near the end point.
    grid = np.linspace(0.0, upper_km, 17)[1:]
    for d in grid:
        todo = has_key & (lo < d) & (hi > d)
        if not todo.any():
            continue
        rows = np.flatnonzero(todo)
        dist = np.full(rows.size, d)
        eta = _system_transmittance(dist, params)
        x_new = _optimise(eta, blocks[rows], params, x_lo[rows])
        ok = _has_key(x_new, eta, blocks[rows], params)
        lo[rows[ok]] = d
        x_lo[rows[ok]] = x_new[ok]
        hi[rows[~ok]] = np.minimum(hi[rows[~ok]], d)
    while True:
        todo = has_key & (hi - lo > tolerance_km)
        if not todo.any():
            break
        rows = np.flatnonzero(todo)
        mid = 0.5 * (lo[rows] + hi[rows])
        eta = _system_transmittance(mid, params)
        x_new = _optimise(eta, blocks[rows], params, x_lo[rows])
        ok = _has_key(x_new, eta, blocks[rows], params)
        lo[rows[ok]] = mid[ok]
        x_lo[rows[ok]] = x_new[ok]
        hi[rows[~ok]] = mid[~ok]
    return np.where(has_key, lo, 0.0)
