"""Fibre and free-space channels against closed forms and limiting cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qkdnet.errors import ParameterError
from qkdnet.quantum import channels


def test_fibre_loss_is_linear_in_km_and_adds_extra_db() -> None:
    d = np.array([0.0, 50.0, 100.0])
    assert np.allclose(channels.fibre_loss_db(d, 0.2, 3.0), [3.0, 13.0, 23.0])
    # 100 km at 0.2 dB/km = 20 dB = 1 %.
    assert channels.fibre_transmittance(100.0, 0.2) == pytest.approx(0.01, rel=1e-12)


def test_db_and_transmittance_round_trip() -> None:
    loss = np.linspace(0.0, 80.0, 17)
    assert np.allclose(channels.transmittance_to_db(channels.db_to_transmittance(loss)), loss)


def test_negative_distance_is_rejected_with_field_name() -> None:
    with pytest.raises(ParameterError, match="distance_km"):
        channels.fibre_loss_db(-1.0)


def test_beam_radius_grows_by_diffraction_far_from_the_waist() -> None:
    # Far field: w ≈ λ L / (π w0).
    w0, lam, L_km = 0.05, 800e-9, 1000.0
    w = channels.beam_radius_m(L_km, w0, lam)
    assert w == pytest.approx(lam * L_km * 1000.0 / (math.pi * w0), rel=1e-3)
    # A larger given divergence takes over.
    assert channels.beam_radius_m(L_km, w0, lam, divergence_rad=1e-5) == pytest.approx(
        math.hypot(w0, 1e-5 * L_km * 1000.0)
    )


def test_aperture_collects_1_minus_exp_of_2a2_over_w2() -> None:
    # An aperture radius equal to the beam radius collects 1 − e^−2 ≈ 86.5 %.
    assert channels.aperture_collection_efficiency(1.0, 1.0) == pytest.approx(1 - math.exp(-2))


def test_atmosphere_follows_air_mass_and_closes_below_horizon() -> None:
    elev = np.radians([90.0, 30.0, 0.0, -5.0])
    t = channels.atmospheric_transmittance(elev, 0.9)
    assert t[0] == pytest.approx(0.9)
    assert t[1] == pytest.approx(0.81)  # air mass 2 at 30°
    assert t[2] == 0.0 and t[3] == 0.0


def test_free_space_link_is_product_of_its_factors_and_decreases_with_distance() -> None:
    d = np.array([500.0, 1000.0, 1500.0])
    eta = channels.free_space_transmittance(
        d, wavelength_m=850e-9, transmitter_aperture_radius_m=0.15,
        receiver_aperture_radius_m=0.5, pointing_error_rad=1e-6,
        elevation_rad=np.radians(40.0), zenith_transmittance=0.9, extra_loss_db=3.0,
    )
    assert np.all(np.diff(eta) < 0.0)
    w = channels.beam_radius_m(d, 0.15, 850e-9)
    manual = (
        channels.aperture_collection_efficiency(w, 0.5)
        * channels.pointing_efficiency(d, w, 1e-6)
        * 0.9 ** (1 / math.sin(math.radians(40.0)))
        * 10 ** (-0.3)
    )
    assert np.allclose(eta, manual)
    # Far field, small aperture: η ≈ 2a²/w² (the diffraction-limited link budget).
    assert eta[-1] < 2 * 0.5**2 / w[-1] ** 2
