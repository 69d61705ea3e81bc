"""Regenerate the figures and numbers of docs/validation.md.

Run: ``.venv/bin/python docs/validation_plots.py`` (writes docs/img/keyrate_*.png and prints
the table of our figures).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from qkdnet.quantum import (  # noqa: E402
    PROTOCOLS,
    bb84,
    plob_bound,
    plob_curve,
    secret_key_rate_curve,
    tgw_bound,
)
from qkdnet.quantum._common import channel_transmittance  # noqa: E402
from qkdnet.quantum.cvqkd import secret_fraction  # noqa: E402
from qkdnet.quantum.presets import preset_link  # noqa: E402

IMG = Path(__file__).resolve().parent / "img"


def _reach(d: np.ndarray, r: np.ndarray) -> float:
    return float(d[r > 0].max()) if np.any(r > 0) else 0.0


def gys_figure() -> dict[str, float]:
    gys = preset_link("gys")
    d = np.arange(0.0, 160.0, 0.1)
    curves = {
        "infinite decoys (exact Y1, e1)": bb84.infinite_decoy_rate(gys, d, optimise=True),
        "vacuum + weak decoy (ν = 0.05)": bb84.decoy_rate(gys, d, optimise=True),
        "one decoy (μ, ν optimised)": bb84.one_decoy_rate(gys, d, optimise=True),
        "no decoy (GLLP)": bb84.no_decoy_rate(gys, d, optimise=True),
    }
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for label, r in curves.items():
        ax.semilogy(d, np.where(r > 0, r, np.nan), label=f"{label}: {_reach(d, r):.1f} km")
    ax.semilogy(d[1:], plob_curve(gys, d[1:]), "k--", label="PLOB (fibre only)")
    ax.axvline(142.0, color="grey", lw=0.8, ls=":")
    ax.axvline(30.0, color="grey", lw=0.8, ls=":")
    ax.set_ylim(1e-9, 1)
    ax.set_xlabel("distance (km)")
    ax.set_ylabel("secret key rate (bits per pulse)")
    ax.set_title("BB84 with the GYS parameters (Lo, Ma, Chen 2005; Ma et al. 2005)")
    ax.legend(fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(IMG / "keyrate_gys.png", dpi=110)
    plt.close(fig)
    return {label: _reach(d, r) for label, r in curves.items()}


def twin_field_figure() -> float:
    tf = preset_link("twinfield")
    d = np.arange(0.0, 500.0, 1.0)
    r = secret_key_rate_curve("twin-field", tf, d, optimise=True)
    decoy = secret_key_rate_curve("bb84-decoy", tf, d, optimise=True)
    eta = channel_transmittance(tf, d)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    ax.semilogy(d, np.where(r > 0, r, np.nan), label="twin-field (SNS, Wang–Yu–Hu 2018)")
    ax.semilogy(d, np.where(decoy > 0, decoy, np.nan), label="decoy BB84 (same detectors)")
    ax.semilogy(d[1:], plob_bound(eta[1:]), "k--", label="PLOB")
    ax.semilogy(d[1:], tgw_bound(eta[1:]), "k:", label="TGW")
    crossing = float(d[r > plob_curve(tf, d)].min())
    ax.axvline(crossing, color="grey", lw=0.8)
    ax.set_ylim(1e-12, 10)
    ax.set_xlabel("distance Alice–Bob (km)")
    ax.set_ylabel("bits per pulse (channel use)")
    ax.set_title(f"Twin-field QKD crosses PLOB at {crossing:.0f} km")
    ax.legend(fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(IMG / "keyrate_twinfield.png", dpi=110)
    plt.close(fig)
    return crossing


def cv_figure() -> list[tuple[float, float, float]]:
    t = np.geomspace(1e-4, 0.99, 200)
    ideal = secret_fraction(t, 1e5, 0.0, 1.0, 0.0, 1.0)
    realistic = secret_fraction(t, 4.0, 0.01, 0.95, 0.01, 0.6)
    loss_db = -10 * np.log10(t)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    ax.semilogy(loss_db, ideal, label="GG02 RR, pure loss, V_A → ∞ (ours)")
    ax.semilogy(loss_db, 0.5 * np.log2(1 / (1 - t)), "C0:", lw=3, alpha=0.5,
                label="½ log2(1/(1−T)) (closed form)")
    ax.semilogy(loss_db, np.where(realistic > 0, realistic, np.nan),
                label="V_A = 4, ξ = 0.01, β = 0.95, v_el = 0.01, η = 0.6")
    ax.semilogy(loss_db, plob_bound(t), "k--", label="PLOB")
    ax.set_xlabel("channel loss (dB)")
    ax.set_ylabel("bits per symbol")
    ax.set_title("CV-QKD, Gaussian modulation, homodyne, reverse reconciliation")
    ax.legend(fontsize="small")
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(IMG / "keyrate_cvqkd.png", dpi=110)
    plt.close(fig)
    rows = []
    for tt in (0.5, 0.1, 0.01):
        rows.append((tt, float(secret_fraction(tt, 1e5, 0.0, 1.0, 0.0, 1.0)),
                     float(0.5 * np.log2(1 / (1 - tt)))))
    return rows


def all_protocols_figure() -> dict[str, float]:
    # Z chosen with probability 0.9 so that efficient BB84 differs from symmetric BB84.
    link = preset_link("twinfield", basis_probability_z=0.9)
    d = np.arange(0.0, 450.0, 1.0)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), constrained_layout=True)
    reach = {}
    for p in PROTOCOLS:
        r = secret_key_rate_curve(p, link, d, optimise=True)
        reach[p] = _reach(d, r)
        ax.semilogy(d, np.where(r > 0, r, np.nan), label=p)
    ax.semilogy(d[1:], plob_curve(link, d[1:]), "k--", label="PLOB")
    ax.set_ylim(1e-12, 10)
    ax.set_xlabel("distance (km)")
    ax.set_ylabel("bits per pulse")
    ax.set_title("All protocols, preset 'twinfield' with p_Z = 0.9, optimised sources")
    ax.legend(fontsize="small", ncol=2)
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(IMG / "keyrate_all.png", dpi=110)
    plt.close(fig)
    return reach


if __name__ == "__main__":
    IMG.mkdir(exist_ok=True)
    print("GYS reach (km):", gys_figure())
    print("TF crossing (km):", twin_field_figure())
    print("CV pure-loss (T, ours, closed form):", cv_figure())
    print("all protocols reach (km):", all_protocols_figure())
    gys = preset_link("gys")
    print("GLLP no-decoy with mu fixed at 0.01:",
          _reach(np.arange(0, 60, 0.05),
                 bb84.no_decoy_rate(replace(gys, intensities=(0.01, 0.005, 0.0)),
                                    np.arange(0, 60, 0.05))))
