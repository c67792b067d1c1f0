"""Pipeline options: Beam's command-line options classes, parsed with argparse.

A Beam program builds its options from its command line and hands them to
the pipeline; the same program runs on tidal after its imports change:

>>> class WordCountOptions(PipelineOptions):
...     @classmethod
...     def _add_argparse_args(cls, parser):
...         parser.add_argument("--input", default="in.txt")
>>> options = PipelineOptions(["--input", "words.txt", "--runner", "DirectRunner", "--project", "p"])
>>> options.view_as(WordCountOptions).input, options.view_as(StandardOptions).runner
('words.txt', 'DirectRunner')
>>> options.get_all_options(retain_unknown_options=True)["project"]
'p'

As in Beam, every subclass of :class:`PipelineOptions` adds its flags with
``_add_argparse_args``; :meth:`PipelineOptions.view_as` gives a view of the
same values as another subclass (a value set through one view is seen by
all); flags that no subclass knows are kept, and returned by
``get_all_options(retain_unknown_options=True)``. Options Beam defines for
its own services that mean nothing here (``save_main_session``, the direct
runner's worker count) are accepted and ignored.
"""

from __future__ import annotations

import abc
import argparse
import difflib
import json
import logging
from typing import Any, Callable, Iterable, Sequence, TypeVar

__all__ = [
    "PipelineOptions",
    "StandardOptions",
    "StateOptions",
    "SetupOptions",
    "DirectOptions",
    "TypeOptions",
    "DebugOptions",
    "StreamingOptions",
    "ValueProvider",
    "StaticValueProvider",
    "RuntimeValueProvider",
]

_LOGGER = logging.getLogger("tidal.options")

PipelineOptionsT = TypeVar("PipelineOptionsT", bound="PipelineOptions")

#: Boolean options whose "off" flag has another name (Beam's table, for from_dictionary).
_FLAG_THAT_SETS_FALSE_VALUE = {"save_main_session": "no_save_main_session", "pipeline_type_check": "no_pipeline_type_check"}


# -- value providers (templated options) ------------------------------------------------
class ValueProvider(abc.ABC):
    """An option whose value may only be known when the pipeline runs (Beam's templates)."""

    @abc.abstractmethod
    def is_accessible(self) -> bool:
        """Whether :meth:`get` can be called now."""

    @abc.abstractmethod
    def get(self) -> Any:
        """The value."""


class StaticValueProvider(ValueProvider):
    """A value given on the command line.

    >>> StaticValueProvider(int, 3).get()
    3
    """

    def __init__(self, value_type: Callable[[Any], Any], value: Any) -> None:
        self.value_type = value_type
        self.value = value_type(value)

    def is_accessible(self) -> bool:
        return True

    def get(self) -> Any:
        return self.value

    def __str__(self) -> str:
        return str(self.value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StaticValueProvider):
            return bool(self.value == other.value and self.value_type == other.value_type)
        return bool(self.value == other)

    def __hash__(self) -> int:
        return hash((type(self), self.value_type, self.value))


class RuntimeValueProvider(ValueProvider):
    """A templated option that was not given: its default, read when the pipeline runs.

    tidal runs templates directly (there is no template service), so the
    value is the default the option declared.

    >>> RuntimeValueProvider("input", str, "in.txt").get()
    'in.txt'
    """

    def __init__(self, option_name: str, value_type: Callable[[Any], Any], default_value: Any) -> None:
        self.option_name = option_name
        self.value_type = value_type
        self.default_value = default_value

    def is_accessible(self) -> bool:
        return True

    def get(self) -> Any:
        return self.default_value

    def __str__(self) -> str:
        return f"RuntimeValueProvider(option: {self.option_name}, type: {getattr(self.value_type, '__name__', self.value_type)}, default_value: {self.default_value!r})"


