"""`qkdnet keyrate` end to end: table, CSV, PNG, presets, YAML parameters and bad input."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _cli import Cli
from qkdnet.errors import ParameterError
from qkdnet.quantum import bb84, bbm92, finite_key_rate_curve, plob_curve, secret_key_rate_curve
from qkdnet.quantum.finite_key import FiniteKeyParameters, finite_key_rate
from qkdnet.quantum.presets import preset_link


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command in a child process (one end-to-end test; the CLI starts slowly)."""
    # A wide terminal so that rich does not wrap the one-line error.
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "qkdnet", "keyrate", *args],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def invoke(run_cli: Cli) -> Cli:
    """Run ``qkdnet keyrate ARGS`` through the real entry point in this process."""
    return lambda *args: run_cli("keyrate", *args)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_and_plot_for_gys_decoy(tmp_path: Path) -> None:
    out_csv, out_png = tmp_path / "r.csv", tmp_path / "r.png"
    res = run_cli("--protocol", "bb84-decoy", "--distance", "0:150:1", "--preset", "gys",
                  "--csv", str(out_csv), "--plot", str(out_png))
    assert res.returncode == 0, res.stderr
    assert "bb84-decoy" in res.stdout
    rows = _rows(out_csv)
    assert len(rows) == 151
    assert {"distance_km", "rate_per_pulse", "rate_bps", "plob_per_pulse"} <= set(rows[0])
    d = np.array([float(r["distance_km"]) for r in rows])
    rate = np.array([float(r["rate_per_pulse"]) for r in rows])
    link = preset_link("gys")
    assert np.allclose(rate, secret_key_rate_curve("bb84-decoy", link, d, optimise=True),
                       rtol=1e-6)
    bps = np.array([float(r["rate_bps"]) for r in rows])
    assert np.allclose(bps, rate * link.repetition_rate_hz, rtol=1e-6)
    plob = np.array([float(r["plob_per_pulse"]) for r in rows])
    assert np.allclose(plob[1:], plob_curve(link, d[1:]), rtol=1e-6)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_several_protocols_on_one_plot(tmp_path: Path, invoke: Cli) -> None:
    out_csv, out_png = tmp_path / "all.csv", tmp_path / "all.png"
    args = []
    for p in ("bb84-decoy", "bb84-one-decoy", "bb84-no-decoy", "bb84-efficient", "bbm92",
              "cv-qkd", "twin-field"):
        args += ["-p", p]
    res = invoke(*args, "--distance", "0:300:10", "--csv", str(out_csv), "--plot", str(out_png))
    assert res.returncode == 0, res.stderr
    assert len({r["protocol"] for r in _rows(out_csv)}) == 7
    assert out_png.stat().st_size > 10_000


def test_yaml_parameters_override_the_preset(tmp_path: Path, invoke: Cli) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("detector_efficiency: 0.2\nloss_db_per_km: 0.18\n")
    out = tmp_path / "r.csv"
    res = invoke("--preset", "gys", "--params", str(params), "--distance", "100",
                  "--csv", str(out), "--no-optimise")
    assert res.returncode == 0, res.stderr
    link = preset_link("gys", detector_efficiency=0.2, loss_db_per_km=0.18)
    expected = secret_key_rate_curve("bb84-decoy", link, [100.0])[0]
    assert float(_rows(out)[0]["rate_per_pulse"]) == pytest.approx(expected, rel=1e-6)


def test_finite_key_block_uses_lim2014_model(tmp_path: Path, invoke: Cli) -> None:
    out = tmp_path / "fk.csv"
    res = invoke("-p", "bb84-decoy", "--block", "1e8", "--preset", "lim2014",
                  "--distance", "0:100:50", "--csv", str(out))
    assert res.returncode == 0, res.stderr
    rows = _rows(out)
    finite = np.array([float(r["rate_per_pulse"]) for r in rows])
    # Lim et al. distil key from X-basis coincidences only (fraction q_x²); the asymptotic
    # efficient BB84 with the same basis bias keeps both bases, so it bounds the finite rate.
    link = preset_link("lim2014")
    asymptotic = bb84.efficient_rate(link, [0.0, 50.0, 100.0], optimise=True)
    assert rows[0]["block_size"] == "100000000"
    assert np.all(finite > 0.0)
    assert np.all(finite < asymptotic)
    assert np.all(finite > 0.2 * asymptotic)


