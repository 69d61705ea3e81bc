"""qkdnet.postprocessing — detection records to identical secret keys (see DESIGN.md).

The safe layer is :class:`Pipeline` (with :class:`PipelineConfig` and the results it
yields, :class:`BlockResult`); the stage modules (``sifting``, ``estimation``, ``cascade``,
``ldpc``, ``verification``, ``amplification``, ``authentication``) are the hazmat layer:
each does one step and trusts its caller to do the others. Pure computation, no I/O, no
clocks. Names are imported lazily, so that importing one stage does not import them all.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BlockResult",
    "Estimate",
    "Pipeline",
    "PipelineConfig",
    "PipelineSummary",
    "SiftedBlock",
    "estimate_parameters",
    "secret_key_length",
    "sift",
]

_WHERE = {
    "BlockResult": "pipeline",
    "Pipeline": "pipeline",
    "PipelineConfig": "pipeline",
    "PipelineSummary": "pipeline",
    "Estimate": "estimation",
    "estimate_parameters": "estimation",
    "secret_key_length": "estimation",
    "SiftedBlock": "sifting",
    "sift": "sifting",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        module = importlib.import_module(f"qkdnet.postprocessing.{_WHERE[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'qkdnet.postprocessing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
