"""LDPC syndrome reconciliation, rate-adaptive by puncturing and shortening (hazmat layer).

Blind, one-way-then-interactive protocol (Elkouss, Martinez-Mateo, Lancho, Martin, "Rate
compatible protocol for information reconciliation: an application to QKD", IEEE ITW 2010,
for the puncturing/shortening of a mother code; Martinez-Mateo, Elkouss, Martin, "Blind
reconciliation", Quantum Inf. Comput. 12, 2012, for revealing punctured symbols on
failure):

1. From the QBER estimate ``Q`` two efficiencies are set: ``f_start(Q)`` (aggressive,
   1.05-1.12, ``start_efficiency``) and ``f_max(Q)`` (conservative, ``target_efficiency``).
   A frame holds ``k`` key bits in a code of length ``N`` with ``M = ceil(f_max h(Q) k)``
   checks (rounded up to ``N/256``);
   ``p = M - round(f_start h(Q) k)`` positions are *punctured* (Alice fills them with her
   own private random bits, Bob's channel LLR there is 0) and the other ``s = N - k - p``
   are *shortened* (set to 0, known to both). The punctured positions are the first ``p``
   of the code's untainted list (``_ldpc_core.untainted_order``): no check sees two of them.
2. Alice sends the syndromes ``H x`` of all frames (one message); Bob decodes each frame by
   layered belief propagation and answers with one success bit per frame.
3. For every frame that failed, Alice reveals the values of the next ``r = ceil(s h k)``
   (``s = reveal_fraction(Q)``, 0.015-0.025)
   punctured symbols (they become shortened for Bob), Bob resumes decoding from his previous
   messages (warm start) and answers again; this repeats until all ``p`` are revealed. A
   frame stuck then on a few unsatisfied checks gets a local flip search (``_flip_search``,
   nothing sent); one that still fails raises :class:`LdpcDecodingFailed` with the leak.

Leak (Elkouss et al. 2010, Sec. III; Martinez-Mateo et al. 2012, eq. 5): per frame
``leaked = M - p + (revealed punctured bits)``. Why ``M - p`` is exact, not hopeful: the
syndrome is ``s = H_K x + H_P u`` with ``u`` Alice's ``p`` uniform private bits, so
``I(x; s, u_R) = H(s, u_R) - H(s, u_R | x) <= (M + |R|) - (|R| + rank H_{P minus R})``. The
untainted punctured columns have pairwise disjoint supports, hence ``rank H_{P minus R} =
p - |R|`` and ``I <= M - p + |R|`` -- the count used here. Shortened positions are public
zeros and leak nothing. ``leaked_bits`` is therefore ``sum over frames of (M - p + revealed)``;
``test_ldpc.py`` recomputes it from the transcript and checks the rank on a dense matrix.

Codes: irregular repeat-accumulate matrices built here deterministically (see
``_ldpc_core.build_ira``), variable-node degree distribution (node perspective, systematic
part) 70 % degree 3 and 30 % degree 12, plus the degree-2 staircase over the parity part;
checks are concentrated (degrees differ by at most ~2). Built on first use and cached. The
DVB-S2 IRA profiles (ETSI EN 302 307-1 Table 5a: ~10-12 % high-degree columns, rest
degree 3) were tried on these random constructions and decoded far worse (0/6 frames at
f = 1.16, Q = 1-5 %, N = 16384), so they are not used.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from qkdnet.errors import ParameterError
from qkdnet.postprocessing._ldpc_core import (
    PHI_TABLE,
    build_ira,
    decode_layered,
    reduce_graph,
    syndrome,
    untainted_order,
)
from qkdnet.postprocessing.reconciliation import (
    ReconciliationFailed,
    ReconciliationResult,
    binary_entropy,
    efficiency,
    validate_pair,
)

__all__ = [
    "LdpcCode",
    "LdpcDecodingFailed",
    "finite_length_margin",
    "ldpc_code",
    "ldpc_plan",
    "reconcile_ldpc",
    "reveal_fraction",
    "start_efficiency",
    "target_efficiency",
]

DEFAULT_FRAME_BITS = 65536
# Node-perspective degree distribution of the systematic columns: (degree, fraction).
DEGREE_DISTRIBUTION: tuple[tuple[int, float], ...] = ((3, 0.7), (12, 0.3))
F_START = 1.05  # efficiency of the first attempt (all p punctured), at Q >= 6 %
REVEAL_STEP = 0.025  # punctured symbols revealed per round, in units of h(Q) k (default)
KEY_FRACTION = 0.875  # at most this share of a frame carries key bits (room for punctures)
# the check count is rounded up to a multiple of N / CHECK_STEPS: fewer distinct codes
# means fewer (0.2-0.5 s) constructions as Q drifts, but a coarse step raises f_max, hence
# the puncturing needed, and at 1 % the untainted positions run out (N/64: f 1.23, N/256:
# f 1.20 at 1 %)
CHECK_STEPS = 256
_MAX_ITER = 100  # layered iterations per attempt
# give up an attempt after this many iterations without fewer unsatisfied checks: short
# while punctured symbols remain to be revealed (the next round resumes from here), long
# for the last attempt
_STALL = 5
_STALL_LAST = 20
_PINNED_LLR = np.float32(40.0)  # "certainly this value": a shortened or revealed position
_QBER_FLOOR = 1e-4

_MSG_SYNDROMES = 1
_MSG_STATUS = 2
_MSG_REVEAL = 3


class LdpcDecodingFailed(ReconciliationFailed):
    """Belief propagation did not reach Alice's syndrome for some frame; block discarded."""


