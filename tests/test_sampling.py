"""The event-level sampler against a naive photon-by-photon simulation (a second method)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qkdnet.errors import ParameterError, RecordsError
from qkdnet.quantum.eavesdropping import Eavesdropper
from qkdnet.quantum.link import LinkSpec
from qkdnet.quantum.records import DetectionRecords
from qkdnet.quantum.sampling import detection_probabilities, simulate_block, simulate_blocks

# A short, lossy-enough link with a large dark-count rate so that every branch of the
# detector model (photons, darks, double clicks) occurs often in a small sample.
LINK = LinkSpec(
    length_km=5.0,
    detector_efficiency=0.5,
    dark_count_probability=2e-3,
    misalignment_error=0.03,
    intensities=(0.8, 0.2, 0.01),
    intensity_probabilities=(0.6, 0.25, 0.15),
)


def naive_simulation(
    link: LinkSpec, n: int, rng: np.random.Generator, eve: str | None = None
) -> dict[str, np.ndarray]:
    """Photon by photon: Poisson source, binomial loss, per-photon detector choice, darks."""
    mu = np.asarray(link.intensities)
    k = rng.choice(len(mu), size=n, p=link.intensity_probabilities)
    a_basis = (rng.random(n) >= link.basis_probability_z).astype(int)
    b_basis = (rng.random(n) >= link.basis_probability_z).astype(int)
    a_bit = rng.integers(0, 2, n)
    photons = rng.poisson(mu[k])
    state_basis, state_bit = a_basis.copy(), a_bit.copy()
    eta = link.total_transmittance
    if eve == "intercept-resend":
        # Eve at Alice's output measures non-vacuum pulses, resends one photon losslessly.
        e_basis = rng.integers(0, 2, n)
        e_bit = np.where(e_basis == a_basis, a_bit, rng.integers(0, 2, n))
        hit = photons > 0
        state_basis = np.where(hit, e_basis, state_basis)
        state_bit = np.where(hit, e_bit, state_bit)
        photons = hit.astype(int)
        eta = link.detector_efficiency
    arrived = rng.binomial(photons, eta)
    p_right = np.where(state_basis == b_basis, 1.0 - link.misalignment_error, 0.5)
    to_right = rng.binomial(arrived, p_right)
    to_wrong = arrived - to_right
    # "right" detector = the one for state_bit when Bob measures in the state's basis.
    right_click = (to_right > 0) | (rng.random(n) < link.dark_count_probability)
    wrong_click = (to_wrong > 0) | (rng.random(n) < link.dark_count_probability)
    detected = right_click | wrong_click
    bob_bit = np.where(right_click & ~wrong_click, state_bit, 1 - state_bit)
    double = right_click & wrong_click
    bob_bit = np.where(double, rng.integers(0, 2, n), bob_bit)
    # Bob's bit for the mismatched-basis case is random anyway (p_right = 1/2).
    return {
        "k": k[detected], "a_basis": a_basis[detected], "b_basis": b_basis[detected],
        "a_bit": a_bit[detected], "b_bit": bob_bit[detected], "sent": np.bincount(k, minlength=3),
    }


def stats(k: np.ndarray, a_basis: np.ndarray, b_basis: np.ndarray, a_bit: np.ndarray,
          b_bit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    matched = a_basis == b_basis
    det = np.bincount(k, minlength=3)
    n_m = np.bincount(k[matched], minlength=3)
    err = np.bincount(k[matched & (a_bit != b_bit)], minlength=3)
    return det, n_m, err


def assert_close_rates(x1: int, n1: int, x2: int, n2: int, sigmas: float = 5.0) -> None:
    """Two binomial proportions agree within `sigmas` standard deviations of their difference."""
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    sd = math.sqrt(max(pooled * (1 - pooled), 1e-300) * (1 / n1 + 1 / n2))
    assert abs(p1 - p2) <= sigmas * sd + 1e-12, (p1, p2, sd)


@pytest.mark.parametrize("eve", [None, "intercept-resend"])
def test_sampler_matches_naive_photon_simulation(eve: str | None) -> None:
    n = 400_000
    naive = naive_simulation(LINK, n, np.random.default_rng(11), eve)
    attack = Eavesdropper("intercept-resend", 1.0) if eve else None
    fast = simulate_block(LINK, n, np.random.default_rng(12), eve=attack)
    d1, m1, e1 = stats(naive["k"], naive["a_basis"], naive["b_basis"], naive["a_bit"],
                       naive["b_bit"])
    d2, m2, e2 = stats(fast.alice_class.astype(int), fast.alice_basis, fast.bob_basis,
                       fast.alice_bit, fast.bob_bit)
    for c in range(3):
        assert_close_rates(int(d1[c]), int(naive["sent"][c]), int(d2[c]), int(fast.pulses_sent[c]))
        assert_close_rates(int(e1[c]), int(m1[c]), int(e2[c]), int(m2[c]))
    if eve:
        # Intercept-resend: about 25 % errors on signal pulses (plus misalignment).
        assert 0.2 < e2[0] / m2[0] < 0.3


def test_reproducible_and_seed_dependent() -> None:
    a = simulate_block(LINK, 100_000, np.random.default_rng(5))
    b = simulate_block(LINK, 100_000, np.random.default_rng(5))
    c = simulate_block(LINK, 100_000, np.random.default_rng(6))
    assert np.array_equal(a.pulse_index, b.pulse_index)
    assert np.array_equal(a.bob_bit, b.bob_bit)
    assert not np.array_equal(a.pulse_index[:100], c.pulse_index[:100])


def test_block_bookkeeping_at_1e9_pulses() -> None:
    rec = simulate_block(LinkSpec(length_km=50.0), 10**9, np.random.default_rng(1))
    assert rec.total_pulses == 10**9
    assert int(rec.pulse_index[-1]) < 10**9
    assert np.all(np.diff(rec.pulse_index) > 0)
    expected = detection_probabilities(LinkSpec(length_km=50.0)).sum() * 1e9
    assert abs(rec.detections - expected) < 5 * math.sqrt(expected)
    # Stored: detected pulses only (a few MB, not 10^9 rows).
    assert rec.nbytes < 64 * 1024 * 1024


def test_pns_hides_in_signal_gain_but_not_in_decoy_gain() -> None:
    link = LinkSpec(length_km=50.0)
    honest = detection_probabilities(link).sum(axis=(1, 2, 3))
    attacked = detection_probabilities(link, eve=Eavesdropper("pns")).sum(axis=(1, 2, 3))
    assert attacked[0] == pytest.approx(honest[0], rel=1e-6)  # the attack is tuned to hide
    assert attacked[1] < 0.5 * honest[1]  # ...but the decoy class sees it


def test_bbm92_qber_tends_to_misalignment_at_low_pair_number() -> None:
    link = LinkSpec(length_km=20.0, mean_pair_number=0.001, misalignment_error=0.02)
    p = detection_probabilities(link, "bbm92")
    matched = p[0, 0, 0] + p[0, 1, 1]
    assert matched[1] / matched.sum() == pytest.approx(0.02, abs=0.005)
    busy = detection_probabilities(LinkSpec(length_km=20.0, mean_pair_number=0.5,
                                            misalignment_error=0.02), "bbm92")
    m2 = busy[0, 0, 0] + busy[0, 1, 1]
    assert m2[1] / m2.sum() > 0.05  # multi-pair emission raises the error rate
    rec = simulate_block(link, 2_000_000, np.random.default_rng(3), protocol="bbm92")
    assert rec.protocol == "bbm92" and rec.pulses_sent.shape == (1,)


def test_blocks_are_lazy_and_cover_all_pulses() -> None:
    gen = simulate_blocks(LINK, 250_000, 100_000, np.random.default_rng(2))
    sizes = [b.total_pulses for b in gen]
    assert sizes == [100_000, 100_000, 50_000]


def test_bad_inputs() -> None:
    with pytest.raises(ParameterError):
        simulate_block(LINK, -1, np.random.default_rng(0))
    with pytest.raises(ParameterError):
        Eavesdropper.parse("intercept-resend:1.5")
    with pytest.raises(ParameterError):
        Eavesdropper.parse("photon-cloning")
    with pytest.raises(ParameterError, match="BBM92"):
        simulate_block(LINK, 1000, np.random.default_rng(0), protocol="bbm92",
                       eve=Eavesdropper("pns"))
    ok = simulate_block(LINK, 10_000, np.random.default_rng(0))
    with pytest.raises(RecordsError, match="strictly increasing"):
        DetectionRecords(ok.pulse_index[::-1].copy(), ok.alice_class, ok.alice_basis,
                         ok.alice_bit, ok.bob_basis, ok.bob_bit, ok.pulses_sent, ok.intensities)
    with pytest.raises(RecordsError, match="dtype"):
        DetectionRecords(ok.pulse_index, ok.alice_class.astype(np.int64), ok.alice_basis,
                         ok.alice_bit, ok.bob_basis, ok.bob_bit, ok.pulses_sent, ok.intensities)
    with pytest.raises(RecordsError, match="entries"):
        DetectionRecords(ok.pulse_index, ok.alice_class, ok.alice_basis[:-1],
                         ok.alice_bit, ok.bob_basis, ok.bob_bit, ok.pulses_sent, ok.intensities)
