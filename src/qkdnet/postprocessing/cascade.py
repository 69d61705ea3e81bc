"""Cascade information reconciliation (hazmat layer).

Two variants:

``"original"``
    Brassard and Salvail, "Secret-key reconciliation by public discussion", EUROCRYPT '93:
    first block size ``k1 = ceil(0.73 / Q)``, doubled every pass, four passes, errors found
    in a later pass cascade back into the blocks of the earlier ones. Every block parity and
    every binary-search parity is disclosed.

``"optimised"``
    Martinez-Mateo, Pacher, Peev, Ciurana and Martin, "Demystifying the information
    reconciliation protocol Cascade", Quantum Inf. Comput. 15 (2015), arXiv:1407.3257 —
    their "Cascade opt. (8)", 14 passes with ``a = log2(1/Q) - 1/2``, ``k1 = 2^ceil(a)``,
    ``k2 = 2^ceil((a + 12)/2)``, ``k3 = 4096``, ``k_i = n/2`` for ``i >= 4``, which they
    tuned for ``n = 2^14``; here 12 and 4096 are generalised to ``log2(n) - 2`` and
    ``2^round(log2(n) - 2)`` (= n/4) so the schedule scales with the key (a sweep at
    n = 10^4 put this choice at or near the best, within 0.005), and ``k2`` is capped at
    ``16 k1`` — which only binds above ~10^5 bits, where it changes f by < 0.002 but
    leaves far fewer errors for the expensive half-key passes (2-8x fewer messages).
    With sub-block reuse (a sub-block parity disclosed during an earlier binary search is
    never disclosed again) and, from the second pass on, the parity of the last block is
    not sent because the parity of the whole key is already public (the sum of the first
    pass's parities).

Shuffles. Every pass but the second uses a random affine permutation ``t -> (mult*t +
off) mod n`` with ``mult`` coprime to ``n`` (announced as ``mult, off``), which costs
O(1) memory and time. Affine maps alone are not enough: between two affine passes the
map is linear, so an error pair hidden in a first-pass block has "translated twins"
hidden in the same second-pass blocks, and such rectangles of errors survive every later
pass together — seen as frames left with errors (up to thousands) in 8 of 300 frames of
5e5 bits at 8 %. The second pass is therefore *seeded* (announced as ``mult = 0`` and a
63-bit seed drawn from ``rng``): pass position t goes through an affine map drawn from
the seed and then through a random (Fisher–Yates) shuffle of the key's 64-bit words
(``_cascade_core.seeded_pass``). Key bits of different words land at independent random
places, which breaks the linear relation to the other passes, and the 64 bits of one
word are spread over the whole pass by the affine map. Frames of 5e5 bits left with
residual errors: 0 of 2500 at 8 %, 0 of 2000 at 5 %, 2 of 5100 at 2 %, 0 of 1500 at 1 %
(with two full Fisher–Yates passes: 1 of 700 at 8 %, 1 of 5100 at 2 %, 0 of 1500 at
1 %), f as with full random permutations (1.0489 at 8 %). (Applying the word shuffle
*before* the affine map instead keeps runs of 64 affine images together: 17 of 1000
frames at 8 % kept errors, f 1.0605.) The first pass being affine rather than random
changes nothing for independent errors (relabel the key by its inverse) and still
spreads bursts of neighbouring errors over blocks. Before, the first two passes were
full Fisher–Yates permutations of the n positions with their inverses (4 MB and ~4 ms
per 10^6 bits); now the tables are n/64 entries. ``tests/test_cascade_shuffles.py``
keeps the failure-mode check. The efficiency reached is measured against the published
figures in ``tests/test_cascade.py``.

Leakage accounting: ``leaked_bits`` counts every parity of Alice's key that she sends
(block parities and left-half parities of the binary searches). Bob's messages (which
blocks are odd, which half to continue in) say where the errors are, not what the key
is, and are conventionally not counted (Martinez-Mateo et al., Sec. 2); they are in the
transcript all the same, so that authentication covers them.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Literal

import numpy as np

from qkdnet.errors import ParameterError
from qkdnet.postprocessing._cascade_core import (
    MSG_DIR,
    MSG_FRAME,
    MSG_LEFT,
    MSG_ODD,
    MSG_PARITIES,
    reconcile_frame,
)
from qkdnet.postprocessing._pools import shared_pool
from qkdnet.postprocessing.reconciliation import (
    ReconciliationResult,
    efficiency,
    validate_pair,
)

__all__ = ["CascadeMessage", "cascade_block_sizes", "parse_transcript", "reconcile_cascade"]

Variant = Literal["original", "optimised"]

# Below this QBER the block-size formulas are evaluated at this floor, so that a key with
# (almost) no errors still gets blocks no larger than the key (the 2^-17 floor keeps the
# optimised schedule's first block at most 2^17 bits).
_QBER_FLOOR = 1e-5
_MAX_BITS = 2**31
# Passes (indices) shuffled by seeded permutations (an affine map and a random shuffle of
# the key's 64-bit words); the others by affine maps. See the module docstring for why.
EXPLICIT_PASSES: tuple[int, ...] = (1,)
# Keys longer than this are cut into frames of at most this many bits that are reconciled
# independently, two (or as many as there are cores) at a time: Cascade itself is
# sequential, frames are not. At 5e5 bits a frame's f is within ~0.005 of a 1e6-bit one.
DEFAULT_FRAME_BITS = 2**19


def cascade_block_sizes(n: int, qber: float, variant: Variant = "optimised") -> np.ndarray:
    """Block size (bits) of each Cascade pass for an ``n``-bit key at QBER ``qber``.

    ``original``: Brassard–Salvail 1993, ``k1 = ceil(0.73/Q)``, ``k_i = 2 k_{i-1}``, 4 passes.
    ``optimised``: Martinez-Mateo et al. 2015 (opt. 8, generalised to any n): with
    ``a = log2(1/Q) - 1/2`` and ``L = log2(n)``: ``k1 = 2^ceil(a)``,
    ``k2 = min(2^ceil((a + L - 2)/2), 16 k1)``, ``k3 = 2^round(L - 2)``, ``k_i = ceil(n/2)``
    for passes 4..14. Sizes are clipped to [1, n].
    """
    q = max(qber, _QBER_FLOOR)
    if variant == "original":
        k1 = math.ceil(0.73 / q)
        sizes = [k1 * 2**i for i in range(4)]
    elif variant == "optimised":
        alpha = math.log2(1.0 / q) - 0.5
        log_n = math.log2(max(n, 2))
        sizes = [
            2 ** math.ceil(alpha),
            min(2 ** math.ceil((alpha + log_n - 2.0) / 2.0), 16 * 2 ** math.ceil(alpha)),
            2 ** round(log_n - 2.0),
        ] + [math.ceil(n / 2)] * 11
    else:
        raise ParameterError("variant", f"must be 'original' or 'optimised', got {variant!r}")
    return np.array([min(max(1, s), max(n, 1)) for s in sizes], dtype=np.int64)


def _affine_permutations(
    n: int, passes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw (mult, off, mult^-1 mod n) per pass, mult uniform among the units mod n.

    The passes in ``EXPLICIT_PASSES`` get ``mult = 0`` and a 63-bit seed in ``off``
    instead: their permutation is derived from the seed (``_cascade_core.seeded_pass``;
    see the module docstring).
    """
    # whole arrays per call (a few generator calls per frame instead of ~30: 58 -> 28 us
    # of Python per frame): mult = the units among a batch of 8 candidates per pass, in
    # order (at least ~17 % of residues are units for any n < 2^31, so a batch rarely
    # runs short; then another is drawn)
    mults = np.ones(passes, dtype=np.int64)
    if n > 2:
        units = np.zeros(0, dtype=np.int64)
        while units.size < passes:
            cand = rng.integers(1, n, size=8 * passes, dtype=np.int64)
            units = np.concatenate((units, cand[np.gcd(cand, n) == 1]))
        mults = units[:passes]
    offs = rng.integers(0, n, size=passes, dtype=np.int64) if n > 0 else np.zeros(passes, np.int64)
    invs = np.array([pow(int(m), -1, n) if n > 1 else 0 for m in mults], dtype=np.int64)
    seeded = [p for p in EXPLICIT_PASSES if p < passes]
    mults[seeded] = 0
    offs[seeded] = rng.integers(0, 2**63, size=len(seeded), dtype=np.int64)
    invs[seeded] = 0
    return mults, offs, invs