@dataclass(frozen=True)
class LdpcCode:
    """A parity-check matrix in CSR form by check (``edge_var[check_ptr[c]:check_ptr[c+1]]``).

    ``puncture_order``: the untainted variables (no check holds two), in the order they are
    punctured; a frame with ``p`` punctured symbols uses ``puncture_order[:p]``.
    """

    n_vars: int
    n_checks: int
    check_ptr: np.ndarray
    edge_var: np.ndarray
    seed: int
    puncture_order: np.ndarray


@lru_cache(maxsize=64)
def ldpc_code(n_vars: int, n_checks: int, seed: int = 0x5EED) -> LdpcCode:
    """The IRA code with ``n_vars`` columns and ``n_checks`` checks (deterministic, cached)."""
    if not (0 < n_checks < n_vars):
        raise ParameterError("n_checks", f"must be in (0, {n_vars}), got {n_checks}")
    k = n_vars - n_checks
    degrees = np.empty(k, dtype=np.int64)
    start = 0
    for deg, frac in DEGREE_DISTRIBUTION:
        cnt = round(frac * k)
        degrees[start : start + cnt] = min(deg, n_checks)
        start += cnt
    degrees[start:] = min(DEGREE_DISTRIBUTION[-1][0], n_checks)
    check_ptr, edge_var = build_ira(n_vars, n_checks, degrees, seed + 7919 * n_checks)
    order = untainted_order(check_ptr, edge_var, n_vars, seed + 104729 * n_checks)
    for arr in (check_ptr, edge_var, order):
        arr.setflags(write=False)
    return LdpcCode(n_vars, n_checks, check_ptr, edge_var, seed, order)


def target_efficiency(qber: float) -> float:
    """Efficiency f_max the check count is chosen for at QBER ``qber`` (all punctures revealed).

    Calibrated for the flooding decoder of the first version (N = 16384, no shortening,
    100 iterations, 8 frames per point: frame errors at f = 1.15 / 1.20 / 1.25 / 1.30 / 1.35
    were 7/4/3/2/1 of 8 at Q = 1 %, 3/2/0/0/0 at 2 %, 3/0/0/0/0 at 3 %, 0 from 1.15 up at
    5 % and 8 %); the layered decoder with warm starts does better, so as the ceiling of the
    blind rounds it leaves a wide margin. Typical frames stop at 1.08-1.15.
    """
    if qber < 0.015:
        return 1.45
    if qber < 0.025:
        return 1.3
    if qber < 0.04:
        return 1.25
    return 1.2


def start_efficiency(qber: float) -> float:
    """Efficiency of the first blind attempt (all punctured symbols hidden) at ``qber``.

    Set just below where frames of these codes start to decode, so that few attempts are
    wasted; lower would not lower the final f. Measured with the layered decoder on 18
    frames of 55556 key bits (N = 65536) per QBER, first round that decoded (0 = the first
    attempt, each round adding 0.025): with a start at 1.06 (2.5-4 %) and 1.05 (from 4 %),
    0/18 frames decoded in round 0 at 3 %, 1/18 at 3.5 %, 0/18 at 4 % and 5 %, 1/18 at
    6.5 %, 4/18 at 8 %; at 2 % (start 1.08) 3/18, at 2.5 % 5/18. A first attempt that
    almost never succeeds still costs ~15-20 iterations per frame, so from 2.5 to 6 % the
    start is 1.085 / 1.075, with finer reveal steps there (``reveal_fraction``).
    """
    if qber < 0.015:
        return 1.12
    if qber < 0.025:
        return 1.08
    if qber < 0.04:
        return 1.085
    if qber < 0.06:
        return 1.075
    return F_START


