"""Parameter estimation against independent implementations and published behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from qkdnet.errors import ProtocolAbort, QberTooHigh
from qkdnet.postprocessing.estimation import (
    binary_entropy,
    clopper_pearson,
    estimate_parameters,
    secret_key_length,
)
from qkdnet.postprocessing.sifting import SiftedBlock
from qkdnet.quantum.finite_key import FiniteKeyParameters, finite_key_rate


def block_from_counts(key: np.ndarray, test: np.ndarray, errors: np.ndarray,
                      sent: np.ndarray, mu: tuple[float, ...]) -> SiftedBlock:
    n = int(key.sum())
    z = np.zeros(n, dtype=np.uint8)
    return SiftedBlock(
        alice_key=z, bob_key=z.copy(), key_counts=key.astype(np.int64),
        test_counts=test.astype(np.int64), test_errors=errors.astype(np.int64),
        pulses_sent=sent.astype(np.int64), intensities=mu, protocol="bb84-decoy",
        detections=n, messages=(),
    )


def test_clopper_pearson_matches_scipy_exact_interval() -> None:
    for k, n in [(0, 50), (3, 1000), (517, 100_000), (50, 50)]:
        lo, hi = clopper_pearson(k, n, 0.99)
        ref = binomtest(k, n).proportion_ci(confidence_level=0.99, method="exact")
        assert lo == pytest.approx(ref.low, abs=1e-12)
        assert hi == pytest.approx(ref.high, abs=1e-12)


@pytest.mark.parametrize(("distance", "block"), [(25.0, 1e6), (50.0, 1e7), (100.0, 1e8)])
def test_key_length_agrees_with_the_theory_module(distance: float, block: float) -> None:
    """Expected counts of Lim et al.'s model fed to our estimator give the key length that
    qkdnet.quantum.finite_key (an independent implementation of the same paper) predicts."""
    params = FiniteKeyParameters(afterpulse_probability=0.0, epsilon_sec_per_bit=None,
                                 epsilon_sec=1e-10)
    theory = finite_key_rate(distance, block, params, optimise=False)
    eta = params.detector_efficiency * 10 ** (-params.loss_db_per_km * distance / 10)
    mu = np.array([params.signal_intensity, params.decoy_intensity, params.vacuum_intensity])
    p = np.array([params.signal_probability, params.decoy_probability,
                  1 - params.signal_probability - params.decoy_probability])
    pdc, emis, qx = params.dark_count_probability, params.misalignment_error, \
        params.basis_probability_x
    detect = 1 - (1 - 2 * pdc) * np.exp(-eta * mu)
    error = pdc + emis * (1 - np.exp(-eta * mu))
    pulses = block / (qx**2 * np.sum(p * detect))
    key = pulses * qx**2 * p * detect
    test = pulses * (1 - qx) ** 2 * p * detect
    errs = pulses * (1 - qx) ** 2 * p * error
    sifted = block_from_counts(key, test, errs, pulses * p, tuple(mu))
    est = estimate_parameters(sifted, epsilon_sec=1e-10, epsilon_cor=params.epsilon_cor,
                              qber_threshold=0.5)
    e_key = np.sum(pulses * qx**2 * p * error) / block
    leak = params.error_correction_efficiency * block * binary_entropy(e_key)
    ell = secret_key_length(est, int(math.ceil(leak)))
    expected = float(theory.secret_key_length[0])
    assert est.phase_error == pytest.approx(float(theory.phase_error_bound[0]), rel=2e-3)
    assert ell == pytest.approx(expected, rel=5e-3, abs=50)


def test_threshold_and_no_key_aborts() -> None:
    mu = (0.5, 0.1, 2e-4)
    sent = np.array([8e8, 1e8, 1e8])
    key = np.array([1e6, 2.5e4, 200.0])
    test = key.copy()
    with pytest.raises(QberTooHigh, match="exceeds the threshold"):
        estimate_parameters(block_from_counts(key, test, 0.15 * test, sent, mu))
    est = estimate_parameters(block_from_counts(key, test, 0.02 * test, sent, mu))
    assert 0.0 < est.phase_error < 0.5
    # More leakage, less key; leaking everything leaves none.
    assert secret_key_length(est, 1000) > secret_key_length(est, 100_000)
    assert secret_key_length(est, int(key.sum())) == 0
    with pytest.raises(ProtocolAbort, match="too few"):
        estimate_parameters(block_from_counts(np.zeros(3), test, 0 * test, sent, mu))


def test_qber_interval_contains_the_point_estimate() -> None:
    mu = (0.5, 0.1, 2e-4)
    sent = np.array([8e8, 1e8, 1e8])
    key = np.array([1e6, 2.5e4, 200.0])
    est = estimate_parameters(block_from_counts(key, key, 0.03 * key, sent, mu))
    assert est.qber == pytest.approx(0.03, rel=1e-3)
    assert est.qber_lower < est.qber < est.qber_upper
