"""The CLI entry point: help lists commands, errors are one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qkdnet", *args], capture_output=True, text=True, timeout=120
    )


COMMANDS = (
    "keyrate", "link", "postprocess", "simulate", "sweep", "serve", "keys", "certs", "demo",
)


def test_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    listed = {line.strip("│ ").split(" ")[0] for line in result.stdout.splitlines()}
    missing = [name for name in COMMANDS if name not in listed]
    assert not missing, f"not in qkdnet --help: {missing}\n{result.stdout}"


def test_each_command_has_help() -> None:
    for name in COMMANDS:
        result = run_cli(name, "--help")
        assert result.returncode == 0, (name, result.stderr)
        assert "Usage" in result.stdout, name


def test_unknown_command_is_refused() -> None:
    result = run_cli("no-such-command")
    assert result.returncode == 2


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("qkdnet ")
