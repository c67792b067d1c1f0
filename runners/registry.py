"""The runner registry: names ("direct", "ray", "microbatch") to Runner classes.

>>> sorted(registered_runners())[:1]
['direct']
"""

from __future__ import annotations

import importlib
import os
from typing import Callable

from tidal.runners.runner import Runner

__all__ = [
    "ALIASES", "canonical_runner_name", "default_runner_name", "register_runner", "registered_runners", "runner_list",
    "resolve_runner", "set_default_runner",
]

_FACTORIES: dict[str, Callable[[], Runner]] = {}
_LAZY: dict[str, str] = {
    "direct": "tidal.runners.direct:DirectRunner",
    "ray": "tidal.runners.ray:RayRunner",
    "microbatch": "tidal.runners.microbatch:MicroBatchRunner",
}
_default: list[str | Runner | None] = [None]

#: Other names a runner answers to (compared case-insensitively): its class name and,
#: for the direct runner, Beam's local runners, so ``--runner=DirectRunner`` ports as is.
ALIASES: dict[str, tuple[str, ...]] = {
    "direct": (
        "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner", "TestDirectRunner",
        "FnApiRunner", "PrismRunner",
    ),
    "ray": ("RayRunner",),
    "microbatch": ("MicroBatchRunner",),
}


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
    name = canonical_runner_name(spec)
    if name in _FACTORIES:
        return _FACTORIES[name]()
    if name in _LAZY:
        module, _, attr = _LAZY[name].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        return cls()  # type: ignore[no-any-return]
    raise ValueError(f"unknown runner {spec!r}; registered runners: {runner_list()}")


def canonical_runner_name(spec: str) -> str:
    """The registered name ``spec`` means: case-insensitive, Beam's names and dotted paths mapped.

    >>> canonical_runner_name("DirectRunner"), canonical_runner_name("tidal.runners.ray.RayRunner")
    ('direct', 'ray')
    """
    name = spec.strip().rsplit(".", 1)[-1].lower()
    for canonical, aliases in ALIASES.items():
        if name == canonical or name in (a.lower() for a in aliases):
            return canonical
    return name


def runner_list() -> str:
    """The registered runners with the other names each answers to, for error messages."""
    parts = []
    for name in registered_runners():
        aliases = ALIASES.get(name, ())
        parts.append(f"{name} (also {', '.join(aliases)})" if aliases else name)
    return "; ".join(parts)
