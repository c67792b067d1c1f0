"""Runners: the Runner base class, the registry, and the engines."""

from tidal.runners.registry import register_runner, registered_runners, resolve_runner, set_default_runner
from tidal.runners.runner import Runner

__all__ = ["Runner", "register_runner", "registered_runners", "resolve_runner", "set_default_runner"]
