"""DoFn invocation: signature analysis, parameter binding and the bundle kernels.

A :class:`DoFnInvoker` turns a DoFn into ``process_bundle(bundle)``: a loop
over windowed-value tuples ``(value, timestamp_us, windows, pane)`` that
appends outputs to per-tag lists. Functions from Map/FlatMap/Filter with no
extra arguments get dedicated loops: this is the hot path of every runner,
written for speed on purpose (locals bound once, no per-element isinstance
chains — one class lookup in a frozenset decides whether an output needs the
slow path). A DoFn that defines ``process_batch`` runs through the batched
kernel of :mod:`tidal.runners.core.batched` instead.
"""

from __future__ import annotations

import inspect
import types
from typing import Any, Callable, Iterable, NoReturn

from tidal.model.dofn import CallableDoFn, DoFn, DoFnParam
from tidal.model.pvalue import AsSideInput, TaggedOutput
from tidal.model.time import Timestamp
from tidal.model.userstate import StateSpec, TimerSpec
from tidal.model.window import TimestampedValue, WindowFn
from tidal.model.windowed_value import WindowedValue
from tidal.runners.core.errors import PipelineAssertionError, PipelineExecutionError, UserCodeError
from tidal.runners.core.sources import GlobalValues

_BUILTIN_METHOD = types.BuiltinMethodType

__all__ = ["DoFnSignature", "DoFnInvoker", "SideInputResolver"]

_SPECIAL_OUTPUTS = frozenset({TaggedOutput, TimestampedValue, WindowedValue})
#: What a sink's process commonly returns: no outputs, with no iterator to take that from.
_NOTHING = ()


class DoFnSignature:
    """What a DoFn's ``process`` asks for: window, timestamp, pane, key, state, timers."""

    def __init__(self, dofn: DoFn) -> None:
        self.dofn = dofn
        self.params: list[tuple[str, DoFnParam]] = []
        self.state_specs: dict[str, StateSpec] = {}
        self.timer_specs: dict[str, TimerSpec] = {}
        # Map/FlatMap/Filter functions may take DoFn parameters as defaults, as in Beam:
        # Map(lambda x, w=DoFn.WindowParam: ...).
        target = dofn.fn if isinstance(dofn, CallableDoFn) else dofn.process
        try:
            sig = inspect.signature(target)
        except (TypeError, ValueError):
            sig = None
        if sig is not None:
            for name, param in sig.parameters.items():
                if isinstance(param.default, DoFnParam):
                    self.params.append((name, param.default))
                    spec = param.default.spec
                    if isinstance(spec, StateSpec):
                        self.state_specs[spec.name] = spec
                    elif isinstance(spec, TimerSpec):
                        self.timer_specs[spec.name] = spec
        self.timer_callbacks: dict[str, Callable[..., Any]] = {}
        for attr in dir(type(dofn)):
            method = getattr(type(dofn), attr, None)
            spec = getattr(method, "_tidal_timer_spec", None)
            if isinstance(spec, TimerSpec):
                self.timer_callbacks[spec.name] = getattr(dofn, attr)
                self.timer_specs.setdefault(spec.name, spec)
        kinds = {p.kind for _, p in self.params}
        self.uses_window = "WindowParam" in kinds
        self.uses_key = "KeyParam" in kinds
        self.is_stateful = bool(self.state_specs or self.timer_specs)

    @property
    def needs_params(self) -> bool:
        return bool(self.params)


class SideInputResolver:
    """Maps a main-input window to each side input's materialized value (cached per window)."""

    def __init__(self, views: list[AsSideInput], data: list[dict[Any, list[Any]]], windowfns: list[WindowFn]) -> None:
        self.views = views
        self.data = data
        self.windowfns = windowfns
        self._cache: list[dict[Any, Any]] = [{} for _ in views]

    def side_window(self, index: int, main_window: Any) -> Any:
        from tidal.model.window import GLOBAL_WINDOW, GlobalWindows

        fn = self.windowfns[index]
        if isinstance(fn, GlobalWindows):
            return GLOBAL_WINDOW
        windows = fn._assign_us(main_window.max_timestamp_us, None, main_window)
        return windows[0]

    def value(self, index: int, main_window: Any) -> Any:
        cache = self._cache[index]
        try:
            return cache[main_window]
        except KeyError:
            pass
        side_window = self.side_window(index, main_window)
        values = self.data[index].get(side_window, [])
        result = self.views[index].materialize(values)
        cache[main_window] = result
        return result


