"""The runner registry: names ("direct", "ray", "microbatch") to Runner classes.

>>> sorted(registered_runners())[:1]
['direct']
"""

from __future__ import annotations

import importlib
import os
from typing import Callable

from tidal.runners.runner import Runner

__all__ = ["register_runner", "registered_runners", "resolve_runner", "set_default_runner", "default_runner_name"]

_FACTORIES: dict[str, Callable[[], Runner]] = {}
_LAZY: dict[str, str] = {
    "direct": "tidal.runners.direct:DirectRunner",
    "ray": "tidal.runners.ray:RayRunner",
    "microbatch": "tidal.runners.microbatch:MicroBatchRunner",
}
_default: list[str | Runner | None] = [None]


def register_runner(name: str, factory: Callable[[], Runner]) -> None:
    """Make ``Pipeline(runner=name)`` build a runner with ``factory()``."""
    _FACTORIES[name] = factory


def registered_runners() -> list[str]:
    """The names of every known runner."""
    return sorted(set(_FACTORIES) | set(_LAZY))


def set_default_runner(runner: str | Runner | None) -> None:
    """The runner a ``Pipeline()`` without ``runner=`` uses (the CLI sets it)."""
    _default[0] = runner


def default_runner_name() -> str | Runner:
    return _default[0] or os.environ.get("TIDAL_RUNNER") or "direct"


def resolve_runner(spec: str | Runner | None) -> Runner:
    """A Runner instance from a name, an instance, or None (the default)."""
    if spec is None:
        spec = default_runner_name()
    if isinstance(spec, Runner):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"runner must be a name or a Runner instance, got {spec!r}")
    name = spec.lower()
    if name.endswith("runner"):
        name = name[: -len("runner")]
    if name in _FACTORIES:
        return _FACTORIES[name]()
    if name in _LAZY:
        module, _, attr = _LAZY[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        return cls()  # type: ignore[no-any-return]
    raise ValueError(f"unknown runner {spec!r}; registered runners: {', '.join(registered_runners())}")
