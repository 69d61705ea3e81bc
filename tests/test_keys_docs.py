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
