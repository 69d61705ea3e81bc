"""`qkdnet link` end to end, through the real entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from _cli import Cli


def test_link_writes_identical_keys_and_summary(run_cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_cli("link", "--distance", "50", "--pulses", "1e9", "--seed", "1",
                  "--out", str(out), "--save-records")
    assert res.returncode == 0, res.stderr
    for word in ("pulses", "detections", "sifted bits", "QBER", "single-photon", "leaked",
                 "efficiency", "secret bits", "net rate", "time: reconcile"):
        assert word in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    for key in ("qber", "sifted_bits", "leaked_bits", "efficiency", "secret_bits",
                "net_secret_bits", "keys_match", "aborted", "seconds"):
        assert key in summary
    assert summary["keys_match"] is True and summary["aborted"] is False
    assert 0 < summary["net_secret_bits"] < summary["secret_bits"] < summary["sifted_bits"]
    assert 0.003 < summary["qber"] < 0.008  # misalignment 0.5 % plus dark counts
    alice = (out / "alice.key").read_bytes()
    bob = (out / "bob.key").read_bytes()
    assert alice == bob and len(alice) == -(-summary["net_secret_bits"] // 8)
    # The saved records post-process to a key again (a different seed, same physics).
    rec_dir = out / "records" / "0000"
    res2 = run_cli("postprocess", str(rec_dir / "alice.npz"), str(rec_dir / "bob.npz"),
                   "--out", str(tmp_path / "pp"), "--seed", "2")
    assert res2.returncode == 0, res2.stderr
    pp = json.loads((tmp_path / "pp" / "summary.json").read_text())
    assert pp["sifted_bits"] == summary["sifted_bits"]
    assert pp["keys_match"] is True and pp["secret_bits"] > 0


def test_link_with_intercept_resend_emits_no_key(run_cli: Cli, tmp_path: Path) -> None:
    res = run_cli("link", "--distance", "50", "--pulses", "1e9", "--seed", "3",
                  "--eve", "intercept-resend:0.2", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["aborted"] is True and summary["secret_bits"] == 0
    assert summary["keys_match"] is False  # no key emitted, nothing to match
    assert summary["qber"] > 0.11
    assert (tmp_path / "alice.key").read_bytes() == b""


def test_link_with_mitm_fails_authentication(run_cli: Cli, tmp_path: Path) -> None:
    res = run_cli("link", "--distance", "20", "--pulses", "1e8", "--seed", "4",
                  "--eve", "mitm", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["aborted"] is True and summary["secret_bits"] == 0
    assert any("AuthenticationError" in r for r in summary["abort_reasons"])


def test_link_bad_input_is_one_line_error(run_cli: Cli) -> None:
    res = run_cli("link", "--distance", "-3")
    assert res.returncode == 2
    assert "distance" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("link", "--pulses", "lots")
    assert res.returncode == 2 and "pulses" in res.stderr
    res = run_cli("link", "--eve", "cloning")
    assert res.returncode == 2 and "eve" in res.stderr
    res = run_cli("link", "--qber-threshold", "0.7")
    assert res.returncode == 2 and "qber_threshold" in res.stderr


def test_keys_file_is_packed_bits() -> None:
    # alice.key holds the key bits packed MSB first (np.packbits); documented in docs.
    bits = np.array([1, 0, 1, 1, 0, 0, 0, 0, 1], dtype=np.uint8)
    assert np.packbits(bits).tobytes() == bytes([0b10110000, 0b10000000])
