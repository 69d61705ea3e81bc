"""The throughput fast paths give exactly what the straightforward code gives.

Each fast path (the split sifting, Cascade's reused scratch buffers and thread pool, the
32-words-per-step polynomial hash of authentication) is compared with an independent, slower
computation of the same thing: a naive NumPy sifting, a fresh single-threaded Cascade
run, and Horner's rule (``_gf2.poly_hash``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qkdnet.postprocessing.sifting as sifting
from _cascade_util import random_affine
from qkdnet.postprocessing._gf2 import poly_hash
from qkdnet.postprocessing.authentication import (
    _message_blocks,
    _poly_hash_wide,
)
from qkdnet.postprocessing.cascade import reconcile_cascade
from qkdnet.quantum.records import DetectionRecords


def _records(n: int, classes: int, seed: int, max_gap: int) -> DetectionRecords:
    rng = np.random.default_rng(seed)
    gaps = rng.integers(1, max_gap, n)
    idx = np.cumsum(gaps).astype(np.int64)
    cls = rng.integers(0, classes, n).astype(np.uint8)
    sent = np.bincount(cls, minlength=classes).astype(np.int64) + int(idx[-1])
    return DetectionRecords(
        pulse_index=idx, alice_class=cls,
        alice_basis=rng.integers(0, 2, n, dtype=np.uint8),
        alice_bit=rng.integers(0, 2, n, dtype=np.uint8),
        bob_basis=rng.integers(0, 2, n, dtype=np.uint8),
        bob_bit=rng.integers(0, 2, n, dtype=np.uint8),
        pulses_sent=sent, intensities=tuple(0.5 / (k + 1) for k in range(classes)),
    )


def _naive_sift(r: DetectionRecords) -> tuple[np.ndarray, ...]:
    z = (r.alice_basis == r.bob_basis) & (r.alice_basis == 0)
    x = (r.alice_basis == r.bob_basis) & (r.alice_basis == 1)
    k = r.pulses_sent.shape[0]
    err = r.alice_bit != r.bob_bit
    return (
        r.alice_bit[z], r.bob_bit[z],
        np.bincount(r.alice_class[z], minlength=k),
        np.bincount(r.alice_class[x], minlength=k),
        np.bincount(r.alice_class[x & err], minlength=k),
    )


@pytest.mark.parametrize(
    ("n", "classes", "max_gap"), [(1, 3, 5), (13, 3, 5), (1000, 3, 40000), (5003, 5, 300)]
)
def test_split_sifting_matches_one_pass_and_naive(
    monkeypatch: pytest.MonkeyPatch, n: int, classes: int, max_gap: int
) -> None:
    r = _records(n, classes, n, max_gap)
    one = sifting.sift(r)
    monkeypatch.setattr(sifting, "PARALLEL_MIN_DETECTIONS", 16)
    split = sifting.sift(r)
    assert split.messages == one.messages
    # threads=1 keeps a long block in one piece: the same result as the split one
    whole = sifting.sift(r, threads=1)
    assert whole.messages == one.messages
    # in one piece the announcements are read-only views of the kernel's buffers (Alice's
    # only with classes packed two bits each, i.e. at most four)
    for _, message in whole.messages[: 2 if classes <= 4 else 1]:
        assert isinstance(message, memoryview) and message.readonly
    assert np.array_equal(whole.alice_key, split.alice_key)
    naive = _naive_sift(r)
    for s in (one, split):
        got = (s.alice_key, s.bob_key, s.key_counts, s.test_counts, s.test_errors)
        for a, b in zip(got, naive, strict=True):
            assert np.array_equal(a, b)
        # Bob's announcement decodes back to the pulse indices (gaps of 3 bytes included)
        assert np.array_equal(sifting.decode_gaps(s.messages[0][1], n), r.pulse_index)


def _naive_messages(r: DetectionRecords) -> tuple[bytes, bytes, bytes, bytes]:
    # The four sifting messages built the plain way: a byte-at-a-time LEB128 encoder for
    # the gaps, numpy.packbits for bases and bits, a loop for the 2-bit classes.
    out = bytearray()
    prev = 0
    for p in r.pulse_index.tolist():
        g, prev = p - prev, p
        while g >= 128:
            out.append((g & 127) | 128)
            g >>= 7
        out.append(g)
    bob = bytes(out) + np.packbits(r.bob_basis).tobytes()
    alice = np.packbits(r.alice_basis).tobytes()
    k = r.pulses_sent.shape[0]
    if k <= 4:
        cls = r.alice_class.tolist()
        cls += [0] * (-len(cls) % 4)
        alice += bytes(
            (cls[i] << 6) | (cls[i + 1] << 4) | (cls[i + 2] << 2) | cls[i + 3]
            for i in range(0, len(cls), 4)
        )
    else:
        alice += r.alice_class.tobytes()
    x = (r.alice_basis == 1) & (r.bob_basis == 1)
    return (bob, alice, np.packbits(r.alice_bit[x]).tobytes(),
            np.packbits(r.bob_bit[x]).tobytes())


@settings(max_examples=40, deadline=None)
@given(
    n=st.one_of(st.integers(0, 70), st.integers(70, 5000)),
    classes=st.integers(1, 10),
    max_gap=st.sampled_from([2, 100, 129, 300, 20_000, 3_000_000]),
    seed=st.integers(0, 2**32 - 1),
    split=st.booleans(),
    layout=st.sampled_from(["fresh", "offset", "strided"]),
)
def test_word_at_a_time_sifting_equals_the_plain_computation(
    n: int, classes: int, max_gap: int, seed: int, split: bool, layout: str
) -> None:
    """The eight-rows-at-a-time kernel (64-bit loads, 8-byte stores) against NumPy and a
    plain varint encoder, for every length mod 8, 1..10 classes, 1- to 4-byte gaps, the
    two-halves path, and columns that are misaligned or strided views."""
    r = _records(max(n, 1), classes, seed, max_gap) if n else _records(1, classes, seed, 2)
    if n == 0:
        r = DetectionRecords(
            pulse_index=r.pulse_index[:0], alice_class=r.alice_class[:0],
            alice_basis=r.alice_basis[:0], alice_bit=r.alice_bit[:0],
            bob_basis=r.bob_basis[:0], bob_bit=r.bob_bit[:0],
            pulses_sent=r.pulses_sent, intensities=r.intensities,
        )
    if layout != "fresh":
        def move(a: np.ndarray) -> np.ndarray:
            if layout == "offset":  # starts one byte into a buffer: not 8-byte aligned
                buf = np.zeros(a.size + 1, dtype=a.dtype)
                buf[1:] = a
                return buf[1:]
            buf = np.zeros(2 * a.size, dtype=a.dtype)
            buf[::2] = a
            return buf[::2]

        r = DetectionRecords(
            pulse_index=move(r.pulse_index), alice_class=move(r.alice_class),
            alice_basis=move(r.alice_basis), alice_bit=move(r.alice_bit),
            bob_basis=move(r.bob_basis), bob_bit=move(r.bob_bit),
            pulses_sent=r.pulses_sent, intensities=r.intensities,
        )
    old = sifting.PARALLEL_MIN_DETECTIONS
    try:
        sifting.PARALLEL_MIN_DETECTIONS = 16 if split else old
        s = sifting.sift(r)
    finally:
        sifting.PARALLEL_MIN_DETECTIONS = old
    assert tuple(m for _, m in s.messages) == _naive_messages(r)
    for got, want in zip((s.alice_key, s.bob_key, s.key_counts, s.test_counts, s.test_errors),
                         _naive_sift(r), strict=True):
        assert np.array_equal(got, want)


def test_cascade_scratch_reuse_and_threads_do_not_change_the_result() -> None:
    rng = np.random.default_rng(7)

    def pair(n: int, q: float) -> tuple[np.ndarray, np.ndarray]:
        a = rng.integers(0, 2, n, dtype=np.uint8)
        return a, a ^ (rng.random(n) < q).astype(np.uint8)

    big = pair(300_000, 0.03)
    small = pair(5_000, 0.08)
    first = reconcile_cascade(*big, 0.03, np.random.default_rng(1))
    reconcile_cascade(*small, 0.08, np.random.default_rng(2))  # dirties the scratch
    again = reconcile_cascade(*big, 0.03, np.random.default_rng(1))
    framed1 = reconcile_cascade(*big, 0.03, np.random.default_rng(1), frame_bits=70_000,
                                threads=1)
    framed2 = reconcile_cascade(*big, 0.03, np.random.default_rng(1), frame_bits=70_000,
                                threads=2)
    assert np.array_equal(first.corrected_bits, big[0])
    assert again.transcript == first.transcript and again.leaked_bits == first.leaked_bits
    assert framed1.transcript == framed2.transcript
    assert np.array_equal(framed2.corrected_bits, big[0])


def test_wide_step_hash_equals_horner() -> None:
    rng = np.random.default_rng(3)
    for n in list(range(0, 80)) + [1000, 4099]:
        blocks = _message_blocks(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        assert blocks[-1] == 8 * n and blocks.shape[0] == -(-n // 8) + 1
        for key in (0, 1, 2**64 - 1, int(rng.integers(0, 2**63))):
            assert _poly_hash_wide(blocks, np.uint64(key)) == poly_hash(blocks, np.uint64(key))


@settings(max_examples=60, deadline=None)
@given(
    n=st.one_of(st.integers(1, 300), st.integers(300, 40_000)),
    blocks=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_key_order_block_parities_equal_the_pass_order_gather(
    n: int, blocks: int, seed: int
) -> None:
    """Cascade's late passes: the block parities of an affine pass computed in key order
    (chunked, vectorised sweep) equal the plain gather in pass order, for any n (also
    not a multiple of the chunk), block size and permutation."""

    from qkdnet.postprocessing._cascade_core import _affine_block_parities, _block_parities

    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    packed = np.packbits(a, bitorder="little")
    mult, off = random_affine(rng, n)
    inv = pow(mult, -1, n) if n > 1 else 0
    k = max(1, -(-n // blocks))
    nsend = -(-n // k)
    no_tables = np.zeros((0, n), dtype=np.int32)
    want = np.zeros(nsend, dtype=np.uint8)
    got = np.zeros(nsend, dtype=np.uint8)
    _block_parities(want, nsend, k, 0, packed, n, no_tables, mult, off)
    _affine_block_parities(got, nsend, k, a, n, off, inv)
    assert np.array_equal(got, want)
    # and an independent truth: the permutation written out
    order = (mult * np.arange(n, dtype=np.int64) + off) % n
    naive = [int(np.bitwise_xor.reduce(a[order[b * k:(b + 1) * k]])) for b in range(nsend)]
    assert got.tolist() == naive


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=200), cuts=st.lists(st.integers(0, 200), max_size=3))
def test_message_blocks_of_parts_equal_blocks_of_the_joined_message(
    data: bytes, cuts: list[int]
) -> None:
    """The channel hashes a frame's header and payload in place (no joined copy): the word
    buffer built from the parts is the one built from their concatenation."""
    bounds = [0] + sorted(min(c, len(data)) for c in cuts) + [len(data)]
    parts = [data[lo:hi] for lo, hi in zip(bounds, bounds[1:], strict=False)]
    assert np.array_equal(_message_blocks(*parts), _message_blocks(data))


def test_channel_tag_is_the_tag_of_header_plus_payload() -> None:
    """A frame's tag, computed from header and payload as parts, equals the plain
    Wegman-Carter tag of the joined bytes from a twin key pool (and the receiver accepts
    it; one flipped payload bit is refused)."""
    import struct

    from qkdnet.errors import AuthenticationError
    from qkdnet.postprocessing.authentication import (
        AuthenticatedChannel,
        PreSharedKeyPool,
        Role,
        WegmanCarterAuthenticator,
    )

    rng = np.random.default_rng(5)
    key = rng.integers(0, 2, 4096, dtype=np.uint8)
    channel = AuthenticatedChannel(PreSharedKeyPool(key), PreSharedKeyPool(key))
    # the channel gives Alice -> Bob the first half of the key (whole words)
    twin = WegmanCarterAuthenticator(PreSharedKeyPool(key[:2048]))
    for seq, size in enumerate((1000, 5003, 20_011)):  # copied, then hashed in place
        payload = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        frame = channel.send(Role.ALICE, payload)
        assert frame.tag == twin.tag(struct.pack("<BQ", 0, seq) + payload)
        assert channel.receive(frame) == payload
    bad = channel.send(Role.ALICE, b"\x00" * 64)
    forged = type(bad)(sender=bad.sender, sequence=bad.sequence,
                       payload=b"\x01" + bad.payload[1:], tag=bad.tag)
    with pytest.raises(AuthenticationError):
        channel.receive(forged)


_SIFT_DIGEST = """
import hashlib
import numpy as np
import qkdnet.postprocessing.sifting as sifting
from qkdnet.quantum.records import DetectionRecords