def reveal_fraction(qber: float) -> float:
    """Punctured symbols revealed per failed round, in units of ``h(Q) k`` (bits per bit).

    0.025 in general; 0.015 from 2.5 to 6 %, where the first attempt starts later
    (``start_efficiency``). Paired runs (6 keys of 10^6 bits per QBER, same keys) against
    the earlier start with 0.025 steps: f 1.1127 -> 1.1113 at 2.6 %, 1.1083 -> 1.1076 at
    3 %, 1.1014 -> 1.0973 at 4 %, 1.0905 -> 1.0881 at 5 %, with 65 -> 57-61, 64 -> 54 and
    68 -> 55 iterations per frame. Below 2.5 % and from 6 % the finer step also lowered f
    (by 0.004-0.007) but cost 13-24 % more iterations, so those keep 0.025.
    """
    if 0.025 <= qber < 0.06:
        return 0.015
    return REVEAL_STEP


def finite_length_margin(hk: float) -> float:
    """Extra efficiency for the ceiling of short frames: ``max(0, 3 / sqrt(h k) - 0.05)``.

    The gap to capacity of a length-N code grows like ``1 / sqrt(N)`` (Polyanskiy, Poor,
    Verdu, IEEE Trans. IT 56, 2010); measured here: 6000-bit keys at Q = 1 % (h k = 485)
    failed 1 frame in 8 with all punctures revealed at f = 1.45. The margin is 0.09 there
    and 0 from h k = 3600 (a 57344-bit frame at 1 %) on, where the table alone holds.
    """
    if hk <= 0:
        return 0.0
    return max(0.0, 3.0 / math.sqrt(hk) - 0.05)


@dataclass(frozen=True)
class LdpcPlan:
    """How a key is cut into frames: mother code, key bits per frame, punctured bits."""

    n_vars: int
    n_checks: int
    frame_key_bits: tuple[int, ...]
    punctured: int
    reveal_step: int


