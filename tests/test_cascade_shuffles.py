"""Cascade's pass shuffles: which passes may be affine (the fills against the written-out
permutations are in test_cascade.py, beside the reference of the seeded permutation).

The failure mode these tests guard (see the docstring of qkdnet.postprocessing.cascade):
when two small-block passes are both affine maps, the map between them is linear, error
patterns hidden in one pass have translated twins hidden in the other, and some frames
keep errors after all 14 passes. One pass among the first two that is not affine is
enough to break that. Frames of 5e5 bits with residual errors, measured: both affine 8
of 300 at 8 %; two full Fisher-Yates passes (the earlier design) 1 of 700 at 8 %, 1 of
5100 at 2 % (1180 errors left), 0 of 1500 at 1 %; the seeded second pass (affine map,
then a shuffle of the key's 64-bit words) 0 of 2500 at 8 %, 0 of 2000 at 5 %, 2 of 5100
at 2 % (12 and 4 errors left), 0 of 1500 at 1 %, with the same f.
"""

from __future__ import annotations

import numpy as np
import pytest

from qkdnet.postprocessing import cascade


def _frame(n: int, qber: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    return a, a ^ (rng.random(n) < qber).astype(np.uint8)


def _residual_frames(frames: int) -> list[int]:
    bad = []
    for seed in range(frames):
        a, b = _frame(500_000, 0.08, seed)
        res = cascade.reconcile_cascade(a, b, 0.08, np.random.default_rng(seed), threads=1)
        if not np.array_equal(res.corrected_bits, a):
            bad.append(seed)
    return bad


def test_no_residual_frames_at_8_percent_and_affine_only_would_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 60 frames of 5e5 bits at 8 % (the setting where the failure was seen)
    assert _residual_frames(60) == []
    # affine maps only: frame 21 (of 200 tried with this generator's draws) keeps 8
    # errors, so this test does see the failure mode it guards against
    monkeypatch.setattr(cascade, "EXPLICIT_PASSES", ())
    a, b = _frame(500_000, 0.08, 21)
    res = cascade.reconcile_cascade(a, b, 0.08, np.random.default_rng(21), threads=1)
    assert np.count_nonzero(res.corrected_bits != a) > 0


def test_explicit_and_affine_passes_are_announced_as_documented() -> None:
    a, b = _frame(5000, 0.03, 1)
    res = cascade.reconcile_cascade(a, b, 0.03, np.random.default_rng(2))
    msgs = [m for m in cascade.parse_transcript(res.transcript) if m.kind == "parities"]
    assert len(msgs) == 14
    for m in msgs:
        assert isinstance(m.payload, tuple)
        mult = int(m.payload[0])
        assert (mult == 0) == (m.pass_index in cascade.EXPLICIT_PASSES), (m.pass_index, mult)