def digest():
    h = hashlib.sha256()
    for n, classes, max_gap in ((13, 3, 5), (1003, 3, 300), (5000, 5, 200), (40000, 4, 90)):
        rng = np.random.default_rng(n)
        idx = np.cumsum(rng.integers(1, max_gap, n)).astype(np.int64)
        cls = rng.integers(0, classes, n).astype(np.uint8)
        r = DetectionRecords(
            pulse_index=idx, alice_class=cls,
            alice_basis=rng.integers(0, 2, n, dtype=np.uint8),
            alice_bit=rng.integers(0, 2, n, dtype=np.uint8),
            bob_basis=rng.integers(0, 2, n, dtype=np.uint8),
            bob_bit=rng.integers(0, 2, n, dtype=np.uint8),
            pulses_sent=np.bincount(cls, minlength=classes).astype(np.int64) + int(idx[-1]),
            intensities=tuple(0.5 / (k + 1) for k in range(classes)),
        )
        s = sifting.sift(r)
        for m in s.messages:
            h.update(m[1])
        for a in (s.alice_key, s.bob_key, s.key_counts, s.test_counts, s.test_errors):
            h.update(a.tobytes())
    return sifting.HAS_FAST_PEXT, h.hexdigest()
"""


def test_sifting_table_compression_equals_the_default_path(tmp_path: object) -> None:
    """The portable byte compression (tables; used where BMI2 pext is missing or slow)
    gives exactly what the default path of this machine gives (checked against the plain
    computation above), run in a fresh process with its own Numba cache."""
    import os
    import subprocess
    import sys

    scope: dict[str, object] = {}
    exec(_SIFT_DIGEST, scope)  # noqa: S102 - our own snippet, shared with the subprocess
    _, here = scope["digest"]()  # type: ignore[operator]
    env = dict(os.environ, QKDNET_SOFT_PEXT="1", NUMBA_CACHE_DIR=str(tmp_path))
    code = _SIFT_DIGEST + "\nprint(*digest())\n"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    fast, soft = out.stdout.split()
    assert fast == "False"
    assert soft == here


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 10**9), frac=st.floats(0.0, 1.0), conf=st.sampled_from([0.9, 0.999]))
def test_clopper_pearson_equals_scipy_beta_ppf_exactly(n: int, frac: float, conf: float) -> None:
    """The interval calls the inverse incomplete beta function directly: the same floats
    as scipy.stats.beta.ppf (so the abort decision and the reported bounds are unchanged)."""
    from scipy.stats import beta

    from qkdnet.postprocessing.estimation import clopper_pearson

    k = min(n, int(frac * n))
    lo, hi = clopper_pearson(k, n, conf)
    alpha = 1.0 - conf
    assert lo == (0.0 if k == 0 else float(beta.ppf(alpha / 2.0, k, n - k + 1)))
    assert hi == (1.0 if k == n else float(beta.ppf(1.0 - alpha / 2.0, k + 1, n - k)))


def _plain_fisher_yates(seed: int, n: int) -> list[int]:
    # splitmix64-driven Fisher-Yates written the textbook way (one step at a time)
    mask = (1 << 64) - 1
    perm = list(range(n))
    state = seed & mask
    for i in range(n - 1, 0, -1):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        j = ((z >> 32) * (i + 1)) >> 32
        perm[i], perm[j] = perm[j], perm[i]
    return perm


@settings(max_examples=30, deadline=None)
@given(n=st.one_of(st.integers(0, 200), st.integers(200, 3000)),
       seed=st.integers(0, 2**63 - 1))
def test_batched_fisher_yates_equals_the_one_step_loop(n: int, seed: int) -> None:
    """Cascade's explicit shuffles draw their random indices in batches (the splitmix64
    state is a counter); the permutation and its inverse are the textbook loop's."""
    from qkdnet.postprocessing._cascade_core import random_permutation

    perm, inv = random_permutation(seed, n)
    assert perm.tolist() == _plain_fisher_yates(seed, n)
    assert np.array_equal(perm[inv], np.arange(n))
