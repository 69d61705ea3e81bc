"""Numba kernels for LDPC syndrome reconciliation (private; see ``ldpc.py``).

Codes are irregular repeat-accumulate (IRA) parity-check matrices ``H = [H1 | T]``:
``T`` is the M x M dual-diagonal "staircase" (column ``K+i`` checks ``i`` and ``i+1``), so
the degree-2 variable nodes never close a cycle among themselves; ``H1`` (K columns) gets
each column's degree from a fixed distribution and its edges are placed greedily on the
least-loaded checks that do not close a 4-cycle (a progressive-edge-growth-style rule
restricted to girth > 4; cf. Hu, Eleftheriou, Arnold, IEEE Trans. IT 51, 2005).

The decoder, ``decode_layered``, is belief propagation adapted to syndrome decoding (the
sign of every check-to-variable message is flipped when that check's syndrome bit is 1):
layered sum-product with a phi table and warm start. The flooding sum-product and
normalised min-sum decoders of the first version (min-sum needs ~0.1 more efficiency at
the high check degrees of rate-0.8-0.9 codes) were unused and have been removed; they are
in the git history.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _splitmix(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def build_ira(
    n_vars: int, n_checks: int, col_degrees: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (check_ptr, edge_var): H in CSR by check, variable indices sorted per check."""
    # a private splitmix64 stream: the construction is a pure function of ``seed``
    state = np.uint64(seed)
    k = n_vars - n_checks
    # adjacency lists with generous capacity
    max_cdeg = 4 * (int(col_degrees.sum()) // max(n_checks, 1) + 4) + 8
    # int32 tables: half the memory traffic of the marking loop below
    cadj = np.full((n_checks, max_cdeg), -1, dtype=np.int32)
    cdeg = np.zeros(n_checks, dtype=np.int64)
    vmax = int(col_degrees.max()) if k > 0 else 2
    vadj = np.full((k, vmax), -1, dtype=np.int32)
    mark = np.zeros(n_checks, dtype=np.int32)  # mark[c] == v+1: c is forbidden for v
    # staircase first, so H1 avoids 4-cycles through it as well
    for i in range(n_checks):
        v = k + i
        cadj[i, cdeg[i]] = v
        cdeg[i] += 1
        if i + 1 < n_checks:
            cadj[i + 1, cdeg[i + 1]] = v
            cdeg[i + 1] += 1
    order = np.arange(k)
    for i in range(k - 1, 0, -1):
        state, r = _splitmix(state)
        jj = np.int64(r % np.uint64(i + 1))
        order[i], order[jj] = order[jj], order[i]
    for idx in range(k):
        v = order[idx]
        dv = col_degrees[v]
        for e in range(dv):
            # forbidden: checks already on v, and checks sharing a variable with them
            best = -1
            bestdeg = 1 << 40
            for _ in range(64):
                state, r = _splitmix(state)
                cand = np.int64(r % np.uint64(n_checks))
                if mark[cand] == v + 1:
                    continue
                if cdeg[cand] < bestdeg and cdeg[cand] < max_cdeg:
                    best = int(cand)
                    bestdeg = cdeg[cand]
            if best < 0:
                # fall back to a linear scan for any allowed check
                for cc in range(n_checks):
                    allowed = mark[cc] != v + 1 and cdeg[cc] < max_cdeg
                    if allowed and (best < 0 or cdeg[cc] < bestdeg):
                        best = cc
                        bestdeg = cdeg[cc]
            if best < 0:
                break
            c = best
            vadj[v, e] = c
            cadj[c, cdeg[c]] = v
            cdeg[c] += 1
            if e == dv - 1:
                continue  # v takes no more edges: nothing to forbid
            # every check of a variable already on c becomes forbidden for v (4-cycle)
            for t in range(cdeg[c] - 1):
                u = cadj[c, t]
                if u >= k:
                    ui = u - k
                    mark[ui] = v + 1
                    if ui + 1 < n_checks:
                        mark[ui + 1] = v + 1
                else:
                    for s in range(vmax):
                        c2 = vadj[u, s]
                        if c2 < 0:
                            break
                        mark[c2] = v + 1
            mark[c] = v + 1
    check_ptr = np.zeros(n_checks + 1, dtype=np.int64)
    for c in range(n_checks):
        check_ptr[c + 1] = check_ptr[c] + cdeg[c]
    edge_var = np.empty(check_ptr[n_checks], dtype=np.int64)
    for c in range(n_checks):
        row = np.sort(cadj[c, : cdeg[c]])
        edge_var[check_ptr[c] : check_ptr[c + 1]] = row
    return check_ptr, edge_var


@njit(cache=True, nogil=True)
def syndrome(check_ptr: np.ndarray, edge_var: np.ndarray, x: np.ndarray) -> np.ndarray:
    """H x over GF(2) for a 0/1 vector x."""
    m = check_ptr.shape[0] - 1
    s = np.zeros(m, dtype=np.uint8)
    for c in range(m):
        acc = 0
        for e in range(check_ptr[c], check_ptr[c + 1]):
            acc ^= x[edge_var[e]]
        s[c] = acc
    return s


# phi(x) = -log(tanh(x / 2)) = log((e^x + 1) / (e^x - 1)), an involution on x > 0; the
# sum-product check update in the log domain is |c2v_e| = phi(sum_{e' != e} phi(|q_e'|))
# (Gallager 1963; Richardson & Urbanke, "Modern Coding Theory", Sec. 4.1), so a table of phi
# replaces the per-edge tanh / atanh of the product form.
#
# The table is on a logarithmic grid: its index is the float32 bit pattern of |x| shifted
# right (the exponent and the top _LOG_MANT mantissa bits), so the cells have a constant
# relative width (2^-7, 0.8 %) from 2^-13 to 2^5 and the steep part of phi near 0 is
# resolved as finely as the flat part, with one clamp and no branch. Below 2^-13 phi is
# clamped to phi(2^-13) ~ 9.7 (messages cap there: a coarse cap near 5.5 made an error
# floor), above 2^5 it is 0 (phi(32) ~ 3e-14).
_LOG_MANT = 7
_LOG_SHIFT = 23 - _LOG_MANT
_LOG_LO = -13
_LOG_HI = 5
_LOG_BASE = (127 + _LOG_LO) << _LOG_MANT
_LOG_SIZE = (_LOG_HI - _LOG_LO) << _LOG_MANT


def _phi_table() -> np.ndarray:
    idx = np.arange(_LOG_SIZE + 1, dtype=np.int64)
    lo = ((idx + _LOG_BASE) << _LOG_SHIFT).astype(np.uint32).view(np.float32)
    lo64 = lo.astype(np.float64)
    mid = lo64 * np.sqrt(1.0 + 2.0**-_LOG_MANT)  # geometric middle of the cell
    t = np.log1p(2.0 / np.expm1(mid))
    t[-1] = 0.0  # everything from 2^5 up
    return t.astype(np.float32)


PHI_TABLE = _phi_table()


@njit(cache=True, inline="always")
def _phi_index(bits: np.uint32) -> np.uint64:
    # unsigned all the way: a signed index costs a negative-index fix-up on every load
    i = np.uint32(bits >> np.uint32(_LOG_SHIFT))
    lo = np.uint32(_LOG_BASE)
    return np.uint64(min(max(i, lo), np.uint32(_LOG_BASE + _LOG_SIZE)) - lo)


@njit(cache=True, nogil=True)
def _satisfied(
    check_ptr: np.ndarray, edge_var: np.ndarray, total: np.ndarray, synd: np.ndarray,
    x: np.ndarray,
) -> bool:
    """Write the hard decision of ``total`` into ``x``; True when ``H x == synd``."""
    for v in range(total.shape[0]):
        x[v] = 1 if total[v] < 0 else 0
    for c in range(check_ptr.shape[0] - 1):
        acc = synd[c]
        for e in range(check_ptr[c], check_ptr[c + 1]):
            acc ^= x[edge_var[e]]
        if acc:
            return False
    return True


@njit(cache=True, fastmath=True, nogil=True)
def decode_layered(
    check_ptr: np.ndarray,
    edge_var: np.ndarray,
    llr: np.ndarray,
    synd: np.ndarray,
    max_iter: int,
    table: np.ndarray,
    c2v: np.ndarray,
    stall: int,
    x: np.ndarray,
) -> tuple[bool, int]:
    """Layered (serial-by-check) sum-product syndrome decoding with early termination.

    Each check in turn reads its variables' current posteriors, removes its own old message,
    and writes the new message straight back (Hocevar, "A reduced complexity decoder
    architecture via layered decoding of LDPC codes", SIPS 2004): the schedule converges in
    about half the iterations of flooding. Check updates use the log-domain rule with the
    log-grid phi table ``PHI_TABLE``, the sign flipped where the syndrome bit is 1.

    ``llr`` float32, ``llr[v] = log P(x_v = 0 | y) / P(x_v = 1 | y)`` (0 at a punctured
    position). ``c2v`` (float32, one per edge) holds the check-to-variable messages in and
    out: zeros for a cold start, or the state of an earlier failed run on the same frame (a
    warm start after more positions were pinned). ``x`` (uint8) receives the hard decision.
    The syndrome of the hard decision is tested after every iteration; decoding stops as
    soon as it equals ``synd`` (success), after ``max_iter`` iterations, or when the number
    of unsatisfied checks has not reached a new minimum for ``stall`` iterations (a stuck
    decoder: stop early, the caller reveals more). Returns (converged, iterations used).
    """
    m = check_ptr.shape[0] - 1
    ne = edge_var.shape[0]
    total = llr.astype(np.float32)
    # indices are cast to unsigned before every array access: Numba then drops the
    # negative-index fix-up it adds to signed ones (2.4 against 3.9 ns per edge-iteration)
    for e in range(ne):
        total[np.uint64(edge_var[e])] += c2v[e]
    dmax = 1
    for c in range(m):
        dmax = max(dmax, int(check_ptr[c + 1] - check_ptr[c]))
    qbuf = np.empty(dmax, dtype=np.float32)  # v2c messages of the current check
    abuf = np.empty(dmax, dtype=np.float32)  # |q|, then the rest of the phi sum
    abits = abuf.view(np.uint32)  # the same memory as bit patterns: the table index
    pbuf = np.empty(dmax, dtype=np.float32)  # phi(|q|)
    best = m + 1
    since = 0
    zero = np.float32(0.0)
    if _satisfied(check_ptr, edge_var, total, synd, x):
        return True, 0
    for it in range(1, max_iter + 1):
        # one layered pass; the parity of the current hard decisions of each check is taken
        # on the fly (it counts the checks seen unsatisfied, a cheap progress measure), and
        # only a pass that saw none pays for the exact syndrome test
        bad = 0
        for c in range(m):
            start = np.uint64(check_ptr[c])
            d = np.uint64(check_ptr[c + 1]) - start
            # sign bits are XORed as integers: the signs of syndrome-coded frames are random,
            # so branching on them would be mispredicted half the time
            neg = np.int32(synd[c])
            hard = np.int32(synd[c])
            for j in range(d):
                t = total[np.uint64(edge_var[start + j])]
                hard ^= np.int32(t < zero)
                q = t - c2v[start + j]
                qbuf[j] = q
                neg ^= np.int32(q < zero)
                abuf[j] = abs(q)
            bad += int(hard)
            ssum = zero
            for j in range(d):
                ph = table[_phi_index(abits[j])]
                pbuf[j] = ph
                ssum += ph
            for j in range(d):
                abuf[j] = max(ssum - pbuf[j], zero)
            for j in range(d):
                q = qbuf[j]
                mag = table[_phi_index(abits[j])]
                # the extrinsic sign: the product of all signs times this edge's own
                s_neg = neg ^ np.int32(q < zero)
                val = mag * np.float32(1 - 2 * s_neg)
                c2v[start + j] = val
                total[np.uint64(edge_var[start + j])] = q + val
        if (bad == 0 or it == max_iter) and _satisfied(check_ptr, edge_var, total, synd, x):
            return True, it
        if bad < best:
            best = bad
            since = 0
        else:
            since += 1
        if since > stall:
            _satisfied(check_ptr, edge_var, total, synd, x)
            return False, it
    return False, max_iter


@njit(cache=True, nogil=True)
def untainted_order(
    check_ptr: np.ndarray, edge_var: np.ndarray, n_vars: int, seed: int
) -> np.ndarray:
    """Variables to puncture, in reveal order, such that no check has two of them.

    Greedy untainted puncturing (Elkouss, Martinez-Mateo, Martin, "Untainted puncturing for
    irregular low-density parity-check codes", IEEE Wireless Commun. Lett. 1, 2012): take a
    variable if none of its checks already holds a punctured variable. Unlike the paper
    (smallest neighbourhood first) variables are visited by *decreasing* degree (random
    order within a degree): a punctured degree-12 column is recovered from 12 checks, and
    on these IRA codes this ordering gave f 1.147 / 1.123 / 1.096 at Q = 2 / 3 / 5 %
    against 1.168 / 1.118 / 1.108 for increasing degree (10^5-bit keys, 3 each), and fewer
    failed attempts. Every taken variable is then recoverable in
    one step, and the punctured columns of H have disjoint supports, so they are linearly
    independent over GF(2) (the leak accounting in ``ldpc.py`` relies on this).
    """
    m = check_ptr.shape[0] - 1
    ne = edge_var.shape[0]
    vdeg = np.zeros(n_vars, dtype=np.int64)
    for e in range(ne):
        vdeg[edge_var[e]] += 1
    vptr = np.zeros(n_vars + 1, dtype=np.int64)
    for v in range(n_vars):
        vptr[v + 1] = vptr[v] + vdeg[v]
    fill = vptr[:-1].copy()
    vchk = np.empty(ne, dtype=np.int64)
    for c in range(m):
        for e in range(check_ptr[c], check_ptr[c + 1]):
            v = edge_var[e]
            vchk[fill[v]] = c
            fill[v] += 1
    state = np.uint64(seed)
    key = np.empty(n_vars, dtype=np.float64)
    for v in range(n_vars):
        state, r = _splitmix(state)
        key[v] = -vdeg[v] + (r >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    order = np.argsort(key)
    used = np.zeros(m, dtype=np.uint8)
    out = np.empty(n_vars, dtype=np.int64)
    cnt = 0
    for idx in range(n_vars):
        v = order[idx]
        if vdeg[v] == 0:
            continue
        free = True
        for t in range(vptr[v], vptr[v + 1]):
            if used[vchk[t]]:
                free = False
                break
        if free:
            for t in range(vptr[v], vptr[v + 1]):
                used[vchk[t]] = 1
            out[cnt] = v
            cnt += 1
    return out[:cnt].copy()


@njit(cache=True, nogil=True)
def reduce_graph(
    check_ptr: np.ndarray, edge_var: np.ndarray, new_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """H restricted to the columns with ``new_index[v] >= 0``, relabelled to those indices.

    A shortened column is a public zero: it adds nothing to any syndrome and a message from
    it never changes a check's output, so dropping its edges before decoding is exact and
    saves their share (15-25 % of the edges at 50000 key bits in a 65536-bit code) of every
    iteration. Returns (check_ptr int64, edge_var uint32) in CSR by check.
    """
    m = check_ptr.shape[0] - 1
    ptr = np.zeros(m + 1, dtype=np.int64)
    out = np.empty(edge_var.shape[0], dtype=np.uint32)
    j = 0
    for c in range(m):
        for e in range(np.uint64(check_ptr[c]), np.uint64(check_ptr[c + 1])):
            w = new_index[np.uint64(edge_var[e])]
            out[j] = np.uint32(w)
            j += 1 if w >= 0 else 0  # branch-free: a dropped edge is overwritten next
        ptr[c + 1] = j
    return ptr, out[:j].copy()
