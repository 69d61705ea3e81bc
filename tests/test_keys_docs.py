"""The code in docs/key-management.md runs (docs that run, STYLE.md 11)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "key-management.md"


def test_key_management_doc_examples_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "the document lost its example"
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {})


def test_public_surface_is_complete_and_documented() -> None:
    import inspect

    import qkdnet.keys as keys

    for name in keys.__all__:
        obj = getattr(keys, name)  # every export resolves (lazy ones included)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__, f"{name} has no docstring"
            for attr, member in vars(obj).items() if inspect.isclass(obj) else ():
                if inspect.isfunction(member) and not attr.startswith("_"):
                    assert member.__doc__, f"{name}.{attr} has no docstring"