class DoFnInvoker:
    """Runs a DoFn over bundles of windowed values for the step ``label``.

    ``outputs`` maps each output tag to the list the kernels append to; the
    owner drains the lists after each bundle.
    """

    def __init__(
        self,
        label: str,
        dofn: DoFn,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        main_tag: str,
        output_tags: Iterable[str],
        input_windowfn: WindowFn,
    ) -> None:
        self.label = label
        self.dofn = dofn
        self.args = args
        self.kwargs = kwargs
        self.main_tag = main_tag
        self.signature = DoFnSignature(dofn)
        self.input_windowfn = input_windowfn
        self.outputs: dict[str, list[Any]] = {main_tag: []}
        for tag in output_tags:
            self.outputs[tag] = []
        self.side_inputs: SideInputResolver | None = None
        self.has_side_inputs = any(isinstance(a, AsSideInput) for a in (*args, *kwargs.values()))
        # Set by a stateful operator before each call: returns the bound state/timer objects.
        self.state_binder: Callable[[str, DoFnParam, Any, Any], Any] | None = None
        #: Whether the kernel only iterates over its bundle (so it takes a GlobalValues as it is).
        self._iterating_kernel = True
        self._kernel = self._choose_kernel()

    # -- lifecycle ------------------------------------------------------------
    def setup(self) -> None:
        self._call_lifecycle("setup")

    def start_bundle(self) -> None:
        self._call_lifecycle("start_bundle")

    def finish_bundle(self) -> None:
        try:
            results = self.dofn.finish_bundle()
        except Exception as exc:
            raise UserCodeError(self.label, self.dofn.finish_bundle, exc, has_element=False) from exc
        if results is None:
            return
        for out in results:
            tag = self.main_tag
            if type(out) is TaggedOutput:
                tag, out = out.tag, out.value
            if type(out) is not WindowedValue:
                raise PipelineExecutionError(
                    self.label,
                    f"finish_bundle must yield WindowedValue (or TaggedOutput of one), got {out!r}: "
                    "outside process() there is no element to take the timestamp and window from",
                )
            self._output_list(tag).append(out.to_tuple())

    def teardown(self) -> None:
        self._call_lifecycle("teardown")

    def _call_lifecycle(self, name: str) -> None:
        method = getattr(self.dofn, name)
        try:
            method()
        except Exception as exc:
            raise UserCodeError(self.label, method, exc, has_element=False) from exc

    # -- processing -----------------------------------------------------------
    def process_bundle(self, bundle: list[Any]) -> None:
        """Process every windowed value of ``bundle``; outputs go to ``self.outputs``.

        A :class:`~tidal.runners.core.sources.GlobalValues` bundle goes as it is
        to the kernels that only iterate their bundle, and as a list to the others.
        """
        if type(bundle) is GlobalValues and not self._iterating_kernel:
            bundle = bundle.windowed()
        self._kernel(bundle)

    def _output_list(self, tag: str) -> list[Any]:
        try:
            return self.outputs[tag]
        except KeyError:
            declared = sorted(t for t in self.outputs if t != self.main_tag)
            raise PipelineExecutionError(
                self.label,
                f"output tag {tag!r} was not declared; declare it with "
                f".with_outputs({tag!r}) (declared: {declared})",
            ) from None

    def handle_special(self, out: Any, t: int, ws: Any, p: Any) -> None:
        """Route a TaggedOutput / TimestampedValue / WindowedValue output."""
        tag = self.main_tag
        if type(out) is TaggedOutput:
            tag, out = out.tag, out.value
        cls = type(out)
        if cls is TimestampedValue:
            t = out.timestamp_us
            ws = self.input_windowfn._assign_us(t, out.value, ws[0])
            self._output_list(tag).append((out.value, t, ws, p))
        elif cls is WindowedValue:
            self._output_list(tag).append(out.to_tuple())
        else:
            self._output_list(tag).append((out, t, ws, p))

    def _choose_kernel(self) -> Callable[[list[Any]], None]:
        dofn = self.dofn
        if type(dofn).process_batch is not DoFn.process_batch:
            # Imported here: pyarrow loads only for pipelines with a batched DoFn.
            from tidal.runners.core.batched import BatchKernel

            self._iterating_kernel = False
            return BatchKernel(self)
        if (
            type(dofn) is CallableDoFn
            and not self.args
            and not self.kwargs
            and not self.signature.params
        ):
            maker = {
                "map": self._map_kernel,
                "flatmap": self._flatmap_kernel,
                "filter": self._filter_kernel,
                "maptuple": self._maptuple_kernel,
                "flatmaptuple": self._flatmaptuple_kernel,
            }.get(dofn.kind)
            if maker is not None:
                return maker(dofn.fn)
        sig = self.signature
        if not (self.args or self.kwargs or sig.params or self.has_side_inputs or sig.uses_window or sig.is_stateful):
            return self._element_kernel
        if not (self.args or self.kwargs or self.has_side_inputs or sig.is_stateful) and self._window_is_second_argument():
            return self._window_kernel
        return self._general_kernel

    def _window_is_second_argument(self) -> bool:
        """Whether the only DoFn parameter is the window, taken positionally right after the element."""
        sig = self.signature
        if len(sig.params) != 1 or sig.params[0][1].kind != "WindowParam":
            return False
        dofn = self.dofn
        target = dofn.fn if isinstance(dofn, CallableDoFn) else dofn.process
        if isinstance(dofn, CallableDoFn) and dofn.kind != "map" and dofn.kind != "flatmap" and dofn.kind != "filter":
            return False  # the *_tuple kinds unpack the element into the arguments
        try:
            params = list(inspect.signature(target).parameters.values())
        except (TypeError, ValueError):
            return False
        return (
            len(params) >= 2
            and params[0].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            and params[1].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
            and params[1].name == sig.params[0][0]
        )

    def _fail(self, fn: Any, exc: Exception, element: Any) -> NoReturn:
        """Re-raise ``exc`` from user code as an error that names the step and element."""
        if isinstance(exc, PipelineExecutionError):
            raise exc
        if isinstance(exc, AssertionError):
            raise PipelineAssertionError(self.label, str(exc)) from exc
        raise UserCodeError(self.label, fn, exc, element) from exc

    # The kernels below are the per-element hot loops.
    def _map_kernel(self, fn: Callable[[Any], Any]) -> Callable[[list[Any]], None]:
        outputs, main_tag = self.outputs, self.main_tag
        special = _SPECIAL_OUTPUTS
        handle = self.handle_special

        assign = self.input_windowfn._assign_us
        stamped = TimestampedValue

        def kernel(bundle: list[Any]) -> None:
            append = outputs[main_tag].append
            v = None
            try:
                for v, t, w, p in bundle:
                    r = fn(v)
                    if r.__class__ in special:
                        if r.__class__ is stamped:
                            # Re-stamping is common enough (event-time sources) to inline.
                            nt = r.timestamp_us
                            append((r.value, nt, assign(nt, r.value, w[0]), p))
                        else:
                            handle(r, t, w, p)
                    else:
                        append((r, t, w, p))
            except Exception as exc:
                self._fail(fn, exc, v)

        return kernel

    def _maptuple_kernel(self, fn: Callable[..., Any]) -> Callable[[list[Any]], None]:
        outputs, main_tag = self.outputs, self.main_tag
        special = _SPECIAL_OUTPUTS
        handle = self.handle_special

        def kernel(bundle: list[Any]) -> None:
            append = outputs[main_tag].append
            v = None
            try:
                for v, t, w, p in bundle:
                    r = fn(*v)
                    if r.__class__ in special:
                        handle(r, t, w, p)
                    else:
                        append((r, t, w, p))
            except Exception as exc:
                self._fail(fn, exc, v)

        return kernel

    def _flatmap_kernel(self, fn: Callable[[Any], Any], unpack: bool = False) -> Callable[[list[Any]], None]:
        outputs, main_tag = self.outputs, self.main_tag
        special = _SPECIAL_OUTPUTS
        handle = self.handle_special

        def kernel(bundle: list[Any]) -> None:
            append = outputs[main_tag].append
            v = None
            try:
                for v, t, w, p in bundle:
                    rs = fn(*v) if unpack else fn(v)
                    if rs is None:
                        continue
                    for r in rs:
                        if r.__class__ in special:
                            handle(r, t, w, p)
                        else:
                            append((r, t, w, p))
            except Exception as exc:
                self._fail(fn, exc, v)

        return kernel

    def _flatmaptuple_kernel(self, fn: Callable[..., Any]) -> Callable[[list[Any]], None]:
        return self._flatmap_kernel(fn, unpack=True)

    def _filter_kernel(self, fn: Callable[[Any], Any]) -> Callable[[list[Any]], None]:
        outputs, main_tag = self.outputs, self.main_tag

        def kernel(bundle: list[Any]) -> None:
            v = None
            try:
                outputs[main_tag].extend([wv for wv in bundle if fn(wv[0])])
            except Exception as exc:
                # Find the failing element for the message (the error path may be slow).
                for wv in bundle:
                    v = wv[0]
                    try:
                        fn(v)
                    except Exception:
                        break
                self._fail(fn, exc, v)

        return kernel

    def _element_kernel(self, bundle: list[Any]) -> None:
        """A DoFn whose process takes the element alone: the general loop without what it does not use."""
        process: Any = self.dofn.process
        if type(process) is _BUILTIN_METHOD and type(process.__self__) is list and process.__name__ == "append":
            # process is a list's append (the file sinks keep a bundle's elements so): one extend,
            # the same list in the same order, without a call per element.
            process.__self__.extend(bundle.values if type(bundle) is GlobalValues else [wv[0] for wv in bundle])
            return
        out = self.outputs[self.main_tag]
        special = _SPECIAL_OUTPUTS
        handle = self.handle_special
        nothing = _NOTHING
        v: Any = None
        try:
            for v, t, ws, p in bundle:
                rs = process(v)
                if rs is None or rs is nothing:
                    continue
                for r in rs:
                    if r.__class__ in special:
                        handle(r, t, ws, p)
                    else:
                        out.append((r, t, ws, p))
        except Exception as exc:
            self._fail(process, exc, v)

    def _window_kernel(self, bundle: list[Any]) -> None:
        """A DoFn whose process takes the element and its window (a sink that records windows, say).

        The general loop's work for that signature, without binding a keyword per element:
        the window goes as the second argument, once per window of the element.
        """
        process = self.dofn.process
        out = self.outputs[self.main_tag]
        special = _SPECIAL_OUTPUTS
        handle = self.handle_special
        nothing = _NOTHING
        v: Any = None
        try:
            for v, t, ws, p in bundle:
                if len(ws) != 1:
                    # In several windows (sliding ones): once per window, in its own tuple.
                    self._window_kernel([(v, t, (w,), p) for w in ws])
                    continue
                rs = process(v, ws[0])
                if rs is None or rs is nothing:
                    continue
                for r in rs:
                    if r.__class__ in special:
                        handle(r, t, ws, p)
                    else:
                        out.append((r, t, ws, p))
        except Exception as exc:
            self._fail(process, exc, v)

    def _general_kernel(self, bundle: list[Any]) -> None:
        """Any DoFn: parameters, side inputs, extra arguments, state and timers."""
        sig = self.signature
        process = self.dofn.process
        explode = sig.uses_window or self.has_side_inputs or sig.is_stateful
        out = self.outputs[self.main_tag]
        special = _SPECIAL_OUTPUTS
        handle = self.handle_special
        fixed_args = self.args
        fixed_kwargs = self.kwargs
        dynamic_args = self.has_side_inputs
        params = sig.params
        v: Any = None
        try:
            for v, t, ws, p in bundle:
                for w in ws if explode else (None,):
                    wtuple = (w,) if explode else ws
                    if dynamic_args:
                        args, kwargs = self._resolve_side_inputs(w)
                    else:
                        args, kwargs = fixed_args, fixed_kwargs
                    if params:
                        kwargs = dict(kwargs)
                        for name, param in params:
                            kwargs[name] = self._bind_param(param, v, t, w if explode else ws[0], p)
                    rs = process(v, *args, **kwargs)
                    if rs is None:
                        continue
                    for r in rs:
                        if r.__class__ in special:
                            handle(r, t, wtuple, p)
                        else:
                            out.append((r, t, wtuple, p))
        except Exception as exc:
            self._fail(process, exc, v)

    def _resolve_side_inputs(self, window: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        resolver = self.side_inputs
        if resolver is None:
            raise PipelineExecutionError(self.label, "side inputs were not provided by the runner")
        index = 0
        args = []
        for a in self.args:
            if isinstance(a, AsSideInput):
                args.append(self._side_value(resolver, index, window))
                index += 1
            else:
                args.append(a)
        kwargs = {}
        for k, a in self.kwargs.items():
            if isinstance(a, AsSideInput):
                kwargs[k] = self._side_value(resolver, index, window)
                index += 1
            else:
                kwargs[k] = a
        return tuple(args), kwargs

    def _side_value(self, resolver: SideInputResolver, index: int, window: Any) -> Any:
        from tidal.model.pvalue import SideInputError

        try:
            return resolver.value(index, window)
        except SideInputError as exc:
            raise PipelineExecutionError(self.label, str(exc)) from exc

    def _bind_param(self, param: DoFnParam, v: Any, t: int, w: Any, p: Any) -> Any:
        kind = param.kind
        if kind == "TimestampParam":
            return Timestamp.from_micros(t)
        if kind == "WindowParam":
            return w
        if kind == "PaneInfoParam":
            return p
        if kind == "ElementParam":
            return v
        if kind == "KeyParam":
            return _key_of(self.label, v)
        if kind in ("StateParam", "TimerParam"):
            if self.state_binder is None:
                raise PipelineExecutionError(
                    self.label, f"{param!r} is only available in a stateful ParDo over (key, value) input"
                )
            return self.state_binder(self.label, param, _key_of(self.label, v), w)
        raise PipelineExecutionError(self.label, f"unknown DoFn parameter {param!r}")


def _key_of(label: str, value: Any) -> Any:
    try:
        key, _ = value
    except (TypeError, ValueError):
        from tidal.runners.core.errors import describe_element

        raise PipelineExecutionError(
            label,
            f"a stateful DoFn (or one using KeyParam) needs (key, value) elements, got "
            f"{describe_element(value)}",
        ) from None
    return key
