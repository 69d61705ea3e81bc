"""Physical constants and unit conversions, each with its source.

Convert units only through these names, never with inline factors.
"""

from __future__ import annotations

import math

#: Speed of light in vacuum, m/s (exact, SI 2019).
SPEED_OF_LIGHT_M_PER_S: float = 299_792_458.0
#: Group index of standard single-mode fibre (ITU-T G.652) at 1550 nm, about 1.468.
FIBRE_GROUP_INDEX: float = 1.468
#: Planck constant, J·s (exact, SI 2019).
PLANCK_J_S: float = 6.626_070_15e-34
#: Mean Earth radius, km (IUGG).
EARTH_RADIUS_KM: float = 6371.0
#: Earth's gravitational parameter GM, km^3/s^2 (WGS-84).
EARTH_MU_KM3_PER_S2: float = 398_600.4418

METRES_PER_KM: float = 1000.0
NANOMETRES_PER_METRE: float = 1e9
SECONDS_PER_HOUR: float = 3600.0
SECONDS_PER_DAY: float = 86_400.0
PICOSECONDS_PER_SECOND: int = 1_000_000_000_000
BITS_PER_BYTE: int = 8
MEGA: float = 1e6
LN2: float = math.log(2.0)


def db_to_transmittance(loss_db: float) -> float:
    """Transmittance (0..1) of a loss given in dB: 10^(-loss_db/10)."""
    return float(10.0 ** (-loss_db / 10.0))


def transmittance_to_db(transmittance: float) -> float:
    """Loss in dB of a transmittance (0..1]: -10 log10(transmittance)."""
    return float(-10.0 * math.log10(transmittance))
