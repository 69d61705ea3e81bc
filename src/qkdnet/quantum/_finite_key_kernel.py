"""Numba kernel of the finite-key search objective (Lim et al., PRA 89, 022307, 2014).

The same arithmetic as the NumPy reference in :mod:`qkdnet.quantum.finite_key`
(``_system_model`` -> ``_secure_key_per_pulse`` -> ``_objective``), fused into one loop over
rows. The optimiser calls the objective thousands of times, often on a few hundred rows,
where NumPy's per-call overhead (about 150 array operations per call) dominates; this loop
has none. tests/test_finite_key.py checks that both give the same numbers.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_SECRECY_TERMS = 21.0
_LN2 = math.log(2.0)


@njit(cache=True)
def _h(x: float) -> float:
    if x < 1e-300:
        x = 1e-300
    if x > 0.5:
        x = 0.5
    return -x * math.log2(x) - (1.0 - x) * math.log2(1.0 - x)


@njit(cache=True)
def _sig(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))


@njit(cache=True)
def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else (hi if x > hi else x)


@njit(cache=True)
def _bounds(
    c1: float,
    c2: float,
    c3: float,
    dev: float,
    mu1: float,
    mu2: float,
    mu3: float,
    w1: float,
    w2: float,
    w3: float,
    tau0: float,
    tau1: float,
) -> tuple[float, float]:
    """Eqs. (2)-(3): vacuum and single-photon lower bounds from counts c_k per pulse."""
    s0 = tau0 * (mu2 * w3 * (c3 - dev) - mu3 * w2 * (c2 + dev)) / (mu2 - mu3)
    if s0 < 0.0:
        s0 = 0.0
    s1 = (
        tau1
        * mu1
        * (
            w2 * (c2 - dev)
            - w3 * (c3 + dev)
            - (mu2 * mu2 - mu3 * mu3) / (mu1 * mu1) * (w1 * (c1 + dev) - s0 / tau0)
        )
        / (mu1 * (mu2 - mu3) - mu2 * mu2 + mu3 * mu3)
    )
    return s0, s1


@njit(cache=True)
def objective_kernel(
    x: np.ndarray,
    eta: np.ndarray,
    block: np.ndarray,
    settings_box: np.ndarray,
    model: np.ndarray,
    iterations: int,
) -> np.ndarray:
    """Search objective per row: -l/(N eta_sys) with key, -l/n_X without (see finite_key).

    ``settings_box`` = (q_x min, q_x max, p floor, mu2 min, mu2 max, mu1 min, mu1 max);
    ``model`` = (mu3, p_dc, p_ap, e_mis, f_EC, eps_cor, eps_sec, kappa or -1).
    """
    qx_lo, qx_hi, p_floor, m2_lo, m2_hi, m1_lo, m1_hi = (
        settings_box[0],
        settings_box[1],
        settings_box[2],
        settings_box[3],
        settings_box[4],
        settings_box[5],
        settings_box[6],
    )
    mu3, pdc, pap, emis, fec, eps_cor, eps_fixed, kappa = (
        model[0],
        model[1],
        model[2],
        model[3],
        model[4],
        model[5],
        model[6],
        model[7],
    )
    n = x.shape[0]
    out = np.empty(n)
    log_cor = math.log2(2.0 / eps_cor)
    for i in range(n):
        qx = qx_lo + (qx_hi - qx_lo) * _sig(x[i, 0])
        e1 = math.exp(_clip(x[i, 1], -30.0, 30.0))
        e2 = math.exp(_clip(x[i, 2], -30.0, 30.0))
        free = 1.0 - 3.0 * p_floor
        tot = 1.0 + e1 + e2
        p1 = p_floor + free * e1 / tot
        p2 = p_floor + free * e2 / tot
        p3 = 1.0 - p1 - p2
        mu2 = mu3 + m2_lo + (m2_hi - m2_lo) * _sig(x[i, 3])
        mu1 = mu2 + mu3 + m1_lo + (m1_hi - m1_lo) * _sig(x[i, 4])
        et = eta[i]
        ex1 = math.exp(-et * mu1)
        ex2 = math.exp(-et * mu2)
        ex3 = math.exp(-et * mu3)
        d1 = 1.0 - (1.0 - 2.0 * pdc) * ex1
        d2 = 1.0 - (1.0 - 2.0 * pdc) * ex2
        d3 = 1.0 - (1.0 - 2.0 * pdc) * ex3
        r1 = d1 * (1.0 + pap)
        r2 = d2 * (1.0 + pap)
        r3 = d3 * (1.0 + pap)
        er1 = pdc + emis * (1.0 - ex1) + pap * d1 / 2.0
        er2 = pdc + emis * (1.0 - ex2) + pap * d2 / 2.0
        er3 = pdc + emis * (1.0 - ex3) + pap * d3 / 2.0
        pdet = p1 * r1 + p2 * r2 + p3 * r3
        qx2 = qx * qx
        qz2 = (1.0 - qx) * (1.0 - qx)
        inv = 0.0 if math.isinf(block[i]) else qx2 * pdet / block[i]
        nx1, nx2, nx3 = qx2 * p1 * r1, qx2 * p2 * r2, qx2 * p3 * r3
        nz1, nz2, nz3 = qz2 * p1 * r1, qz2 * p2 * r2, qz2 * p3 * r3
        mx_tot = qx2 * (p1 * er1 + p2 * er2 + p3 * er3)
        mz1, mz2, mz3 = qz2 * p1 * er1, qz2 * p2 * er2, qz2 * p3 * er3
        tau0 = p1 * math.exp(-mu1) + p2 * math.exp(-mu2) + p3 * math.exp(-mu3)
        tau1 = p1 * mu1 * math.exp(-mu1) + p2 * mu2 * math.exp(-mu2) + p3 * mu3 * math.exp(-mu3)
        w1 = math.exp(mu1) / p1
        w2 = math.exp(mu2) / p2
        w3 = math.exp(mu3) / p3
        n_x = nx1 + nx2 + nx3
        n_z = nz1 + nz2 + nz3
        m_z = mz1 + mz2 + mz3
        leak = fec * n_x * _h(mx_tot / n_x)
        if kappa < 0.0:
            eps = eps_fixed
            rounds = 1
        else:
            eps = min(kappa * (n_x / inv if inv > 0.0 else 1.0), 0.5)
            rounds = iterations + 1
        ell = 0.0
        for r in range(rounds):
            if r > 0:
                bits = ell / inv if inv > 0.0 else 1.0
                eps = _clip(kappa * bits, kappa, 0.5)
            log_term = math.log(_SECRECY_TERMS / eps)
            dx = math.sqrt(n_x * inv * log_term / 2.0)
            dz = math.sqrt(n_z * inv * log_term / 2.0)
            dmz = math.sqrt(m_z * inv * log_term / 2.0)
            s0, s1 = _bounds(nx1, nx2, nx3, dx, mu1, mu2, mu3, w1, w2, w3, tau0, tau1)
            _, z1 = _bounds(nz1, nz2, nz3, dz, mu1, mu2, mu3, w1, w2, w3, tau0, tau1)
            vz1 = tau1 * (w2 * (mz2 + dmz) - w3 * (mz3 - dmz)) / (mu2 - mu3)
            ratio = vz1 / z1 if z1 > 0.0 else 0.5
            ratio = _clip(ratio, 1e-12, 0.5)
            gamma = 0.0
            if inv > 0.0:
                c = max(z1, 1e-150)
                d = max(s1, 1e-150)
                spread = inv * (c + d) / (c * d)
                bb = ratio * (1.0 - ratio)
                arg = spread / bb * _SECRECY_TERMS**2 / (eps * eps)
                if math.isnan(arg):
                    gamma = math.nan
                elif math.isinf(arg):
                    gamma = math.inf
                elif arg > 0.0:
                    g2 = spread * bb / _LN2 * math.log2(arg)
                    gamma = math.sqrt(g2) if g2 > 0.0 else 0.0
            phi = ratio + gamma
            if not (z1 > 0.0 and s1 > 0.0):
                phi = 0.5
            consts = 6.0 * math.log2(_SECRECY_TERMS / eps) + log_cor
            ell = s0 + s1 * (1.0 - _h(phi)) - leak - consts * inv
        if ell > 0.0:
            value = -ell / et
        elif math.isinf(block[i]):
            value = -ell
        else:
            value = -ell / (inv * block[i])
        out[i] = value if math.isfinite(value) else math.inf
    return out
