"""Optical channels: fibre and free space. Every function is vectorised over distance.

Transmittances are 0..1, losses in dB, distances in km, angles in radians, lengths of
optics in metres (names say so).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkdnet.constants import METRES_PER_KM
from qkdnet.errors import ParameterError


def _non_negative(name: str, value: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(value, dtype=np.float64)
    if np.any(~np.isfinite(arr)) or np.any(arr < 0.0):
        raise ParameterError(name, "must be finite and >= 0")
    return arr


def db_to_transmittance(loss_db: ArrayLike) -> NDArray[np.float64]:
    """Transmittance 10^(−loss_db/10) of a loss in dB (vectorised)."""
    return np.asarray(10.0 ** (-np.asarray(loss_db, dtype=np.float64) / 10.0))


def transmittance_to_db(transmittance: ArrayLike) -> NDArray[np.float64]:
    """Loss in dB, −10 log10(η), of a transmittance η in (0, 1] (vectorised)."""
    with np.errstate(divide="ignore"):
        return np.asarray(-10.0 * np.log10(np.asarray(transmittance, dtype=np.float64)))


def fibre_loss_db(
    distance_km: ArrayLike, loss_db_per_km: float = 0.2, extra_loss_db: float = 0.0
) -> NDArray[np.float64]:
    """Loss of a fibre span, dB: α·L + extra (connectors, splices, insertion losses).

    Standard single-mode fibre (ITU-T G.652) at 1550 nm: α ≈ 0.2 dB/km; ultra-low-loss fibre
    ≈ 0.16 dB/km. Raises ParameterError for a negative distance or loss.
    """
    distance = _non_negative("distance_km", distance_km)
    _non_negative("loss_db_per_km", loss_db_per_km)
    _non_negative("extra_loss_db", extra_loss_db)
    return np.asarray(loss_db_per_km * distance + extra_loss_db)


def fibre_transmittance(
    distance_km: ArrayLike, loss_db_per_km: float = 0.2, extra_loss_db: float = 0.0
) -> NDArray[np.float64]:
    """Transmittance of a fibre span, 10^(−(α·L + extra)/10), 0..1."""
    return db_to_transmittance(fibre_loss_db(distance_km, loss_db_per_km, extra_loss_db))


def beam_radius_m(
    distance_km: ArrayLike, waist_radius_m: float, wavelength_m: float,
    divergence_rad: float | None = None,
) -> NDArray[np.float64]:
    """1/e² radius of a Gaussian beam after ``distance_km``, metres.

    w(L) = w0·sqrt(1 + (L/z_R)²), z_R = π w0²/λ (diffraction from the transmitter aperture).
    If ``divergence_rad`` (far-field half angle, e.g. set by the telescope or by turbulence)
    exceeds the diffraction limit λ/(π w0), the far field grows at that angle instead:
    w(L) = sqrt(w0² + (θ L)²). Siegman, *Lasers* (1986), ch. 17.
    """
    distance_m = _non_negative("distance_km", distance_km) * METRES_PER_KM
    if waist_radius_m <= 0.0 or wavelength_m <= 0.0:
        raise ParameterError("waist_radius_m", "waist radius and wavelength must be > 0 m")
    theta = wavelength_m / (np.pi * waist_radius_m)
    if divergence_rad is not None:
        if divergence_rad < 0.0:
            raise ParameterError("divergence_rad", f"must be >= 0 rad, got {divergence_rad!r}")
        theta = max(theta, divergence_rad)
    return np.asarray(np.sqrt(waist_radius_m**2 + (theta * distance_m) ** 2))


def aperture_collection_efficiency(
    beam_radius: ArrayLike, receiver_aperture_radius_m: float
) -> NDArray[np.float64]:
    """Fraction of a centred Gaussian beam (1/e² radius, m) caught by a circular aperture.

    η = 1 − exp(−2 a²/w²) (integral of the Gaussian intensity over the disc of radius a).
    """
    w = np.asarray(beam_radius, dtype=np.float64)
    if receiver_aperture_radius_m < 0.0:
        raise ParameterError("receiver_aperture_radius_m", "must be >= 0 m")
    return np.asarray(-np.expm1(-2.0 * receiver_aperture_radius_m**2 / w**2))


def pointing_efficiency(
    distance_km: ArrayLike, beam_radius: ArrayLike, pointing_error_rad: float
) -> NDArray[np.float64]:
    """Mean loss factor from random pointing jitter (rms ``pointing_error_rad`` per axis).

    For a Gaussian beam of radius w much larger than the receiver, a radial offset r lowers the
    collected power by exp(−2r²/w²); averaging over a Rayleigh-distributed offset with
    σ = θ_p·L gives ⟨η⟩ = w²/(w² + 4σ²). Farid & Hranilovic, J. Lightwave Technol. 25, 1702
    (2007); Bourgoin et al., New J. Phys. 15, 023006 (2013).
    """
    if pointing_error_rad < 0.0:
        raise ParameterError("pointing_error_rad", "must be >= 0 rad")
    sigma_m = _non_negative("distance_km", distance_km) * METRES_PER_KM * pointing_error_rad
    w = np.asarray(beam_radius, dtype=np.float64)
    return np.asarray(w**2 / (w**2 + 4.0 * sigma_m**2))


def atmospheric_transmittance(
    elevation_rad: ArrayLike, zenith_transmittance: float = 0.9
) -> NDArray[np.float64]:
    """Atmospheric transmittance at elevation ε for a clear sky, 0..1.

    Plane-parallel atmosphere: T(ε) = T_zenith^(1/sin ε) (air mass 1/sin ε). T_zenith ≈ 0.9 at
    800 nm and ≈ 0.95 at 1550 nm for clear weather (Bourgoin et al., NJP 15, 023006, 2013,
    Sec. 4). Returns 0 at or below the horizon.
    """
    elev = np.asarray(elevation_rad, dtype=np.float64)
    if not (0.0 < zenith_transmittance <= 1.0):
        raise ParameterError("zenith_transmittance", "must be in (0, 1]")
    sin_e = np.sin(elev)
    with np.errstate(divide="ignore", invalid="ignore"):
        air_mass = 1.0 / np.where(sin_e > 0.0, sin_e, 1.0)
        t = np.where(sin_e > 0.0, zenith_transmittance**air_mass, 0.0)
    return np.asarray(t)


def free_space_transmittance(
    distance_km: ArrayLike,
    *,
    wavelength_m: float = 800e-9,
    transmitter_aperture_radius_m: float = 0.05,
    divergence_rad: float | None = None,
    receiver_aperture_radius_m: float = 0.5,
    pointing_error_rad: float = 0.0,
    elevation_rad: ArrayLike = np.pi / 2,
    zenith_transmittance: float = 1.0,
    extra_loss_db: float = 0.0,
) -> NDArray[np.float64]:
    """Transmittance of a free-space link, 0..1: diffraction × pointing × atmosphere × extra.

    The transmit beam leaves with 1/e² radius equal to the transmitter aperture radius
    (w0), spreads by diffraction (or the given divergence), is clipped by the receiver aperture,
    jitters with the pointing error, and crosses the atmosphere at the given elevation
    (``zenith_transmittance`` = 1 means vacuum, e.g. inter-satellite). Bourgoin et al., NJP 15,
    023006 (2013), Eqs. (1)–(6).
    """
    w = beam_radius_m(distance_km, transmitter_aperture_radius_m, wavelength_m, divergence_rad)
    eta = aperture_collection_efficiency(w, receiver_aperture_radius_m)
    eta = eta * pointing_efficiency(distance_km, w, pointing_error_rad)
    eta = eta * atmospheric_transmittance(elevation_rad, zenith_transmittance)
    _non_negative("extra_loss_db", extra_loss_db)
    return np.asarray(eta * db_to_transmittance(extra_loss_db))
