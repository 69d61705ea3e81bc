"""Repeaterless bounds on the secret-key capacity of a pure-loss channel.

Both take the channel transmittance η (0..1) and return bits per channel use (per pulse).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkdnet.errors import ParameterError


def _transmittance(transmittance: ArrayLike) -> NDArray[np.float64]:
    eta = np.asarray(transmittance, dtype=np.float64)
    if np.any(~np.isfinite(eta)) or np.any(eta < 0.0) or np.any(eta > 1.0):
        raise ParameterError("transmittance", "must be in [0, 1] (no NaN)")
    return eta


def plob_bound(transmittance: ArrayLike) -> NDArray[np.float64]:
    """PLOB bound −log2(1 − η), bits per channel use (η = channel transmittance, 0..1).

    Pirandola, Laurenza, Ottaviani, Banchi, Nat. Commun. 8, 15043 (2017), Eq. (19).
    Infinite at η = 1.
    """
    eta = _transmittance(transmittance)
    with np.errstate(divide="ignore"):
        # log1p keeps full precision at high loss (η ≪ 1), where the bound is ≈ η/ln 2.
        return np.asarray(-np.log1p(-eta) / np.log(2.0) + 0.0, dtype=np.float64)


def tgw_bound(transmittance: ArrayLike) -> NDArray[np.float64]:
    """TGW bound log2((1 + η)/(1 − η)), bits per channel use (η = channel transmittance).

    Takeoka, Guha, Wilde, Nat. Commun. 5, 5235 (2014), Eq. (2). Looser than PLOB by at most a
    factor 2 at low η (≈ 2η/ln 2 against ≈ η/ln 2).
    """
    eta = _transmittance(transmittance)
    with np.errstate(divide="ignore"):
        return np.asarray((np.log1p(eta) - np.log1p(-eta)) / np.log(2.0), dtype=np.float64)
