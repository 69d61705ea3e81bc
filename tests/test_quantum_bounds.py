"""PLOB and TGW bounds against their closed forms and published high-loss slopes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from qkdnet.errors import ParameterError
from qkdnet.quantum import plob_bound, tgw_bound

VECTORS = json.loads((Path(__file__).parent / "vectors" / "quantum_keyrate.json").read_text())


@pytest.mark.parametrize(("eta", "expected"), VECTORS["plob"]["cases"])
def test_plob_values(eta: float, expected: float) -> None:
    assert plob_bound(eta) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("eta", "expected"), VECTORS["tgw"]["cases"])
def test_tgw_values(eta: float, expected: float) -> None:
    assert tgw_bound(eta) == pytest.approx(expected, rel=1e-12)


def test_high_loss_slopes_are_1_44_eta_and_2_89_eta() -> None:
    # Pirandola et al. 2017: PLOB ≈ 1.44 η; TGW is twice that at high loss.
    eta = np.geomspace(1e-12, 1e-6, 7)
    assert np.allclose(plob_bound(eta) / eta, 1.0 / math.log(2.0), rtol=1e-5)
    assert np.allclose(tgw_bound(eta) / eta, 2.0 / math.log(2.0), rtol=1e-5)


def test_tgw_is_never_below_plob() -> None:
    eta = np.linspace(0.0, 0.999, 1000)
    assert np.all(tgw_bound(eta) >= plob_bound(eta) - 1e-15)


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan")])
def test_transmittance_outside_0_1_is_rejected(bad: float) -> None:
    with pytest.raises(ParameterError, match="transmittance"):
        plob_bound(bad)
