"""User metrics: counters, distributions and gauges, queryable from the result.

Besides the metrics user code declares, every runner reports two counters of
its own, in the namespace ``"tidal"`` (:data:`RUNNER_NAMESPACE`), per
GroupByKey / CombinePerKey (and stateful ParDo) step. They count input that
step dropped, by cause:

* ``dropped_due_to_lateness`` (:data:`DROPPED_DUE_TO_LATENESS`): the element
  was too late, its window had expired (the input watermark had passed the
  window's end plus the allowed lateness).
* ``dropped_due_to_closed_window`` (:data:`DROPPED_DUE_TO_CLOSED_WINDOW`): the
  window had not expired, but its trigger had finished (for example
  ``AfterCount(2)`` after its firing, or ``AfterWatermark()`` without late
  firings after its on-time pane), which closes the window to later input.

>>> import tidal as td
>>> from tidal import trigger, window
>>> from tidal.testing import TestStream
>>> stream = (TestStream()
...           .add_elements([window.TimestampedValue(("k", 1), 1)])
...           .advance_watermark_to(10)   # on time: AfterWatermark() fires and finishes
...           .add_elements([window.TimestampedValue(("k", 2), 2)])   # window closed
...           .advance_watermark_to(30)   # [0, 10) expires (end + lateness 10)
...           .add_elements([window.TimestampedValue(("k", 3), 3)])   # too late
...           .advance_watermark_to_infinity())
>>> p = td.Pipeline()
>>> _ = (p | stream
...        | td.WindowInto(window.FixedWindows(10), trigger=trigger.AfterWatermark(),
...                        accumulation_mode=trigger.AccumulationMode.DISCARDING, allowed_lateness=10)
...        | "Group" >> td.GroupByKey())
>>> counters = p.run().metrics().query(MetricsFilter().with_namespace(RUNNER_NAMESPACE))["counters"]
>>> sorted((c.key.metric.name, c.committed) for c in counters)
[('dropped_due_to_closed_window', 1), ('dropped_due_to_lateness', 1)]

User metrics:

>>> import tidal as td
>>> class CountWords(td.DoFn):
...     words = Metrics.counter("example", "words")
...     def process(self, line):
...         for word in line.split():
...             self.words.inc()
...             yield word
>>> p = td.Pipeline()
>>> _ = p | td.Create(["a b", "c"]) | td.ParDo(CountWords())
>>> result = p.run()
>>> [c.committed for c in result.metrics().query(MetricsFilter().with_name("words"))["counters"]]
[3]
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import attrs

__all__ = [
    "Metrics",
    "MetricName",
    "MetricKey",
    "MetricResult",
    "MetricsFilter",
    "MetricResults",
    "MetricsContainer",
    "DistributionResult",
    "GaugeResult",
    "current_container",
    "set_current_container",
    "RUNNER_NAMESPACE",
    "DROPPED_DUE_TO_LATENESS",
    "DROPPED_DUE_TO_CLOSED_WINDOW",
]

#: The namespace of the metrics the runners report themselves.
RUNNER_NAMESPACE = "tidal"
#: Counter: input dropped because its window had expired (end + allowed lateness passed).
DROPPED_DUE_TO_LATENESS = "dropped_due_to_lateness"
#: Counter: input dropped because its window's trigger had finished (the window was closed).
DROPPED_DUE_TO_CLOSED_WINDOW = "dropped_due_to_closed_window"


@attrs.frozen
class MetricName:
    namespace: str
    name: str


@attrs.frozen
class MetricKey:
    step: str
    metric: MetricName


@attrs.frozen
class DistributionResult:
    sum: float
    count: int
    min: float
    max: float

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count else None


@attrs.frozen
class GaugeResult:
    value: Any
    timestamp: float


@attrs.frozen
class MetricResult:
    key: MetricKey
    committed: Any
    attempted: Any

    @property
    def result(self) -> Any:
        return self.committed


class MetricsContainer:
    """The metric cells of one step in one worker; merged by the runner into the result."""

    __slots__ = ("step", "counters", "distributions", "gauges")

    def __init__(self, step: str) -> None:
        self.step = step
        self.counters: dict[MetricName, int] = {}
        self.distributions: dict[MetricName, list[float]] = {}  # [sum, count, min, max]
        self.gauges: dict[MetricName, tuple[Any, float]] = {}

    def merge(self, other: "MetricsContainer") -> None:
        for name, n in other.counters.items():
            self.counters[name] = self.counters.get(name, 0) + n
        for name, (s, c, lo, hi) in other.distributions.items():
            d = self.distributions.get(name)
            if d is None:
                self.distributions[name] = [s, c, lo, hi]
            else:
                d[0] += s
                d[1] += c
                d[2] = min(d[2], lo)
                d[3] = max(d[3], hi)
        for name, (v, ts) in other.gauges.items():
            old = self.gauges.get(name)
            if old is None or ts >= old[1]:
                self.gauges[name] = (v, ts)

    def is_empty(self) -> bool:
        return not (self.counters or self.distributions or self.gauges)


class _NullContainer(MetricsContainer):
    """Where metrics go when no step is running (for example in a unit test of a DoFn)."""


_current: list[MetricsContainer] = [_NullContainer("<outside a pipeline>")]


def current_container() -> MetricsContainer:
    return _current[0]


def set_current_container(container: MetricsContainer) -> MetricsContainer:
    """Make ``container`` current; returns the previous one to restore."""
    previous = _current[0]
    _current[0] = container
    return previous


def _namespace(namespace: Any) -> str:
    if isinstance(namespace, str):
        return namespace
    if isinstance(namespace, type):
        return f"{namespace.__module__}.{namespace.__qualname__}"
    raise TypeError(f"metric namespace must be a str or a class, got {namespace!r}")


class Counter:
    """A metric that sums increments."""

    __slots__ = ("metric_name",)

    def __init__(self, metric_name: MetricName) -> None:
        self.metric_name = metric_name

    def inc(self, n: int = 1) -> None:
        counters = _current[0].counters
        counters[self.metric_name] = counters.get(self.metric_name, 0) + n

    def dec(self, n: int = 1) -> None:
        self.inc(-n)


class Distribution:
    """A metric that tracks sum, count, min and max of the values it sees."""

    __slots__ = ("metric_name",)

    def __init__(self, metric_name: MetricName) -> None:
        self.metric_name = metric_name

    def update(self, value: float) -> None:
        d = _current[0].distributions.get(self.metric_name)
        if d is None:
            _current[0].distributions[self.metric_name] = [value, 1, value, value]
        else:
            d[0] += value
            d[1] += 1
            if value < d[2]:
                d[2] = value
            if value > d[3]:
                d[3] = value


class Gauge:
    """A metric that keeps the latest value set."""

    __slots__ = ("metric_name",)

    def __init__(self, metric_name: MetricName) -> None:
        self.metric_name = metric_name

    def set(self, value: Any) -> None:
        _current[0].gauges[self.metric_name] = (value, time.time())


class Metrics:
    """Factory of user metrics, as in Beam: ``Metrics.counter(namespace, name)``."""

    @staticmethod
    def counter(namespace: Any, name: str) -> Counter:
        return Counter(MetricName(_namespace(namespace), name))

    @staticmethod
    def distribution(namespace: Any, name: str) -> Distribution:
        return Distribution(MetricName(_namespace(namespace), name))

    @staticmethod
    def gauge(namespace: Any, name: str) -> Gauge:
        return Gauge(MetricName(_namespace(namespace), name))


class MetricsFilter:
    """Selects metrics by name, namespace and step (substring of the step label)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.namespaces: set[str] = set()
        self.steps: set[str] = set()

    def with_name(self, name: str) -> "MetricsFilter":
        self.names.add(name)
        return self

    def with_names(self, names: Iterable[str]) -> "MetricsFilter":
        self.names.update(names)
        return self

    def with_namespace(self, namespace: Any) -> "MetricsFilter":
        self.namespaces.add(_namespace(namespace))
        return self

    def with_namespaces(self, namespaces: Iterable[Any]) -> "MetricsFilter":
        self.namespaces.update(_namespace(n) for n in namespaces)
        return self

    def with_step(self, step: str) -> "MetricsFilter":
        self.steps.add(step)
        return self

    def with_steps(self, steps: Iterable[str]) -> "MetricsFilter":
        self.steps.update(steps)
        return self

    def with_metric(self, metric: "Counter | Distribution | Gauge") -> "MetricsFilter":
        """Select the metric a ``Metrics.counter(...)`` (or distribution, gauge) object names."""
        self.names.add(metric.metric_name.name)
        self.namespaces.add(metric.metric_name.namespace)
        return self

    def matches(self, key: MetricKey) -> bool:
        if self.names and key.metric.name not in self.names:
            return False
        if self.namespaces and key.metric.namespace not in self.namespaces:
            return False
        if self.steps and not any(s == key.step or s in key.step.split("/") for s in self.steps):
            return False
        return True


