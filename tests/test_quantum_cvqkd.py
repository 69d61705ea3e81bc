"""CV-QKD (GG02, homodyne, reverse reconciliation): closed-form limit and a second method.

The Holevo bound of :mod:`qkdnet.quantum.cvqkd` uses the closed-form symplectic eigenvalues
of Lodewyck et al. (2007). Here it is recomputed from covariance matrices numerically
(symplectic spectrum of iΩγ and the conditional state after Bob's homodyne measurement).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from qkdnet.quantum import LinkSpec, cvqkd, plob_curve, secret_key_rate_curve

VECTORS = json.loads((Path(__file__).parent / "vectors" / "quantum_keyrate.json").read_text())


def _entropy(nu: np.ndarray) -> float:
    x = (np.asarray(nu) - 1.0) / 2.0
    x = x[x > 1e-15]
    return float(np.sum((x + 1) * np.log2(x + 1) - x * np.log2(x)))


def _symplectic_eigenvalues(gamma: np.ndarray) -> np.ndarray:
    n = gamma.shape[0] // 2
    omega = np.kron(np.eye(n), np.array([[0.0, 1.0], [-1.0, 0.0]]))
    ev = np.abs(np.linalg.eigvals(1j * omega @ gamma))
    return np.sort(ev)[::2]


def _holevo_by_covariance_matrices(t: float, va: float, xi: float) -> tuple[float, float]:
    """I_AB and χ_BE for an ideal homodyne detector, from the EPR-equivalent state."""
    v = va + 1.0
    chi_line = 1.0 / t - 1.0 + xi
    c = np.sqrt(t * (v**2 - 1.0))
    z = np.diag([1.0, -1.0])
    gamma = np.block([[v * np.eye(2), c * z], [c * z, t * (v + chi_line) * np.eye(2)]])
    s_e = _entropy(_symplectic_eigenvalues(gamma))  # Eve purifies AB
    b = gamma[2:, 2:]
    sigma = gamma[:2, 2:]
    x_proj = np.diag([1.0 / b[0, 0], 0.0])  # (X γ_B X)^MP for a homodyne on x
    gamma_a_given_x = gamma[:2, :2] - sigma @ x_proj @ sigma.T
    s_e_given_x = _entropy(np.array([np.sqrt(np.linalg.det(gamma_a_given_x))]))
    i_ab = 0.5 * np.log2(b[0, 0] / (t * (1.0 + chi_line)))
    return i_ab, s_e - s_e_given_x


@pytest.mark.parametrize(("t", "va", "xi"), [(0.5, 4.0, 0.01), (0.1, 10.0, 0.02),
                                              (0.01, 3.0, 0.005), (0.9, 30.0, 0.0)])
def test_holevo_bound_matches_covariance_matrix_computation(t: float, va: float, xi: float) -> None:
    i_ab, chi = _holevo_by_covariance_matrices(t, va, xi)
    assert cvqkd.mutual_information(t, va, xi, 0.0, 1.0) == pytest.approx(i_ab, rel=1e-9)
    assert cvqkd.holevo_bound(t, va, xi, 0.0, 1.0) == pytest.approx(chi, rel=1e-6)


def test_pure_loss_infinite_modulation_gives_half_log_one_over_one_minus_t() -> None:
    tol = VECTORS["cv_pure_loss_infinite_modulation"]["relative_tolerance"]
    t = np.array([0.9, 0.5, 0.1, 0.01])
    k = cvqkd.secret_fraction(t, 1e5, 0.0, 1.0, 0.0, 1.0)
    assert np.allclose(k, 0.5 * np.log2(1.0 / (1.0 - t)), rtol=tol)


def test_trusted_detector_noise_and_excess_noise_lower_the_rate() -> None:
    t = 0.1
    ideal = cvqkd.secret_fraction(t, 4.0, 0.01, 0.95, 0.0, 1.0)
    noisy_detector = cvqkd.secret_fraction(t, 4.0, 0.01, 0.95, 0.05, 0.6)
    noisy_channel = cvqkd.secret_fraction(t, 4.0, 0.05, 0.95, 0.0, 1.0)
    assert noisy_detector < ideal
    assert noisy_channel < ideal


def test_large_modulation_with_imperfect_reconciliation_kills_the_key() -> None:
    # β < 1 costs (1 − β) I_AB, which grows with V_A: at V_A = 1e4 and β = 0.95 there is no
    # key beyond a few km, while V_A = 4 keeps a positive rate (why V_A is optimised).
    link = replace(LinkSpec(), excess_noise_snu=0.0, electronic_noise_snu=0.0,
                   homodyne_efficiency=1.0, reconciliation_efficiency=0.95)
    d = np.array([50.0])
    assert secret_key_rate_curve("cv-qkd", replace(link, modulation_variance_snu=1e4), d)[0] == 0
    assert secret_key_rate_curve("cv-qkd", replace(link, modulation_variance_snu=4.0), d)[0] > 0


def test_cv_rate_stays_below_plob() -> None:
    link = replace(LinkSpec(), reconciliation_efficiency=1.0, excess_noise_snu=0.0,
                   electronic_noise_snu=0.0, homodyne_efficiency=1.0)
    d = np.arange(1.0, 300.0, 1.0)
    rate = secret_key_rate_curve("cv-qkd", link, d, optimise=True)
    assert np.all(rate < plob_curve(link, d))
