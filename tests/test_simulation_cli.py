"""The simulate, demo and sweep commands end to end (subprocess, real files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def qkdnet(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qkdnet", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_simulate_writes_report_and_series(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = qkdnet("simulate", str(ROOT / "scenarios" / "example.yaml"), "--duration", "3h",
                    "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "report:" in result.stdout
    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 4
    # The scheduled cut of A-C at 2 h is in the events, with its reroute.
    events = (out / "events.csv").read_text(encoding="utf-8")
    assert "7200,failure,A-C" in events and ",reroute," in events


def test_demo_runs_the_tokyo_scenario(tmp_path: Path) -> None:
    result = qkdnet("demo", "--out", str(tmp_path / "demo"), "--duration", "7h", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    html = (tmp_path / "demo" / "report.html").read_text(encoding="utf-8")
    assert "tokyo-qkd-network" in html and "Otemachi-Hakusan-Hongo" in html


def test_bad_scenario_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nnodes:\n  - {id: A, trusted: maybe}\n", encoding="utf-8")
    result = qkdnet("simulate", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert f"{bad}:3: nodes[0].trusted" in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr
