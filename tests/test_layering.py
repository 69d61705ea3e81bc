"""The layering of DESIGN.md, asserted: lower layers never import higher ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "qkdnet"

# What each package may import from qkdnet (besides itself, errors and constants).
ALLOWED: dict[str, set[str]] = {
    "quantum": set(),
    "postprocessing": {"quantum"},
    "keys": {"quantum", "postprocessing"},
    "api": {"quantum", "postprocessing", "keys"},
    "control": {"quantum", "postprocessing", "keys"},
    "satellite": {"quantum", "postprocessing", "keys"},
    "cloud": {"quantum", "postprocessing", "keys", "api"},
    "repeater": {"quantum"},
    "simulation": {
        "quantum", "postprocessing", "keys", "api", "control",
        "satellite", "cloud", "repeater", "scenario",
    },
}
ALWAYS_ALLOWED = {"errors", "constants"}


def _qkdnet_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "qkdnet" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_lower_layers(package: str) -> None:
    allowed = ALLOWED[package] | ALWAYS_ALLOWED | {package}
    offenders = []
    for path in sorted((SRC / package).rglob("*.py")):
        bad = _qkdnet_imports(path) - allowed
        if bad:
            offenders.append(f"{path.relative_to(SRC)} imports {sorted(bad)}")
    assert not offenders, "layering broken:\n" + "\n".join(offenders)


def test_nothing_imports_the_cli() -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "_commands" not in path.parts
        and path.name not in {"cli.py", "__main__.py"}
        and {"cli", "_commands"} & _qkdnet_imports(path)
    ]
    assert not offenders, f"modules importing the CLI: {offenders}"


def test_layering_check_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from qkdnet.keys import KeyStore\nimport qkdnet.api.etsi014\n")
    assert _qkdnet_imports(bad) == {"keys", "api"}
