"""Runners: the Runner base class, the registry, and the engines (Beam's ``apache_beam.runners``).

``from tidal.runners import DirectRunner`` works as in Beam; the Ray and
micro-batch runners are imported on first use, so importing this package
does not import Ray.

>>> from tidal.runners import DirectRunner
>>> DirectRunner().name
'direct'
"""

from __future__ import annotations

import importlib
from typing import Any

from tidal.runners.registry import register_runner, registered_runners, resolve_runner, set_default_runner
from tidal.runners.runner import PipelineResult, PipelineRunner, PipelineState, Runner

__all__ = [
    "DirectRunner", "MicroBatchRunner", "PipelineResult", "PipelineRunner", "PipelineState", "RayRunner",
    "Runner", "register_runner", "registered_runners", "resolve_runner", "set_default_runner",
]

_ENGINES = {
    "DirectRunner": "tidal.runners.direct",
    "RayRunner": "tidal.runners.ray",
    "MicroBatchRunner": "tidal.runners.microbatch",
}


def __getattr__(name: str) -> Any:
    if name in _ENGINES:
        return getattr(importlib.import_module(_ENGINES[name]), name)
    raise AttributeError(f"module 'tidal.runners' has no attribute {name!r}")
