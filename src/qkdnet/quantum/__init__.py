"""qkdnet.quantum — the quantum layer: link physics, QKD protocols, key-rate theory.

Pure computation (NumPy in, NumPy out; no I/O, no clocks). The stable entry points are

- :class:`LinkSpec` — the physical description of a link;
- :func:`secret_key_rate_per_pulse` — asymptotic secret key, bits per pulse, for one link;
- :func:`secret_key_rate_curve` — the same, vectorised over distance (km);
- :func:`secret_key_rate_bps` — bits per second (per pulse × ``link.repetition_rate_hz``);
- :func:`plob_bound`, :func:`tgw_bound` — repeaterless bounds, bits per channel use;
- :data:`PROTOCOLS` — the protocol names accepted above.

Protocol names: ``bb84-decoy`` (vacuum + weak decoy, Ma et al. 2005), ``bb84-one-decoy``,
``bb84-no-decoy`` (GLLP), ``bb84-efficient`` (biased bases, Lo–Chau–Ardehali 2005),
``bbm92`` (SPDC source in the middle, Ma–Fung–Lo 2007), ``cv-qkd`` (GG02, reverse
reconciliation, collective attacks) and ``twin-field`` (sending-or-not-sending, Wang–Yu–Hu
2018). See each module for the formulas and the papers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkdnet.errors import ParameterError
from qkdnet.quantum import bbm92, cvqkd, twinfield
from qkdnet.quantum._common import channel_transmittance, distances
from qkdnet.quantum.bb84 import (
    decoy_rate,
    efficient_rate,
    infinite_decoy_rate,
    no_decoy_rate,
    one_decoy_rate,
)
from qkdnet.quantum.bbm92 import bbm92_finite_rate, bbm92_rate
from qkdnet.quantum.bounds import plob_bound, tgw_bound
from qkdnet.quantum.cvqkd import cv_qkd_finite_rate, cv_qkd_rate
from qkdnet.quantum.link import LinkSpec
from qkdnet.quantum.twinfield import twin_field_finite_rate, twin_field_rate

RateFunction = Callable[..., NDArray[np.float64]]

_RATE_FUNCTIONS: dict[str, RateFunction] = {
    "bb84-decoy": decoy_rate,
    "bb84-one-decoy": one_decoy_rate,
    "bb84-no-decoy": no_decoy_rate,
    "bb84-efficient": efficient_rate,
    "bbm92": bbm92_rate,
    "cv-qkd": cv_qkd_rate,
    "twin-field": twin_field_rate,
}

#: Distances evaluated per call of a rate function (bounds the optimisers' memory).
_CHUNK = 2048

#: Protocol names accepted by :func:`secret_key_rate_per_pulse` and the ``keyrate`` command.
PROTOCOLS: tuple[str, ...] = tuple(_RATE_FUNCTIONS)

#: Protocols bounded by PLOB (no repeater, no untrusted relay in the middle).
REPEATERLESS_PROTOCOLS: tuple[str, ...] = tuple(p for p in PROTOCOLS if p != "twin-field")


def _rate_function(protocol: str) -> RateFunction:
    try:
        return _RATE_FUNCTIONS[protocol]
    except KeyError:
        raise ParameterError(
            "protocol", f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}"
        ) from None


def secret_key_rate_curve(
    protocol: str, link: LinkSpec, distance_km: ArrayLike, *, optimise: bool = False
) -> NDArray[np.float64]:
    """Asymptotic secret key rate, bits per pulse, at each distance (km) of ``link``.

    ``link.length_km`` is ignored: the array ``distance_km`` replaces it. With ``optimise``
    the source's free intensities (μ, pair number, ε, V_A as the protocol has them) are chosen
    per distance; otherwise the link's values are used as given. Returns 0 where no key.
    Raises ParameterError for an unknown protocol or a negative distance.
    """
    fn = _rate_function(protocol)
    d = distances(distance_km)
    # Optimisers broadcast a parameter grid against the distances (twin-field: 1600 × N);
    # chunks keep the temporaries to a few megabytes for any N.
    parts = [fn(link, d[i : i + _CHUNK], optimise=optimise) for i in range(0, d.size, _CHUNK)]
    return np.concatenate(parts) if parts else np.zeros(0)


def secret_key_rate_per_pulse(protocol: str, link: LinkSpec, *, optimise: bool = False) -> float:
    """Asymptotic secret key rate of ``link`` (at ``link.length_km``), bits per pulse.

    Multiply by ``link.repetition_rate_hz`` for bits per second. 0 where no key.
    """
    return float(secret_key_rate_curve(protocol, link, [link.length_km], optimise=optimise)[0])


def secret_key_rate_bps(protocol: str, link: LinkSpec, *, optimise: bool = False) -> float:
    """Asymptotic secret key rate of ``link`` in bits per second (per pulse × repetition rate)."""
    return secret_key_rate_per_pulse(protocol, link, optimise=optimise) * link.repetition_rate_hz


#: What ``block_size`` counts for each protocol with a finite-key rate.
FINITE_KEY_BLOCKS: dict[str, str] = {
    "bb84-decoy": "sifted key-basis detections n_X (Lim et al. 2014)",
    "bb84-one-decoy": "sifted key-basis detections n_X (Rusca et al. 2018)",
    "bbm92": f"{bbm92.FINITE_BLOCK_MEANING} (Tomamichel, Lim, Gisin, Renner 2012)",
    "cv-qkd": f"{cvqkd.FINITE_BLOCK_MEANING} (Leverrier, Grosshans, Grangier 2010)",
    "twin-field": f"{twinfield.FINITE_BLOCK_MEANING} (Jiang, Yu, Hu, Wang 2019)",
}

#: Protocols for which :func:`finite_key_rate_curve` has a finite-key (finite-size) rate.
FINITE_KEY_PROTOCOLS: tuple[str, ...] = tuple(FINITE_KEY_BLOCKS)


def finite_key_rate_curve(
    protocol: str,
    link: LinkSpec,
    distance_km: ArrayLike,
    block_size: float,
    *,
    optimise: bool = True,
) -> NDArray[np.float64]:
    """Finite-key secret key rate, bits per pulse, at each distance (km) of ``link``.

    ``block_size`` counts what :data:`FINITE_KEY_BLOCKS` says for the protocol. Decoy BB84:
    Lim et al., PRA 89, 022307 (2014), two decoys; one decoy after Rusca et al., APL 112,
    171104 (2018); security settings of Lim et al. (ε_cor = 1e-15, ε_sec = 1e-15 per key
    bit). BBM92: :func:`bbm92.bbm92_finite_rate` (Tomamichel et al., Nat. Commun. 3, 634,
    2012, with biased basis choice; bits per source pulse). CV-QKD:
    :func:`cvqkd.cv_qkd_finite_rate` (Leverrier et al., PRA 81, 062343, 2010), bits per
    symbol. Twin-field: :func:`twinfield.twin_field_finite_rate` (Jiang et al.,
    PR Applied 12, 024061, 2019), bits per pulse pair. Default ε's of each paper. With
    ``optimise`` the protocol's free settings are chosen per distance. Raises
    ParameterError for a protocol without a finite-key rate, a block below 1 or a negative
    distance. Returns 0 where no key.
    """
    _rate_function(protocol)
    if protocol not in FINITE_KEY_BLOCKS:
        raise ParameterError(
            "protocol",
            f"{protocol!r} has no finite-key rate here; finite-key rates exist for "
            f"{', '.join(FINITE_KEY_PROTOCOLS)}",
        )
    d = distances(distance_km)
    if protocol == "bbm92":
        return bbm92_finite_rate(link, d, block_size, optimise=optimise)
    if protocol == "cv-qkd":
        return cv_qkd_finite_rate(link, d, block_size, optimise=optimise)
    if protocol == "twin-field":
        return twin_field_finite_rate(link, d, block_size, optimise=optimise)
    # Imported here: the finite-key module compiles Numba kernels, which the asymptotic
    # rates never need.
    from qkdnet.quantum.finite_key import FiniteKeyParameters, finite_key_rate

    params = FiniteKeyParameters.from_link(link)
    if protocol == "bb84-one-decoy":
        params = params.with_(decoy_states=1)
    result = finite_key_rate(d, block_size, params, optimise=optimise)
    return np.asarray(result.rate_per_pulse, dtype=np.float64)


def plob_curve(link: LinkSpec, distance_km: ArrayLike) -> NDArray[np.float64]:
    """PLOB bound (bits per channel use) of the link's fibre at each distance (km)."""
    return plob_bound(channel_transmittance(link, distances(distance_km)))


__all__ = [
    "FINITE_KEY_BLOCKS",
    "FINITE_KEY_PROTOCOLS",
    "PROTOCOLS",
    "REPEATERLESS_PROTOCOLS",
    "LinkSpec",
    "finite_key_rate_curve",
    "infinite_decoy_rate",
    "plob_bound",
    "plob_curve",
    "secret_key_rate_bps",
    "secret_key_rate_curve",
    "secret_key_rate_per_pulse",
    "tgw_bound",
]