_SCRATCH = threading.local()
_SCRATCH_KEEP_BYTES = 32 << 20
def _scratch(n: int, passes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This thread's scratch buffers for a frame of ``n`` bits (grown when too small, kept
    between calls: reusing them spares ~2,800 page faults per 10^6 bits)."""
    need = (2 * len(EXPLICIT_PASSES) * ((n >> 6) + 1), passes * n, 2 * passes * ((n >> 6) + 1))
    have = getattr(_SCRATCH, "bufs", None)
    if have is None or any(h.shape[0] < k for h, k in zip(have, need, strict=True)):
        have = (
            np.empty(need[0], dtype=np.int32),
            np.empty(need[1], dtype=np.uint8),
            np.empty(need[2], dtype=np.uint64),
        )
        # keep them only up to the default frame size's ~14 MB: a one-off huge frame
        # (frame_bits raised by the caller) must not pin its memory to the thread
        if sum(h.nbytes for h in have) <= _SCRATCH_KEEP_BYTES:
            _SCRATCH.bufs = have
    return have


def _text_buffer() -> np.ndarray:
    """This thread's transcript buffer (the kernel grows it by copying when a frame's
    transcript does not fit; :func:`_frame` keeps the grown one)."""
    buf = getattr(_SCRATCH, "text", None)
    if buf is None:
        buf = _SCRATCH.text = np.empty(1 << 16, dtype=np.uint8)
    return buf


def _frame(
    a: np.ndarray, b: np.ndarray, sizes: np.ndarray, perms: tuple, optimised: bool
) -> tuple[int, bytes, int]:
    """Reconcile one frame (``b`` corrected in place): (leaked bits, transcript, messages).

    The transcript is written into this thread's reused buffer (a transcript of 0.1-0.5
    MB per frame grown from scratch cost its copies and fresh pages every frame) and
    copied out once.
    """
    mults, offs, invs = perms
    _, leak, buf, length, messages = reconcile_frame(
        a, b, sizes, mults, offs, invs, optimised, optimised,
        *_scratch(a.shape[0], sizes.shape[0]), _text_buffer(),
    )
    if buf.nbytes <= _SCRATCH_KEEP_BYTES:
        _SCRATCH.text = buf
    return int(leak), buf[:length].tobytes(), int(messages)


def reconcile_cascade(
    alice_bits: np.ndarray,
    bob_bits: np.ndarray,
    qber: float,
    rng: np.random.Generator,
    variant: Variant = "optimised",
    *,
    frame_bits: int = DEFAULT_FRAME_BITS,
    threads: int | None = None,
) -> ReconciliationResult:
    """Correct Bob's key towards Alice's with Cascade; count every disclosed parity bit.

    Args:
        alice_bits: Alice's sifted key, uint8 0/1 (bits).
        bob_bits: Bob's sifted key, same length; not modified.
        qber: the QBER estimate (fraction, 0 <= qber < 0.5) that sets the block sizes and
            the efficiency ``f = leaked / (n h(qber))`` reported.
        rng: source of the shuffles (one affine permutation per pass and frame).
        variant: ``"original"`` (Brassard–Salvail 1993) or ``"optimised"`` (Martinez-Mateo
            et al. 2015, opt. 8 with sub-block reuse); see the module docstring.
        frame_bits: keys longer than this (bits) are split evenly into frames of at most
            this length, reconciled independently (each frame's messages follow a frame
            message in the transcript).
        threads: frames reconciled at once (default: the number of CPUs).

    Returns:
        A :class:`ReconciliationResult`. Residual errors are possible (an even number of
        errors hidden in every block of every pass); verification must follow.

    Raises:
        ParameterError: mismatched lengths, non-binary input, a key of 2^31 bits or more,
            qber outside [0, 0.5), an unknown variant, or frame_bits < 64.
    """
    a, b = validate_pair(alice_bits, bob_bits, qber)
    n = a.shape[0]
    if n >= _MAX_BITS:
        # the shuffle arithmetic is exact in int64 only below this; split longer keys
        raise ParameterError("alice_bits", f"at most {_MAX_BITS - 1} bits per call, got {n}")
    if frame_bits < 64:
        raise ParameterError("frame_bits", f"must be >= 64 bits, got {frame_bits}")
    cascade_block_sizes(n, qber, variant)  # validates the variant
    if n == 0:
        return ReconciliationResult(b.copy(), 0, b"", 0, efficiency(0, 0, qber))
    optimised = variant == "optimised"
    frames = math.ceil(n / frame_bits)
    if frames == 1:
        sizes = cascade_block_sizes(n, qber, variant)
        corrected = b.copy()
        leak, text, messages = _frame(
            a, corrected, sizes, _affine_permutations(n, sizes.shape[0], rng), optimised
        )
        return ReconciliationResult(
            corrected_bits=corrected,
            leaked_bits=leak,
            transcript=text,
            messages=messages,
            efficiency=efficiency(leak, n, qber),
        )

    bounds = [n * i // frames for i in range(frames + 1)]
    # all randomness is drawn here, in frame order, so the result does not depend on
    # how the threads are scheduled
    jobs = []
    for i in range(frames):
        lo, hi = bounds[i], bounds[i + 1]
        sizes = cascade_block_sizes(hi - lo, qber, variant)
        jobs.append((lo, hi, sizes, *_affine_permutations(hi - lo, sizes.shape[0], rng)))
    corrected = b.copy()

    def run(job: tuple) -> tuple[int, bytes, int]:
        lo, hi, sizes, *perms = job
        # corrected[lo:hi] is a view: the kernel corrects Bob's frame in place
        return _frame(a[lo:hi], corrected[lo:hi], sizes, tuple(perms), optimised)

    workers = max(1, min(frames, threads or os.cpu_count() or 1))
    if workers == 1:
        results = [run(job) for job in jobs]
    else:
        results = list(shared_pool("cascade", workers).map(run, jobs))
    parts: list[bytes] = []  # joined once: a frame's text is not copied with its header
    for i, (_, text, _) in enumerate(results):
        size = bounds[i + 1] - bounds[i]
        parts += (bytes([MSG_FRAME, 0]) + size.to_bytes(4, "little"), text)
    leak = sum(r[0] for r in results)
    return ReconciliationResult(
        corrected_bits=corrected,
        leaked_bits=leak,
        transcript=b"".join(parts),
        messages=sum(r[2] for r in results) + frames,
        efficiency=efficiency(leak, n, qber),
    )


class CascadeMessage:
    """One decoded Cascade message (see :func:`parse_transcript`)."""

    __slots__ = ("kind", "pass_index", "count", "payload")

    def __init__(self, kind: str, pass_index: int, count: int, payload: object) -> None:
        self.kind = kind
        self.pass_index = pass_index
        self.count = count
        self.payload = payload

    @property
    def disclosed_bits(self) -> int:
        """Parity bits of Alice's key this message discloses (0 for Bob's messages)."""
        return self.count if self.kind in ("parities", "left") else 0

    def __repr__(self) -> str:
        return f"CascadeMessage({self.kind!r}, pass={self.pass_index}, count={self.count})"


def _unpack(data: bytes, start: int, count: int) -> tuple[np.ndarray, int]:
    nbytes = (count + 7) // 8
    if start + nbytes > len(data):
        raise ParameterError("transcript", "truncated bit payload")
    raw = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=start)
    return np.unpackbits(raw, bitorder="little")[:count], start + nbytes


def parse_transcript(data: bytes) -> list[CascadeMessage]:
    """Decode a Cascade transcript into its messages (the inverse of what the kernel writes).

    Message layout: ``type:u8 pass:u8 count:u32le`` then the payload — block parities
    (Alice -> Bob: ``mult:u64 off:u64`` of the pass permutation — the affine map ``t ->
    (mult t + off) mod n``, or, with ``mult = 0``, the seeded permutation of the seed
    ``off``, see ``_cascade_core.seeded_pass`` — then ``count`` bits),
    odd blocks (Bob -> Alice: ``count`` u32 indices), left-half parities (Alice -> Bob,
    ``count`` bits), directions (Bob -> Alice, ``count`` bits), and, for a key reconciled
    in frames, a frame message (``count`` = the frame's bits) before each frame's
    messages (pass numbers restart at 0 in each frame). Bits are packed LSB first.

    Raises:
        ParameterError: the bytes are not a well-formed transcript.
    """
    out: list[CascadeMessage] = []
    i = 0
    while i < len(data):
        if i + 6 > len(data):
            raise ParameterError("transcript", "truncated message header")
        mtype, pas = data[i], data[i + 1]
        count = int.from_bytes(data[i + 2 : i + 6], "little")
        i += 6
        if mtype == MSG_PARITIES:
            if i + 16 > len(data):
                raise ParameterError("transcript", "truncated permutation")
            mult = int.from_bytes(data[i : i + 8], "little")
            off = int.from_bytes(data[i + 8 : i + 16], "little")
            bits, i = _unpack(data, i + 16, count)
            out.append(CascadeMessage("parities", pas, count, (mult, off, bits)))
        elif mtype == MSG_ODD:
            if i + 4 * count > len(data):
                raise ParameterError("transcript", "truncated block list")
            idx = np.frombuffer(data, dtype="<u4", count=count, offset=i).astype(np.int64)
            i += 4 * count
            out.append(CascadeMessage("odd", pas, count, idx))
        elif mtype == MSG_FRAME:
            out.append(CascadeMessage("frame", pas, count, None))
        elif mtype in (MSG_LEFT, MSG_DIR):
            bits, i = _unpack(data, i, count)
            out.append(CascadeMessage("left" if mtype == MSG_LEFT else "dir", pas, count, bits))
        else:
            raise ParameterError("transcript", f"unknown message type {mtype} at byte {i - 6}")
    return out
