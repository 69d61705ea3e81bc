"""The whole pipeline: identical keys whenever a key is emitted, never more than the proof
allows, and no key under attack."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdnet.errors import ParameterError
from qkdnet.postprocessing.authentication import Frame
from qkdnet.postprocessing.estimation import binary_entropy, secret_key_length
from qkdnet.postprocessing.pipeline import Pipeline, PipelineConfig, flip_first_bit
from qkdnet.quantum.eavesdropping import Eavesdropper
from qkdnet.quantum.link import LinkSpec
from qkdnet.quantum.records import DetectionRecords
from qkdnet.quantum.sampling import simulate_block, simulate_blocks

# A short link with efficient detectors and generous decoy probabilities, so that blocks of
# ~10^5 sifted bits (fast to test) still yield a positive finite-size key.
FAST = LinkSpec(
    length_km=5.0,
    detector_efficiency=0.5,
    intensities=(0.6, 0.2, 0.0),
    intensity_probabilities=(0.5, 0.3, 0.2),
)
PULSES = 3_000_000


def test_honest_block_gives_identical_keys_of_the_proven_length() -> None:
    rng = np.random.default_rng(7)
    stages: list[str] = []
    pipe = Pipeline(rng=np.random.default_rng(8), clock=time.perf_counter,
                    on_stage=stages.append)
    result = pipe.process(simulate_block(FAST, PULSES, rng))
    assert stages == ["sift", "estimate", "reconcile", "verify", "amplify"]
    assert not result.aborted, result.abort_reason
    assert result.alice_key is not None and result.bob_key is not None
    assert np.array_equal(result.alice_key, result.bob_key) and result.keys_match
    assert result.estimate is not None
    # The output length is exactly the finite-key bound with the actual leakage.
    assert result.secret_bits == secret_key_length(result.estimate, result.leaked_bits)
    assert 0 < result.secret_bits < result.sifted_bits - result.leaked_bits
    # Authentication: 7 messages, each with a 64-bit one-time pad, plus the hash keys of
    # both directions (drawn once per session); the block reports what the channel used.
    assert pipe.channel.messages == 7
    assert result.auth_consumed_bits == pipe.channel.key_consumed_bits
    assert 7 * 64 < result.auth_consumed_bits <= 7 * 64 + 2 * 256
    assert result.net_secret_bits == result.secret_bits - result.auth_consumed_bits
    assert result.alice_key.size == result.net_secret_bits
    # Efficiency f as defined by Martinez-Mateo et al.: leak / (n h(Q)), Q the true QBER.
    assert result.qber_actual is not None and result.efficiency is not None
    expected_f = result.reconciliation_leaked_bits / (
        result.sifted_bits * binary_entropy(result.qber_actual)
    )
    assert result.efficiency == pytest.approx(expected_f)
    assert set(result.seconds) >= {"sift", "estimate", "reconcile", "verify", "amplify"}


def test_streaming_blocks_repay_authentication_from_the_output() -> None:
    pulled = []

    def source() -> object:
        for i, block in enumerate(simulate_blocks(FAST, 3 * PULSES, PULSES,
                                                  np.random.default_rng(1))):
            pulled.append(i)
            yield block

    pipe = Pipeline(rng=np.random.default_rng(2))
    results = []
    for r in pipe.run(source()):  # type: ignore[arg-type]
        # Lazy: the next block is not pulled before this one is processed.
        assert len(pulled) == len(results) + 1
        results.append(r)
    assert [r.aborted for r in results] == [False, False, False]
    assert sum(r.auth_consumed_bits for r in results) == pipe.summary.auth_consumed_bits
    assert pipe.net_secret_bits == sum(r.net_secret_bits for r in results)
    # After the first block the hash keys are reused: only pads are consumed (7 x 64).
    assert [r.auth_consumed_bits for r in results[1:]] == [7 * 64, 7 * 64]


def _stream(seed: int, blocks: int) -> list[DetectionRecords]:
    """Blocks at QBER ~2 % (one at ~30 %, which must abort) from one generator."""
    rng = np.random.default_rng(seed)
    noisy = LinkSpec(length_km=5.0, detector_efficiency=0.5, misalignment_error=0.3,
                     intensities=(0.6, 0.2, 0.0), intensity_probabilities=(0.5, 0.3, 0.2))
    return [simulate_block(noisy if i == 2 else FAST, PULSES, rng) for i in range(blocks)]


@pytest.mark.parametrize(("workers", "block_threads"), [(2, 2), (3, 2), (2, 1), (1, 1)])
def test_concurrent_blocks_give_exactly_the_sequential_results(
    workers: int, block_threads: int
) -> None:
    records = _stream(21, 5)
    one = list(Pipeline(rng=np.random.default_rng(22)).run(records))
    many = list(Pipeline(rng=np.random.default_rng(22)).run(
        records, workers=workers, block_threads=block_threads))
    assert [r.aborted for r in one] == [False, False, True, False, False]
    assert [r.index for r in many] == list(range(5))
    for a, b in zip(one, many, strict=True):
        assert (a.aborted, a.abort_reason, a.secret_bits, a.net_secret_bits) == (
            b.aborted, b.abort_reason, b.secret_bits, b.net_secret_bits)
        assert (a.auth_consumed_bits, a.auth_repaid_bits, a.leaked_bits) == (
            b.auth_consumed_bits, b.auth_repaid_bits, b.leaked_bits)
        if not a.aborted:
            assert a.alice_key is not None and b.alice_key is not None
            assert np.array_equal(a.alice_key, b.alice_key)
            assert b.bob_key is not None and np.array_equal(b.alice_key, b.bob_key)


def test_concurrent_ldpc_blocks_give_the_sequential_results() -> None:
    # the LDPC codes are built once and shared (lru_cache) by blocks in flight together
    records = _stream(26, 4)
    config = PipelineConfig(reconciliation="ldpc")
    one = list(Pipeline(config, rng=np.random.default_rng(27)).run(records))
    two = list(Pipeline(config, rng=np.random.default_rng(27)).run(records, workers=2))
    assert [r.aborted for r in one] == [False, False, True, False]
    for a, b in zip(one, two, strict=True):
        assert (a.secret_bits, a.leaked_bits, a.abort_reason) == (
            b.secret_bits, b.leaked_bits, b.abort_reason)
        if not a.aborted:
            assert a.alice_key is not None and b.alice_key is not None
            assert np.array_equal(a.alice_key, b.alice_key)


def test_concurrent_blocks_stop_at_a_tampered_message() -> None:
    seen: list[Frame] = []

    def tamper_tenth(frame: Frame) -> Frame:
        # the tenth frame is the second block's third message (seven per block)
        seen.append(frame)
        return flip_first_bit(frame) if len(seen) == 10 else frame

    pipe = Pipeline(rng=np.random.default_rng(23), tamper=tamper_tenth)
    results = list(pipe.run(_stream(24, 4)[:2] + _stream(25, 2), workers=2))
    assert [r.aborted for r in results] == [False, True, True, True]
    assert "AuthenticationError" in results[1].abort_reason
    assert all(r.alice_key is None for r in results[1:])
    assert pipe.summary.net_secret_bits == results[0].net_secret_bits


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_run_rejects_a_bad_worker_count(workers: object) -> None:
    with pytest.raises(ParameterError, match="workers"):
        next(Pipeline(rng=np.random.default_rng(0)).run([], workers=workers))  # type: ignore[arg-type]


@pytest.mark.parametrize("block_threads", [0, 3, True])
def test_run_rejects_a_bad_thread_count(block_threads: object) -> None:
    with pytest.raises(ParameterError, match="block_threads"):
        next(Pipeline(rng=np.random.default_rng(0)).run(
            [], workers=2, block_threads=block_threads))  # type: ignore[arg-type]


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_intercept_resend_aborts(fraction: float) -> None:
    link = LinkSpec(length_km=50.0)
    records = simulate_block(link, 10**9, np.random.default_rng(3),
                             eve=Eavesdropper("intercept-resend", fraction))
    result = Pipeline(rng=np.random.default_rng(4)).process(records)
    assert result.aborted and result.alice_key is None and result.bob_key is None
    assert result.secret_bits == 0 and result.net_secret_bits == 0
    assert "QberTooHigh" in result.abort_reason or "no secret key" in result.abort_reason


def test_photon_number_splitting_aborts() -> None:
    records = simulate_block(LinkSpec(length_km=50.0), 10**9, np.random.default_rng(5),
                             eve=Eavesdropper("pns"))
    result = Pipeline(rng=np.random.default_rng(6)).process(records)
    assert result.aborted and result.alice_key is None
    # The QBER stays low (the attack does not disturb it); the decoy bound catches it.
    assert result.qber is not None and result.qber < 0.02
    assert "no secret key" in result.abort_reason


def test_tampered_classical_message_fails_authentication() -> None:
    seen: list[Frame] = []

    def tamper_third(frame: Frame) -> Frame:
        seen.append(frame)
        return flip_first_bit(frame) if len(seen) == 3 else frame

    records = simulate_block(FAST, PULSES, np.random.default_rng(9))
    pipe = Pipeline(rng=np.random.default_rng(10), tamper=tamper_third)
    result = pipe.process(records)
    assert result.aborted and result.alice_key is None and result.secret_bits == 0
    assert "AuthenticationError" in result.abort_reason
    # The session stays closed: later blocks emit nothing either.
    later = pipe.process(simulate_block(FAST, PULSES, np.random.default_rng(11)))
    assert later.aborted and later.alice_key is None


def test_mismatched_bob_bits_never_give_a_wrong_key() -> None:
    r = simulate_block(FAST, PULSES, np.random.default_rng(12))
    rng = np.random.default_rng(13)
    garbage = DetectionRecords(r.pulse_index, r.alice_class, r.alice_basis, r.alice_bit,
                               r.bob_basis, rng.integers(0, 2, r.detections, dtype=np.uint8),
                               r.pulses_sent, r.intensities)
    result = Pipeline(rng=np.random.default_rng(14)).process(garbage)
    assert result.aborted and result.alice_key is None


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    misalignment=st.sampled_from([0.005, 0.01, 0.02, 0.03, 0.05]),
    pulses=st.sampled_from([1_000_000, 2_000_000, 4_000_000]),
    method=st.sampled_from(["cascade", "ldpc"]),
)
def test_keys_identical_whenever_emitted_and_within_the_bound(
    seed: int, misalignment: float, pulses: int, method: str
) -> None:
    link = LinkSpec(length_km=5.0, detector_efficiency=0.5, intensities=(0.6, 0.2, 0.0),
                    intensity_probabilities=(0.5, 0.3, 0.2), misalignment_error=misalignment)
    rng = np.random.default_rng(seed)
    records = simulate_block(link, pulses, rng)
    pipe = Pipeline(PipelineConfig(reconciliation=method), rng=rng)  # type: ignore[arg-type]
    result = pipe.process(records)
    if result.aborted:
        assert result.alice_key is None and result.bob_key is None
        assert result.secret_bits == 0
        return
    assert result.alice_key is not None and result.bob_key is not None
    assert np.array_equal(result.alice_key, result.bob_key)
    est = result.estimate
    assert est is not None
    assert result.secret_bits == secret_key_length(est, result.leaked_bits)
    # An independent upper bound: the vacuum and single-photon bits, less the leakage.
    assert result.secret_bits <= math.floor(
        est.vacuum_bits + est.single_photon_bits - result.leaked_bits
    )


def test_bbm92_block_gives_identical_keys() -> None:
    link = LinkSpec(length_km=5.0, detector_efficiency=0.5, mean_pair_number=0.05)
    rng = np.random.default_rng(15)
    records = simulate_block(link, 10_000_000, rng, protocol="bbm92")
    result = Pipeline(rng=rng).process(records)
    assert not result.aborted, result.abort_reason
    assert result.alice_key is not None and result.bob_key is not None
    assert np.array_equal(result.alice_key, result.bob_key)
    assert result.estimate is not None and result.estimate.protocol == "bbm92"
    assert result.secret_bits == secret_key_length(result.estimate, result.leaked_bits)


def test_compiled_kernels_release_the_gil() -> None:
    # Two blocks in flight only use two cores if no stage holds the GIL in its compiled
    # code: one kernel that did (the small-output Toeplitz product) kept 1e5-bit blocks
    # at one core's speed (64 vs 98 Mb/s measured).
    import importlib

    from numba.core.registry import CPUDispatcher

    held = []
    for name in ("_gf2", "_ldpc_core", "_cascade_core", "sifting", "authentication",
                 "verification", "amplification", "cascade", "estimation", "ldpc"):
        module = importlib.import_module(f"qkdnet.postprocessing.{name}")
        for attr, obj in vars(module).items():
            if (isinstance(obj, CPUDispatcher) and obj.__module__ == module.__name__
                    and obj.targetoptions.get("inline", "never") != "always"
                    and not obj.targetoptions.get("nogil")):
                held.append(f"{name}.{attr}")
    assert held == []