class MetricResults:
    """The metrics of a finished (or running) pipeline, merged across workers."""

    #: The keys of :meth:`query`'s result, under Beam's names.
    COUNTERS = "counters"
    DISTRIBUTIONS = "distributions"
    GAUGES = "gauges"

    def __init__(self, containers: Iterable[MetricsContainer] = ()) -> None:
        self._by_step: dict[str, MetricsContainer] = {}
        for c in containers:
            self.add(c)

    def add(self, container: MetricsContainer) -> None:
        if container.is_empty():
            return
        mine = self._by_step.get(container.step)
        if mine is None:
            mine = self._by_step[container.step] = MetricsContainer(container.step)
        mine.merge(container)

    def query(self, filter: MetricsFilter | None = None) -> dict[str, list[MetricResult]]:
        """``{"counters": [...], "distributions": [...], "gauges": [...]}`` matching ``filter``."""
        f = filter or MetricsFilter()
        out: dict[str, list[MetricResult]] = {"counters": [], "distributions": [], "gauges": []}
        for step, c in sorted(self._by_step.items()):
            for name, n in c.counters.items():
                key = MetricKey(step, name)
                if f.matches(key):
                    out["counters"].append(MetricResult(key, n, n))
            for name, (s, cnt, lo, hi) in c.distributions.items():
                key = MetricKey(step, name)
                if f.matches(key):
                    d = DistributionResult(s, int(cnt), lo, hi)
                    out["distributions"].append(MetricResult(key, d, d))
            for name, (v, ts) in c.gauges.items():
                key = MetricKey(step, name)
                if f.matches(key):
                    g = GaugeResult(v, ts)
                    out["gauges"].append(MetricResult(key, g, g))
        return out

    def containers(self) -> list[MetricsContainer]:
        return list(self._by_step.values())
