"""The in-process CLI runner shared by the command tests (fixture ``run_cli`` in conftest)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

Cli = Callable[..., "subprocess.CompletedProcess[str]"]


def in_process_runner(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run the real entry point (qkdnet.cli.main) in this process: no interpreter start-up.

    A wide terminal (COLUMNS=400) keeps rich from wrapping the one-line errors.
    """
    from qkdnet.cli import main

    monkeypatch.setenv("COLUMNS", "400")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run
