"""Named parameter sets (presets) for the standard test cases of key-rate theory.

Each preset is a mapping of :class:`~qkdnet.quantum.link.LinkSpec` field names to values;
:func:`preset_link` builds the link. Sources are given per preset.
"""

from __future__ import annotations

from dataclasses import fields
from types import MappingProxyType
from typing import Any

from qkdnet.errors import ParameterError
from qkdnet.quantum.link import LinkSpec

#: GYS: Gobby, Yuan, Shields, APL 84, 3762 (2004), as used by Lo, Ma, Chen, PRL 94, 230504
#: (2005) and Ma, Qi, Zhao, Lo, PRA 72, 012326 (2005), Table I: 1550 nm, α = 0.21 dB/km,
#: η_Bob = 4.5 %, Y0 = 1.7e-6 (= 2 × 8.5e-7 for two detectors), e_detector = 3.3 %,
#: f = 1.22. Signal μ = 0.48 (the optimum found by Ma et al.), weak decoy ν = 0.05, vacuum
#: decoy 0. The repetition rate (2 MHz) is our assumption; it only scales bits per second.
GYS: MappingProxyType[str, Any] = MappingProxyType({
    "loss_db_per_km": 0.21,
    "detector_efficiency": 0.045,
    "dark_count_probability": 8.5e-7,
    "afterpulse_probability": 0.0,
    "misalignment_error": 0.033,
    "error_correction_efficiency": 1.22,
    "repetition_rate_hz": 2e6,
    "intensities": (0.48, 0.05, 0.0),
    "intensity_probabilities": (0.8, 0.1, 0.1),
})

#: Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014), Sec. IV: 0.2 dB/km, η_Bob = 10 %,
#: p_dc = 6e-7, p_ap = 4 %, e_mis = 0.5 %, f_EC = 1.16, μ3 = 2e-4, 1 GHz; starting
#: intensities and probabilities (optimised by the finite-key code).
LIM2014: MappingProxyType[str, Any] = MappingProxyType({
    "loss_db_per_km": 0.2,
    "detector_efficiency": 0.10,
    "dark_count_probability": 6e-7,
    "afterpulse_probability": 0.04,
    "misalignment_error": 0.005,
    "error_correction_efficiency": 1.16,
    "repetition_rate_hz": 1e9,
    "intensities": (0.5, 0.15, 2e-4),
    "intensity_probabilities": (0.65, 0.25, 0.10),
    "basis_probability_z": 0.85,
})

#: A twin-field system with superconducting-nanowire detectors, representative of the SNS
#: simulations and experiments (not one paper's exact set): η_d = 30 %, p_d = 1e-8,
#: e_d = 3 %, f = 1.1, 0.2 dB/km; μ and ε are optimised by ``keyrate`` by default.
TWINFIELD: MappingProxyType[str, Any] = MappingProxyType({
    "loss_db_per_km": 0.2,
    "detector_efficiency": 0.30,
    "dark_count_probability": 1e-8,
    "afterpulse_probability": 0.0,
    "misalignment_error": 0.03,
    "error_correction_efficiency": 1.1,
    "repetition_rate_hz": 1e9,
    "intensities": (0.4, 0.1, 0.0),
    "intensity_probabilities": (0.8, 0.1, 0.1),
    "sending_probability": 0.05,
})

PRESETS: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType({
    "gys": GYS,
    "lim2014": LIM2014,
    "twinfield": TWINFIELD,
})

LINK_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(LinkSpec))


def preset_link(name: str, **overrides: Any) -> LinkSpec:
    """The :class:`LinkSpec` of preset ``name`` (``gys``, ``lim2014``, ``twinfield``),
    with ``overrides`` applied. Raises ParameterError for an unknown preset or field."""
    try:
        values = dict(PRESETS[name])
    except KeyError:
        raise ParameterError(
            "preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None
    for key in overrides:
        if key not in LINK_FIELDS:
            known = ", ".join(LINK_FIELDS)
            raise ParameterError(key, f"unknown link field; known fields are {known}")
    values.update(overrides)
    return LinkSpec(**values)