def test_block_gives_one_decoy_its_own_finite_key_curve(tmp_path: Path, invoke: Cli) -> None:
    out = tmp_path / "fk.csv"
    res = invoke("-p", "bb84-one-decoy", "-p", "bb84-decoy", "-p", "bb84-no-decoy",
                 "--block", "1e6", "--preset", "lim2014", "--distance", "20",
                 "--csv", str(out))
    assert res.returncode == 0, res.stderr
    rates = {r["protocol"]: (float(r["rate_per_pulse"]), r["block_size"]) for r in _rows(out)}
    link = preset_link("lim2014")
    params = FiniteKeyParameters.from_link(link)
    one = finite_key_rate([20.0], 1e6, params.with_(decoy_states=1)).rate_per_pulse[0]
    two = finite_key_rate([20.0], 1e6, params).rate_per_pulse[0]
    assert rates["bb84-one-decoy"] == (pytest.approx(one, rel=1e-6), "1000000")
    assert rates["bb84-decoy"] == (pytest.approx(two, rel=1e-6), "1000000")
    # Two different theories: with Lim's 4 % after-pulses one decoy's loose vacuum bound
    # costs a few per cent (docs/validation-finite-key.md).
    assert 0.8 * two < one < two
    # No finite-key theory for GLLP without decoys here: asymptotic, and said so.
    assert rates["bb84-no-decoy"][1] == ""
    assert "bb84-no-decoy has no finite-key rate" in res.stdout


@pytest.mark.parametrize("protocol", ["bbm92", "cv-qkd", "twin-field"])
def test_block_gives_bbm92_cv_and_twin_field_their_finite_size_curves(
    protocol: str, tmp_path: Path, invoke: Cli
) -> None:
    out = tmp_path / "fs.csv"
    res = invoke("-p", protocol, "--block", "1e10", "--preset", "twinfield",
                 "--distance", "0:200:100", "--csv", str(out))
    assert res.returncode == 0, res.stderr
    rows = _rows(out)
    finite = np.array([float(r["rate_per_pulse"]) for r in rows])
    link = preset_link("twinfield")
    asymptotic = (
        # Finite-key BBM92 biases the bases (Tomamichel et al. 2012); the asymptotic curve is
        # the original protocol, half the pairs sifted, so compare with every pair kept.
        bbm92.bbm92_rate(link, [0.0, 100.0, 200.0], optimise=True, sifting=1.0)
        if protocol == "bbm92"
        else secret_key_rate_curve(protocol, link, [0.0, 100.0, 200.0], optimise=True)
    )
    direct = finite_key_rate_curve(protocol, link, [0.0, 100.0, 200.0], 1e10)
    assert finite == pytest.approx(direct, rel=1e-6)
    assert rows[0]["block_size"] == "10000000000"
    assert finite[0] > 0.0
    assert np.all(finite <= asymptotic * (1 + 1e-9))


def test_finite_key_rate_curve_refuses_protocols_without_one() -> None:
    with pytest.raises(ParameterError, match="protocol"):
        finite_key_rate_curve("bb84-no-decoy", preset_link("gys"), [10.0], 1e6)


@pytest.mark.parametrize(("args", "field"), [
    (["--distance=-3:10:1"], "distance"),
    (["--protocol", "bb99"], "protocol"),
    (["--preset", "nope"], "preset"),
    (["--block", "1e6", "-p", "bb84-no-decoy"], "block"),
    (["--block", "0.5"], "block"),
    (["--distance", "10:0:1"], "distance"),
])
def test_bad_input_is_one_line_exit_2(args: list[str], field: str, invoke: Cli) -> None:
    res = invoke(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error:") and field in lines[0]


@pytest.mark.parametrize(("text", "needle"), [
    ("detector_efficiency: 1.5\n", "detector_efficiency' must be a probability in [0, 1]"),
    ("detector_efficency: 0.1\n", "did you mean 'detector_efficiency'"),
    ("misalignment_error: 0.7\n", "misalignment_error' must be in [0, 0.5]"),
    ("loss_db_per_km: fast\n", "loss_db_per_km"),
])
def test_bad_yaml_is_one_line_exit_2(
    tmp_path: Path, text: str, needle: str, invoke: Cli
) -> None:
    params = tmp_path / "bad.yaml"
    params.write_text(text)
    res = invoke("--params", str(params))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert needle in lines[0]
