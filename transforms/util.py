"""Keyed and structural transforms: Keys, Values, KvSwap, WithKeys, Distinct,
Reshuffle, CoGroupByKey, CombineGlobally, CombineValues."""

from __future__ import annotations

import random
from typing import Any, Callable, Iterable

from tidal.model.combinefn import CombineFn
from tidal.model.pipeline import PipelineError
from tidal.model.primitives import CombinePerKey, Flatten, GroupByKey, WindowInto
from tidal.model.ptransform import PTransform
from tidal.model.pvalue import AsSideInput, PCollection
from tidal.model.window import GlobalWindows
from tidal.transforms.core import Create, FlatMap, Map, MapTuple

__all__ = [
    "Keys",
    "Values",
    "KvSwap",
    "WithKeys",
    "Distinct",
    "Reshuffle",
    "CoGroupByKey",
]


def _key(kv: Any) -> Any:
    return kv[0]


def _value(kv: Any) -> Any:
    return kv[1]


def _swap(kv: Any) -> Any:
    return kv[1], kv[0]


class Keys(PTransform):
    """The keys of (key, value) pairs.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Create([("a", 1), ("b", 2)]) | td.Keys(), td.testing.equal_to(["a", "b"]))
    """

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return pcoll | "Keys" >> Map(_key)


class Values(PTransform):
    """The values of (key, value) pairs.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Create([("a", 1), ("b", 2)]) | td.Values(), td.testing.equal_to([1, 2]))
    """

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return pcoll | "Values" >> Map(_value)


class KvSwap(PTransform):
    """(key, value) -> (value, key).

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Create([("a", 1)]) | td.KvSwap(), td.testing.equal_to([(1, "a")]))
    """

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return pcoll | "KvSwap" >> Map(_swap)


class WithKeys(PTransform):
    """Pair each element with a key: a constant or ``fn(element)``.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     keyed = p | td.Create(["ab", "c"]) | td.WithKeys(len)
    ...     td.testing.assert_that(keyed, td.testing.equal_to([(2, "ab"), (1, "c")]))
    """

    def __init__(self, key: Any) -> None:
        super().__init__()
        self.key = key

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        key = self.key
        if isinstance(key, AsSideInput):
            raise TypeError("WithKeys does not take a side input as the key")
        if callable(key):
            return pcoll | "WithKeys" >> Map(lambda x: (key(x), x))
        return pcoll | "WithKeys" >> Map(lambda x: (key, x))


class Distinct(PTransform):
    """The distinct elements (per window).

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Create([1, 1, 2]) | td.Distinct(), td.testing.equal_to([1, 2]))
    """

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        return (
            pcoll
            | "ToPairs" >> Map(lambda x: (x, None))
            | "Group" >> CombinePerKey(_first_or_none)
            | "Keys" >> Map(_key)
        )


def _first_or_none(values: Iterable[Any]) -> None:
    return None


class Reshuffle(PTransform):
    """Redistribute elements across workers (a fusion break); elements are unchanged.

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     td.testing.assert_that(p | td.Create([1, 2]) | td.Reshuffle(), td.testing.equal_to([1, 2]))
    """

    def expand(self, pcoll: PCollection[Any]) -> PCollection[Any]:
        original = pcoll.windowing
        # Group in the global window with the default trigger, keeping each
        # element's own timestamp and windows inside the value.
        from tidal.model.dofn import DoFn

        class _Pack(DoFn):
            def process(self, v: Any, t: Any = DoFn.TimestampParam, w: Any = DoFn.WindowParam) -> Iterable[Any]:
                yield random.getrandbits(32), (v, t, w)

        class _Unpack(DoFn):
            def process(self, kv: Any) -> Iterable[Any]:
                from tidal.model.windowed_value import WindowedValue

                for v, t, w in kv[1]:
                    yield WindowedValue(v, t, (w,))

        from tidal.model.primitives import ParDo

        from tidal.model.trigger import AccumulationMode, AfterCount, Repeatedly

        keyed = pcoll | "AddRandomKeys" >> ParDo(_Pack())
        regrouped = (
            keyed
            | "ToGlobal" >> WindowInto(GlobalWindows(), trigger=Repeatedly(AfterCount(1)),
                                       accumulation_mode=AccumulationMode.DISCARDING)
            | "Group" >> GroupByKey()
        )
        out = regrouped | "Restore" >> ParDo(_Unpack())
        out.windowing = original
        return out


class CoGroupByKey(PTransform):
    """Join several keyed PCollections: (key, {tag: [values]}) or (key, ([...], [...])).

    >>> import tidal as td
    >>> with td.Pipeline() as p:
    ...     emails = p | "emails" >> td.Create([("amy", "a@x")])
    ...     phones = p | "phones" >> td.Create([("amy", "555"), ("bob", "777")])
    ...     joined = {"emails": emails, "phones": phones} | td.CoGroupByKey()
    ...     td.testing.assert_that(joined, td.testing.equal_to([
    ...         ("amy", {"emails": ["a@x"], "phones": ["555"]}),
    ...         ("bob", {"emails": [], "phones": ["777"]})]))
    """

    def expand(self, pcolls: Any) -> PCollection[Any]:
        if isinstance(pcolls, dict):
            tags = list(pcolls)
            inputs = [pcolls[t] for t in tags]
            as_dict = True
        else:
            inputs = list(pcolls)
            tags = list(range(len(inputs)))
            as_dict = False
        if not inputs:
            raise ValueError("CoGroupByKey needs at least one PCollection")
        tagged = [
            pc | f"Tag[{tag}]" >> Map(lambda kv, i=i: (kv[0], (i, kv[1])))
            for i, (tag, pc) in enumerate(zip(tags, inputs))
        ]
        n = len(inputs)

        def regroup(kv: Any) -> Any:
            key, values = kv
            buckets: list[list[Any]] = [[] for _ in range(n)]
            for i, v in values:
                buckets[i].append(v)
            if as_dict:
                return key, {tag: buckets[i] for i, tag in enumerate(tags)}
            return key, tuple(buckets)

        return tuple(tagged) | "Flatten" >> Flatten() | "GroupByKey" >> GroupByKey() | "Regroup" >> Map(regroup)
