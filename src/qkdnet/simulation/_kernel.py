"""The per-step inner loop of the vector engine, in Numba.

Between two events (failure, repair, reroute) the routes are fixed, so every time step is
the same small computation over arrays: links produce key blocks, applications' requests
of this step are served from the key-management links on their paths, and pools fall.
Cost per step is O(links + path hops of all applications); nothing here allocates.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def run_steps(
    step0: int,
    n_steps: int,
    steps_per_bucket: int,
    pool: np.ndarray,  # int64[L] key bytes in each link's pool (changed in place)
    carry: np.ndarray,  # float64[L] blocks produced, not yet whole
    capacity: np.ndarray,  # int64[L] pool capacity, bytes
    produce: np.ndarray,  # float64[L] blocks per step (0 when out of service)
    block_bytes: np.int64,  # bytes per deposited block (Kq-1 granularity)
    usable: np.ndarray,  # bool[L] in service: its pool may be drawn from
    group_ptr: np.ndarray,  # int64[G+1] CSR: links of each key-management link (node pair)
    group_links: np.ndarray,  # int64[...]
    app_ptr: np.ndarray,  # int64[A+1] CSR: groups each application's relay crosses
    app_groups: np.ndarray,  # int64[...]
    app_bytes: np.ndarray,  # int64[A] bytes per key
    mac_bytes: np.int64,  # link-key bytes per relay message per hop (authentication)
    per_call: np.int64,  # keys per supply call at most (max_key_per_request)
    app_routable: np.ndarray,  # bool[A] has a path now (or needs none)
    class_ptr: np.ndarray,  # int64[C+1] CSR over ``class_apps``: priority classes, high first
    class_apps: np.ndarray,  # int64[A]
    requests: np.ndarray,  # int64[n_steps, A] keys requested in each step
    reserved: np.ndarray,  # int64[n_steps, A] of which within a reservation; (0, 0): none
    res_apps: np.ndarray,  # int64[...] applications holding a reservation, service order
    protect: np.ndarray,  # int64[G] bytes best effort must leave on each KM link
    served: np.ndarray,  # int64[B, A] accumulated per bucket (out)
    no_key: np.ndarray,  # int64[B, A] refused: not enough key (out)
    no_route: np.ndarray,  # int64[B, A] refused: no allowed path (out)
    res_served: np.ndarray,  # int64[B, A] served of the reserved part (out)
    pool_record: np.ndarray,  # int64[B, L] pool at the end of each bucket (out)
) -> None:
    n_links = pool.shape[0]
    n_groups = group_ptr.shape[0] - 1
    avail = np.zeros(n_groups, dtype=np.int64)
    demand = np.zeros(n_groups, dtype=np.int64)
    ratio = np.zeros(n_groups, dtype=np.float64)
    has_res = reserved.shape[0] > 0
    for i in range(n_steps):
        step = step0 + i
        bucket = step // steps_per_bucket
        # 1. Kq-1: each link in service deposits whole blocks of new key.
        for link in range(n_links):
            carry[link] += produce[link]
            whole = np.int64(carry[link])
            if whole > 0:
                carry[link] -= whole
                pool[link] = min(capacity[link], pool[link] + whole * block_bytes)
        # 2. Key available on each key-management link (parallel QKD links pooled).
        for g in range(n_groups):
            total = np.int64(0)
            for k in range(group_ptr[g], group_ptr[g + 1]):
                link = group_links[k]
                if usable[link]:
                    total += pool[link]
            avail[g] = total
        # 3. First the reserved parts (one class above all others), then the priority
        #    classes with what is left of each request (best effort), which may not draw a
        #    KM link below ``protect`` (what the reservations may need next step).
        if has_res:
            _serve(i, bucket, res_apps, 0, res_apps.shape[0], reserved, reserved, False,
                   avail, demand, ratio, protect, pool, usable, group_ptr, group_links,
                   app_ptr, app_groups, app_bytes, mac_bytes, per_call, app_routable,
                   served, no_key, no_route, res_served, True)
        for c in range(class_ptr.shape[0] - 1):
            _serve(i, bucket, class_apps, class_ptr[c], class_ptr[c + 1], requests, reserved,
                   has_res, avail, demand, ratio, protect, pool, usable, group_ptr,
                   group_links, app_ptr, app_groups, app_bytes, mac_bytes, per_call,
                   app_routable, served, no_key, no_route, res_served, False)
        # 4. Record the pools at the last step of a bucket.
        if (step + 1) % steps_per_bucket == 0 or i == n_steps - 1:
            for link in range(n_links):
                pool_record[bucket, link] = pool[link]


@njit(cache=True, inline="always")
def _serve(i: int, bucket: int, apps: np.ndarray, lo: int, hi: int, requests: np.ndarray,
           reserved: np.ndarray, minus_reserved: bool, avail: np.ndarray, demand: np.ndarray,
           ratio: np.ndarray, protect: np.ndarray, pool: np.ndarray, usable: np.ndarray,
           group_ptr: np.ndarray, group_links: np.ndarray, app_ptr: np.ndarray,
           app_groups: np.ndarray, app_bytes: np.ndarray, mac_bytes: np.int64,
           per_call: np.int64, app_routable: np.ndarray, served: np.ndarray,
           no_key: np.ndarray, no_route: np.ndarray, res_served: np.ndarray,
           is_reserved: bool) -> None:
    """Serve one service class (``apps[lo:hi]``) of step ``i``: a proportional share of
    each KM link's key among the class's requests. Best-effort classes see each link's
    key less ``protect``; the reserved class sees all of it."""
    n_groups = group_ptr.shape[0] - 1
    if is_reserved:  # few applications: touch only the KM links on their paths
        for k in range(lo, hi):
            a = apps[k]
            for j in range(app_ptr[a], app_ptr[a + 1]):
                demand[app_groups[j]] = 0
    else:
        for g in range(n_groups):
            demand[g] = 0
    for k in range(lo, hi):
        a = apps[k]
        want = requests[i, a] - (reserved[i, a] if minus_reserved else 0)
        if want == 0:
            continue
        if not app_routable[a]:
            no_route[bucket, a] += want
            continue
        cost = want * app_bytes[a] + ((want + per_call - 1) // per_call) * mac_bytes
        for j in range(app_ptr[a], app_ptr[a + 1]):
            demand[app_groups[j]] += cost
    if is_reserved:
        for k in range(lo, hi):
            a = apps[k]
            for j in range(app_ptr[a], app_ptr[a + 1]):
                g = app_groups[j]
                if demand[g] > avail[g]:
                    ratio[g] = avail[g] / demand[g]
                else:
                    ratio[g] = 1.0
    elif not minus_reserved:  # no key held back (no reservations)
        for g in range(n_groups):
            if demand[g] > avail[g]:
                ratio[g] = avail[g] / demand[g]
            else:
                ratio[g] = 1.0
    else:
        for g in range(n_groups):
            room = max(avail[g] - protect[g], 0)
            if demand[g] > room:
                ratio[g] = room / demand[g]
            else:
                ratio[g] = 1.0
    for k in range(lo, hi):
        a = apps[k]
        want = requests[i, a] - (reserved[i, a] if minus_reserved else 0)
        if want == 0 or not app_routable[a]:
            continue
        scale = 1.0
        for j in range(app_ptr[a], app_ptr[a + 1]):
            scale = min(scale, ratio[app_groups[j]])
        # Whole keys only: a supply call is all or nothing (KeyExhausted). The
        # largest count whose cost fits the share: keys plus one MAC per call.
        budget = scale * (want * app_bytes[a]
                          + ((want + per_call - 1) // per_call) * mac_bytes)
        got = np.int64(np.floor(want * scale + 1e-9))
        while got > 0:
            cost = got * app_bytes[a] + ((got + per_call - 1) // per_call) * mac_bytes
            if cost <= budget + 1e-6:
                break
            got -= 1
        served[bucket, a] += got
        no_key[bucket, a] += want - got
        if is_reserved:
            res_served[bucket, a] += got
        if got == 0:
            continue
        # Hop-by-hop one-time-pad relay: each hop spends the keys' length plus
        # the authentication key of each relay message (qkdnet.keys.manager).
        need_hop = got * app_bytes[a] + ((got + per_call - 1) // per_call) * mac_bytes
        for j in range(app_ptr[a], app_ptr[a + 1]):
            g = app_groups[j]
            need = need_hop
            avail[g] -= need
            if group_ptr[g + 1] - group_ptr[g] == 1:  # one QKD link: the usual case
                pool[group_links[group_ptr[g]]] -= need
                continue
            # Parallel QKD links: draw in proportion to their pools, so they
            # drain evenly; the rounding remainder goes one block at a time.
            total = np.int64(0)
            for kk in range(group_ptr[g], group_ptr[g + 1]):
                link = group_links[kk]
                if usable[link]:
                    total += pool[link]
            if total > 0:
                left = need
                for kk in range(group_ptr[g], group_ptr[g + 1]):
                    link = group_links[kk]
                    if usable[link]:
                        take = (need * pool[link]) // total
                        pool[link] -= take
                        left -= take
                for kk in range(group_ptr[g], group_ptr[g + 1]):
                    link = group_links[kk]
                    if left > 0 and usable[link] and pool[link] > 0:
                        take = min(left, pool[link])
                        pool[link] -= take
                        left -= take


@njit(cache=True)
def split_reserved(requests: np.ndarray, res_apps: np.ndarray,
                   res_of_app: np.ndarray, key_bits: np.ndarray, tokens: np.ndarray,
                   add_bits: np.ndarray, cap_bits: np.ndarray) -> np.ndarray:
    """The part of each request within its tenant's reservation: a token bucket per
    reservation (the committed rate and burst of MEF 10.3 / RFC 2697 srTCM), in bits.

    Each step reservation r gains ``add_bits[i, r]`` bits of tokens (capped at
    ``cap_bits[r]``); its applications, in ``res_apps`` order, mark as reserved as many
    whole keys as the tokens pay for (``key_bits`` each) and the rest of the request is
    best effort. Tokens are spent when keys are marked, served or not, so the split
    depends on the requests only and both engines share it. ``tokens`` is updated.
    Returns int64[n_steps, A].
    """
    n, n_apps = requests.shape
    out = np.zeros((n, n_apps), dtype=np.int64)
    for i in range(n):
        for r in range(tokens.shape[0]):
            tokens[r] = min(cap_bits[r], tokens[r] + add_bits[i, r])
        for k in range(res_apps.shape[0]):
            a = res_apps[k]
            r = res_of_app[a]
            take = min(requests[i, a], tokens[r] // key_bits[a])
            out[i, a] = take
            tokens[r] -= take * key_bits[a]
    return out