def _static_value_provider_of(value_type: Callable[[Any], Any]) -> Callable[[Any], StaticValueProvider]:
    def _f(value: Any) -> StaticValueProvider:
        return StaticValueProvider(value_type, value)

    _f.__name__ = getattr(value_type, "__name__", "value")
    return _f


class _BeamArgumentParser(argparse.ArgumentParser):
    """argparse with Beam's ``add_value_provider_argument`` and no abbreviation errors."""

    def add_value_provider_argument(self, *args: Any, **kwargs: Any) -> None:
        """Add an option whose value is a ValueProvider (Beam's templated options)."""
        if args[0][0] != "-":
            option_name = args[0]
            if kwargs.get("nargs") is None:
                kwargs["nargs"] = "?"
        else:
            option_name = [a.replace("--", "") for a in args if a[:2] == "--"][0]
        value_type = kwargs.get("type") or str
        kwargs["type"] = _static_value_provider_of(value_type)
        kwargs["default"] = RuntimeValueProvider(option_name, value_type, kwargs.get("default"))
        self.add_argument(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse would otherwise fail on an unknown flag that abbreviates several known ones.
        if message.startswith("ambiguous option: "):
            return
        super().error(message)


# -- the options classes ----------------------------------------------------------------
def _all_subclasses(cls: type) -> list[type]:
    out: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


class PipelineOptions:
    """A container of command-line options; subclass it to declare your own (see the module)."""

    def __init__(self, flags: Sequence[str] | None = None, **kwargs: Any) -> None:
        if isinstance(flags, str):
            raise ValueError("Flags must be an iterable of strings, not a single string.")
        self._flags = list(flags) if flags is not None else None
        parser = _BeamArgumentParser(allow_abbrev=False)
        for cls in type(self).mro():
            if cls is PipelineOptions:
                break
            if "_add_argparse_args" in cls.__dict__:
                cls._add_argparse_args(parser)  # type: ignore[attr-defined]
        self._visible_options, _ = parser.parse_known_args(self._flags)
        self._all_options: dict[str, Any] = kwargs
        for option_name in self._visible_option_list():
            if option_name not in self._all_options:
                self._all_options[option_name] = getattr(self._visible_options, option_name)

    @classmethod
    def _add_argparse_args(cls, parser: _BeamArgumentParser) -> None:
        """Subclasses add their flags here with ``parser.add_argument(...)``."""

    @classmethod
    def from_dictionary(cls: type[PipelineOptionsT], options: dict[str, Any]) -> PipelineOptionsT:
        """Options from ``{name: value}``, as if given as flags (True booleans become bare flags).

        >>> PipelineOptions.from_dictionary({"runner": "ray", "streaming": True}).view_as(StandardOptions).streaming
        True
        """
        flags: list[str] = []
        for k, v in options.items():
            if isinstance(v, bool):
                if v:
                    flags.append(f"--{k}")
                elif k in _FLAG_THAT_SETS_FALSE_VALUE:
                    flags.append(f"--{_FLAG_THAT_SETS_FALSE_VALUE[k]}")
            elif isinstance(v, list):
                flags.extend(f"--{k}={i}" for i in v)
            elif isinstance(v, dict):
                flags.append(f"--{k}={json.dumps(v)}")
            elif v is None:
                _LOGGER.warning("Not setting flag with value None: %s", k)
            else:
                flags.append(f"--{k}={v}")
        return cls(flags)

    def get_all_options(
        self,
        drop_default: bool = False,
        add_extra_args_fn: Callable[[_BeamArgumentParser], None] | None = None,
        retain_unknown_options: bool = False,
        display_warnings: bool = False,
        current_only: bool = False,
    ) -> dict[str, Any]:
        """Every option any subclass defines, with its value (and the unknown flags, if asked).

        Two options classes may define the same flag (two jobs' ``--input`` in one
        test process, say): the one defined last describes it here, where Beam
        would fail with a conflicting option string. A flag another job's options
        class requires is not required here.
        """
        parser = _BeamArgumentParser(allow_abbrev=False, conflict_handler="resolve")
        classes: dict[str, type] = {}
        if current_only:
            classes[str(type(self))] = type(self)
        else:
            for cls in _all_subclasses(PipelineOptions):
                classes.setdefault(f"{cls.__module__}.{cls.__qualname__}", cls)
        for cls in classes.values():
            cls._add_argparse_args(parser)  # type: ignore[attr-defined]
        if add_extra_args_fn is not None:
            add_extra_args_fn(parser)
        for action in parser._actions:
            action.required = False
        known, unknown = parser.parse_known_args(self._flags)
        if display_warnings:
            self._warn_on_unknown_options(unknown, parser)
        if retain_unknown_options:
            seen: set[str] = set()
            i = 0
            while i < len(unknown):
                arg = unknown[i]
                if arg == "--":
                    break
                if not arg.startswith("-"):
                    i += 1
                    continue
                if i + 1 >= len(unknown) or unknown[i + 1].startswith("-"):
                    name, eq, _ = arg.partition("=")
                    if name not in seen:
                        parser.add_argument(name, **({"type": str} if eq else {"action": "store_true"}))
                        seen.add(name)
                    i += 1
                elif arg.startswith("--"):
                    if arg not in seen:
                        parser.add_argument(arg, type=str)
                        seen.add(arg)
                    i += 2
                else:
                    _LOGGER.warning("Discarding flag %s, single dash flags are not allowed.", arg)
                    i += 2
            parsed, _ = parser.parse_known_args(self._flags)
        else:
            if unknown and not current_only:
                _LOGGER.warning("Discarding unparseable args: %s", unknown)
            parsed = known
        result = vars(parsed)
        overrides = dict(self._all_options)
        for k in list(result):
            overrides.pop(k, None)
            if k in self._all_options:
                result[k] = self._all_options[k]
            if drop_default and parser.get_default(k) == result[k] and not isinstance(parser.get_default(k), ValueProvider):
                del result[k]
        if overrides:
            if retain_unknown_options:
                result.update(overrides)
            elif not current_only:
                _LOGGER.warning("Discarding invalid overrides: %s", overrides)
        return result

    @staticmethod
    def _warn_on_unknown_options(unknown_args: list[str], parser: argparse.ArgumentParser) -> None:
        known = [opt for action in parser._actions for opt in action.option_strings]
        for arg in unknown_args:
            msg = f"Unparseable argument: {arg}"
            if arg.startswith("--"):
                suggestions = difflib.get_close_matches(arg.split("=", 1)[0], known)
                if suggestions:
                    msg += f". Did you mean '{suggestions[0]}'?"
            _LOGGER.warning(msg)

    def display_data(self) -> dict[str, Any]:
        """The options that differ from their defaults, unknown ones included."""
        return self.get_all_options(drop_default=True, retain_unknown_options=True)

    def view_as(self, cls: type[PipelineOptionsT]) -> PipelineOptionsT:
        """These options seen as ``cls``: a view that shares every value with this object.

        >>> options = PipelineOptions(["--streaming"])
        >>> options.view_as(StandardOptions).runner = "ray"
        >>> options.view_as(StandardOptions).runner, options.view_as(StandardOptions).streaming
        ('ray', True)
        """
        if not (isinstance(cls, type) and issubclass(cls, PipelineOptions)):
            raise TypeError(f"view_as needs a PipelineOptions subclass, got {cls!r}")
        view = cls(self._flags)
        for option_name in view._visible_option_list():
            if option_name not in self._all_options:
                self._all_options[option_name] = getattr(view._visible_options, option_name)
        view._all_options = self._all_options
        return view

    def _visible_option_list(self) -> list[str]:
        return sorted(o for o in vars(self._visible_options) if o[0] != "_")

    def __dir__(self) -> list[str]:
        return sorted([*dir(type(self)), *self.__dict__, *self._visible_option_list()])

    def __getattr__(self, name: str) -> Any:
        if name[:2] == name[-2:] == "__" or name in ("_visible_options", "_all_options", "_flags"):
            raise AttributeError(name)
        if name in self._visible_option_list():
            return self._all_options[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("_flags", "_all_options", "_visible_options"):
            object.__setattr__(self, name, value)
        elif name in self._visible_option_list():
            self._all_options[name] = value
        else:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __str__(self) -> str:
        body = ", ".join(f"{o}={getattr(self, o)}" for o in self._visible_option_list())
        return f"{type(self).__name__}({body})"

    __repr__ = __str__


class StandardOptions(PipelineOptions):
    """The runner and whether the job is a streaming one.

    ``--runner`` takes tidal's runner names (``direct``, ``ray``,
    ``microbatch``) or Beam's local runners (``DirectRunner``,
    ``BundleBasedDirectRunner``, ``SwitchingDirectRunner``), which are the
    direct runner here. ``--streaming`` is accepted: every tidal runner runs
    unbounded sources and TestStream without it.
    """

    DEFAULT_RUNNER = "DirectRunner"

    @classmethod
    def _add_argparse_args(cls, parser: _BeamArgumentParser) -> None:
        parser.add_argument(
            "--runner",
            help="the runner: direct, ray or microbatch (Beam's DirectRunner and the other local "
            "runners mean direct); default: the TIDAL_RUNNER environment variable, else direct",
        )
        parser.add_argument("--streaming", default=False, action="store_true", help="accepted; every runner streams unbounded input")
        parser.add_argument(
            "--resource_hint", "--resource_hints", dest="resource_hints", action="append", default=[],
            help="accepted for Beam compatibility; tidal places work by parallelism, not by hints",
        )
        parser.add_argument(
            "--auto_unique_labels", default=False, action="store_true",
            help="give repeated transform labels a unique suffix instead of failing",
        )
        parser.add_argument(
            "--no_wait_until_finish", default=False, action="store_true",
            help="the with-statement starts the pipeline without waiting for it to finish",
        )


class StateOptions(PipelineOptions):
    """Where keyed state lives and how checkpoints are protected.

    ``--state_backend`` is ``memory`` (the default: Python objects) or ``disk``
    (an embedded store in ``--state_dir``, for state larger than memory).
    ``--checkpoint_key`` signs every checkpoint manifest with HMAC-SHA256 and
    refuses to restore one whose signature is missing or wrong (the
    environment variable ``TIDAL_CHECKPOINT_KEY`` does the same).

    >>> StateOptions(["--state_backend=disk", "--state_dir=/tmp/s"]).state_backend
    'disk'
    """

    @classmethod
    def _add_argparse_args(cls, parser: _BeamArgumentParser) -> None:
        parser.add_argument(
            "--state_backend", default="memory", choices=["memory", "disk"],
            help="where keyed state lives: memory (the default) or disk (an embedded store in --state_dir)",
        )
        parser.add_argument("--state_dir", default=None, help="the folder of the disk state backend (default: a temporary folder)")
        parser.add_argument(
            "--state_cache_entries", type=int, default=100_000,
            help="how many (key, window) entries each keyed step of the disk backend keeps in memory",
        )
        parser.add_argument(
            "--checkpoint_key", default=None,
            help="a secret that signs checkpoint manifests (HMAC-SHA256); default: $TIDAL_CHECKPOINT_KEY",
        )


class StreamingOptions(PipelineOptions):
    """Beam's streaming update options (accepted)."""

    @classmethod
    def _add_argparse_args(cls, parser: _BeamArgumentParser) -> None:
        parser.add_argument("--update_compatibility_version", help="accepted for Beam compatibility")


class SetupOptions(PipelineOptions):
    """How Beam ships code to workers; tidal ships user code with cloudpickle, so these are accepted only.

    ``save_main_session`` means nothing here: functions defined in ``__main__``
    travel by value with cloudpickle whether or not it is set.
    """

    @classmethod
    def _add_argparse_args(cls, parser: _BeamArgumentParser) -> None:
        parser.add_argument("--requirements_file", default=None)
        parser.add_argument("--requirements_cache", default=None)
        parser.add_argument("--setup_file", default=None)
        parser.add_argument("--beam_plugin", "--beam_plugins", dest="beam_plugins", action="append", default=None)
        parser.add_argument("--pickle_library", default="default", choices=["cloudpickle", "default", "dill", "dill_unsafe"])
        parser.add_argument("--save_main_session", default=None, action="store_true")
        parser.add_argument("--no_save_main_session", default=None, action="store_false", dest="save_main_session")
        parser.add_argument("--sdk_location", default="default")
        parser.add_argument("--extra_package", "--extra_packages", dest="extra_packages", action="append", default=None)
        parser.add_argument("--prebuild_sdk_container_engine", default=None)
        parser.add_argument("--sdk_container_image", default=None)


class DirectOptions(PipelineOptions):
    """Beam's DirectRunner options; accepted (tidal's direct runner is one in-process engine)."""

    @classmethod
    def _add_argparse_args(cls, parser: _BeamArgumentParser) -> None:
        parser.add_argument(
            "--no_direct_runner_use_stacked_bundle", action="store_false", dest="direct_runner_use_stacked_bundle"
        )
        parser.add_argument("--direct_runner_bundle_repeat", type=int, default=0)
        parser.add_argument("--direct_num_workers", type=int, default=1)
        parser.add_argument("--direct_running_mode", default="in_memory", choices=["in_memory", "multi_threading", "multi_processing"])
        parser.add_argument("--direct_embed_docker_python", default=False, action="store_true")
        parser.add_argument("--direct_test_splits", default={}, type=json.loads)


class TypeOptions(PipelineOptions):
    """Type checking: declared type hints are checked when a transform is applied (on by default)."""

    @classmethod
    def _add_argparse_args(cls, parser: _BeamArgumentParser) -> None:
        parser.add_argument("--type_check_strictness", default="DEFAULT_TO_ANY", choices=["ALL_REQUIRED", "DEFAULT_TO_ANY"])
        parser.add_argument("--type_check_additional", default="")
        parser.add_argument(
            "--no_pipeline_type_check", dest="pipeline_type_check", action="store_false",
            help="do not check declared type hints when transforms are applied",
        )
        parser.add_argument(
            "--runtime_type_check", default=False, action="store_true",
            help="accepted; tidal checks declared types when the pipeline is built, not per element",
        )
        parser.add_argument("--performance_runtime_type_check", default=False, action="store_true")
        parser.add_argument("--allow_non_deterministic_key_coders", default=False, action="store_true")
        parser.add_argument("--allow_unsafe_triggers", default=False, action="store_true")


class DebugOptions(PipelineOptions):
    """Experiments, as in Beam (``--experiments=a,b`` or repeated)."""

    @classmethod
    def _add_argparse_args(cls, parser: _BeamArgumentParser) -> None:
        parser.add_argument("--experiment", "--experiments", dest="experiments", action="append", default=None)

    def lookup_experiment(self, key: str, default: Any = None) -> Any:
        """The value of experiment ``key`` (``key=value``), True when given bare, else ``default``.

        >>> PipelineOptions(["--experiments=a,b=2"]).view_as(DebugOptions).lookup_experiment("b")
        '2'
        """
        for experiment in _split_experiments(self.experiments):
            if experiment == key:
                return True
            if experiment.startswith(key + "="):
                return experiment.split("=", 1)[1]
        return default


def _split_experiments(values: Iterable[str] | None) -> list[str]:
    return [e for v in values or () for e in v.split(",") if e]
