"""qkdnet against a second implementation of the same models: TNO's qkd_key_rate package.

The peer's numbers were generated once with benchmarks/keyrate_peer.py and stored in
tests/vectors/tno_peer_keyrate.json (the peer needs its own virtual environment, so the
tests read the stored values instead of running it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qkdnet.quantum import LinkSpec, bb84, bbm92
from qkdnet.quantum.presets import preset_link

PEER = json.loads((Path(__file__).parent / "vectors" / "tno_peer_keyrate.json").read_text())


def test_fully_asymptotic_decoy_bb84_matches_tno() -> None:
    v = PEER["bb84_fully_asymptotic_gys"]
    gys = preset_link("gys", error_correction_efficiency=1.0)
    ours = bb84.infinite_decoy_rate(gys, v["distance_km"], optimise=True, sifting=1.0,
                                    count_vacuum=True)
    # Both maximise over μ on a 0.01 grid; the detector error models differ only in how a
    # double click is counted, which is a < 1e-4 effect here.
    assert np.allclose(ours, v["rate_per_pulse"], rtol=1e-4, atol=0.0)


def test_bbm92_matches_tno() -> None:
    v = PEER["bbm92_lim2014_detector"]
    link = LinkSpec(error_correction_efficiency=1.0, mean_pair_number=0.1,
                    misalignment_error=0.005)
    ours = bbm92.bbm92_rate(link, v["distance_km"], sifting=1.0)
    assert np.allclose(ours, v["rate_per_pulse"], rtol=1e-9, atol=0.0)