def ldpc_plan(n: int, qber: float, frame_bits: int = DEFAULT_FRAME_BITS) -> LdpcPlan:
    """Cut an ``n``-bit key into frames of a mother code (all sizes in bits).

    The key is spread evenly over ``ceil(n / (0.875 frame_bits))`` frames of ``k`` bits; the
    code length N is ``frame_bits``, or for a shorter key the power of two >= k / 0.875 (at
    least 1024); the check count is ``f_max(Q) h(Q) k`` rounded up to a multiple of
    ``N / 256`` (at most 256 distinct codes per length, each built once). ``punctured =
    M - round(f_start(Q) h(Q) k)`` (``start_efficiency``; capped by the untainted
    positions the code has) and
    ``reveal_step = ceil(reveal_fraction(Q) h(Q) k)``; the remaining ``N - k - p`` positions
    are shortened.
    """
    if frame_bits < 256:
        raise ParameterError("frame_bits", f"must be >= 256 bits, got {frame_bits}")
    q = max(qber, _QBER_FLOOR)
    h = binary_entropy(q)
    cap = int(frame_bits * KEY_FRACTION)
    frames = math.ceil(n / cap) if n > 0 else 0
    sizes = tuple(n // frames + (1 if i < n % frames else 0) for i in range(frames))
    k = max(sizes) if sizes else cap
    # a short key gets a shorter code (a power of two >= k / 0.875, at least 1024) so that
    # at most about half of a frame is shortened: heavily shortened frames decode badly
    need = math.ceil(k / KEY_FRACTION)
    length = min(frame_bits, max(1024, 1 << max(0, need - 1).bit_length()))
    step = max(1, length // CHECK_STEPS)
    f_max = target_efficiency(q) + finite_length_margin(h * k)
    n_checks = min(length - step, max(step, math.ceil(f_max * h * k / step) * step))
    if not sizes:
        return LdpcPlan(length, n_checks, sizes, 0, 1)
    code = ldpc_code(length, n_checks)
    punctured = max(0, n_checks - round(start_efficiency(q) * h * k))
    punctured = min(punctured, code.puncture_order.size, length - k)
    reveal = max(1, math.ceil(reveal_fraction(q) * h * k))
    return LdpcPlan(length, n_checks, sizes, punctured, reveal)


_FLIP_MAX_UNSATISFIED = 4  # try the flip search only when this few checks are left
_FLIP_MAX_TRIES = 96
_FLIP_ITER = 30


def _flip_search(
    ptr: np.ndarray, var: np.ndarray, llr: np.ndarray, synd: np.ndarray, c2v: np.ndarray,
    x: np.ndarray,
) -> bool:
    """Last resort for a frame stuck with a few unsatisfied checks (a trapping set).

    Seen at 3 % and 5 % on 65536-bit codes (about 1 frame in 300): with every punctured
    symbol revealed the decoder ends with one unsatisfied check and does not decode from
    scratch either; one of that check's variables has the wrong hard decision and holds
    it. Bob pins each variable of the unsatisfied checks in turn to the opposite of its
    current decision and resumes from the final messages for a few iterations, the
    bit-pinning idea of trapping-set post-processing (Han & Ryan, "Low-floor decoders for
    LDPC codes", IEEE Trans. Commun. 57, 2009). Local work only: nothing is sent, so the
    leak is unchanged; a wrong solution of the syndrome would be caught by verification
    like any decoding error. On success ``x`` holds the solution and True is returned.
    """
    unsat = np.flatnonzero(syndrome(ptr, var, x) ^ synd)
    if unsat.size == 0 or unsat.size > _FLIP_MAX_UNSATISFIED:
        return False
    final = c2v.copy()
    candidates = np.unique(np.concatenate([var[ptr[c] : ptr[c + 1]] for c in unsat]))
    current = x.copy()
    trial = np.empty_like(x)
    for v in candidates[:_FLIP_MAX_TRIES].tolist():
        pinned = llr.copy()
        pinned[v] = _PINNED_LLR * np.float32(1 - 2 * (1 - int(current[v])))
        msgs = final.copy()
        ok, _ = decode_layered(
            ptr, var, pinned, synd, _FLIP_ITER, PHI_TABLE, msgs, _STALL, trial
        )
        if ok:
            x[:] = trial
            return True
    return False


def _pack(bits: np.ndarray) -> bytes:
    return np.packbits(bits, bitorder="little").tobytes()


def reconcile_ldpc(
    alice_bits: np.ndarray,
    bob_bits: np.ndarray,
    qber: float,
    rng: np.random.Generator,
    *,
    frame_bits: int = DEFAULT_FRAME_BITS,
) -> ReconciliationResult:
    """Correct Bob's key by blind rate-adapted LDPC syndrome decoding (see module docstring).

    Args:
        alice_bits, bob_bits: the sifted keys, uint8 0/1, equal length (bits).
        qber: QBER estimate (fraction in [0, 0.5)); sets the code rate and Bob's channel
            LLRs, and the efficiency ``f = leaked / (n h(qber))`` reported.
        rng: draws the key positions of each frame (a seed sent in the transcript) and
            Alice's private values of the punctured symbols (never sent unless revealed).
            The ``- p`` leak credit assumes Eve cannot predict those values: in a
            deployment ``rng`` must be seeded from a cryptographic source and not shared
            with anything public (NumPy's PCG64 is not a CSPRNG, and one of its outputs,
            the frame seed, is public).
        frame_bits: maximum code length N (bits); 65536 by default.

    Returns a result whose ``leaked_bits`` is ``sum over frames of (M - p + revealed)``, the
    exact bound derived in the module docstring (Elkouss et al. 2010; Martinez-Mateo et al.
    2012).

    Raises:
        ParameterError: bad input.
        LdpcDecodingFailed: some frame did not decode with all punctured symbols revealed;
            ``.leaked_bits`` holds the bits already disclosed.
    """
    a, b = validate_pair(alice_bits, bob_bits, qber)
    n = a.shape[0]
    plan = ldpc_plan(n, qber, frame_bits)
    if n == 0:
        return ReconciliationResult(b.copy(), 0, b"", 0, efficiency(0, 0, qber))
    code = ldpc_code(plan.n_vars, plan.n_checks)
    seed = int(rng.integers(0, 2**63))
    frames = len(plan.frame_key_bits)
    p = plan.punctured
    punct = np.asarray(code.puncture_order[:p])
    q = max(qber, _QBER_FLOOR)
    channel_llr = math.log((1.0 - q) / q)

    header = bytearray([_MSG_SYNDROMES])
    for v in (code.n_vars, code.n_checks, frames):
        header += int(v).to_bytes(4, "little")
    header += seed.to_bytes(8, "little")
    header += int(p).to_bytes(4, "little")
    header += b"".join(int(k).to_bytes(4, "little") for k in plan.frame_key_bits)
    # positions open to key bits: all but the punctured ones
    is_punct = np.zeros(code.n_vars, dtype=bool)
    is_punct[punct] = True
    open_pos = np.flatnonzero(~is_punct)
    frame_rngs = np.random.default_rng(seed).spawn(frames)
    starts = np.concatenate(([0], np.cumsum(plan.frame_key_bits))).astype(np.int64)
    words = []
    positions = []
    syndromes = []
    for i, k in enumerate(plan.frame_key_bits):
        # key bits go to a public random subset of the non-punctured positions; the rest
        # are shortened (0); punctured ones get Alice's private random bits
        pos = np.sort(frame_rngs[i].choice(open_pos, size=k, replace=False))
        x = np.zeros(code.n_vars, dtype=np.uint8)
        x[pos] = a[starts[i] : starts[i] + k]
        x[punct] = rng.integers(0, 2, p, dtype=np.uint8)
        words.append(x)
        positions.append(pos)
        syndromes.append(syndrome(code.check_ptr, code.edge_var, x))
    transcript = [bytes(header) + b"".join(_pack(s) for s in syndromes)]
    leaked = frames * (code.n_checks - p)

    # Bob's per-frame state, on H without its shortened columns (public zeros: dropping
    # them is exact): key positions first (reduced index = rank in ``pos``), then the
    # punctured ones (index k + j for punct[j]); channel LLRs, 0 on punctured symbols
    graphs = []
    llrs = []
    xs = []
    for i, k in enumerate(plan.frame_key_bits):
        new_index = np.full(code.n_vars, -1, dtype=np.int32)
        new_index[positions[i]] = np.arange(k)
        new_index[punct] = np.arange(k, k + p)
        graphs.append(reduce_graph(code.check_ptr, code.edge_var, new_index))
        llr = np.zeros(k + p, dtype=np.float32)
        y = b[starts[i] : starts[i] + k]
        llr[:k] = np.float32(channel_llr) * (1 - 2 * y.astype(np.float32))
        llrs.append(llr)
        xs.append(np.empty(k + p, dtype=np.uint8))
    c2v = [np.zeros(g[1].shape[0], dtype=np.float32) for g in graphs]
    corrected = b.copy()

    def decode(i: int) -> bool:
        stall = _STALL if remaining > 0 else _STALL_LAST
        ptr, var = graphs[i]
        ok, _ = decode_layered(
            ptr, var, llrs[i], syndromes[i], _MAX_ITER, PHI_TABLE, c2v[i], stall, xs[i]
        )
        if not ok and remaining == 0:
            ok = _flip_search(ptr, var, llrs[i], syndromes[i], c2v[i], xs[i])
        if ok:
            k = plan.frame_key_bits[i]
            corrected[starts[i] : starts[i] + k] = xs[i][:k]
            c2v[i] = np.zeros(0, dtype=np.float32)  # free the messages of a done frame
        return bool(ok)

    # frames are independent: decode them on a thread pool (the decoder releases the GIL)
    workers = max(1, min(frames, os.cpu_count() or 1))
    status = np.zeros(frames, dtype=np.uint8)
    messages = 1
    remaining = p  # punctured symbols still hidden (a prefix of ``punct``)
    rnd = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        todo = np.arange(frames)
        while True:
            done = list(pool.map(decode, todo.tolist()))
            status[todo] = np.array(done, dtype=np.uint8)
            transcript.append(
                bytes([_MSG_STATUS]) + int(todo.size).to_bytes(4, "little")
                + _pack(status[todo])
            )
            messages += 1
            todo = np.flatnonzero(status == 0)
            if todo.size == 0 or remaining == 0:
                break
            # reveal the last ``r`` still-punctured symbols of every failed frame
            r = min(plan.reveal_step, remaining)
            reveal = punct[remaining - r : remaining]
            remaining -= r
            rnd += 1
            msg = bytearray([_MSG_REVEAL, rnd & 0xFF])
            msg += int(todo.size).to_bytes(4, "little") + int(r).to_bytes(4, "little")
            msg += b"".join(int(fi).to_bytes(4, "little") for fi in todo)
            for fi in todo.tolist():
                vals = words[fi][reveal]
                msg += _pack(vals)
                k = plan.frame_key_bits[fi]
                llrs[fi][k + remaining : k + remaining + r] = _PINNED_LLR * (
                    1 - 2 * vals.astype(np.float32)
                )
            leaked += r * int(todo.size)
            transcript.append(bytes(msg))
            messages += 1
    if not status.all():
        bad = int(frames - status.sum())
        raise LdpcDecodingFailed(
            f"LDPC decoding failed on {bad} of {frames} frames at QBER {qber:.4f} with all "
            f"{p} punctured symbols revealed; discard the block (the syndromes and revealed "
            "symbols count as leaked)",
            leaked_bits=leaked,
        )
    return ReconciliationResult(
        corrected_bits=corrected,
        leaked_bits=leaked,
        transcript=b"".join(transcript),
        messages=messages,
        efficiency=efficiency(leaked, n, qber),
    )
