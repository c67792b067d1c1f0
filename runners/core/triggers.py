"""The trigger state machine: runs a trigger description for one window.

Every runner fires panes through this module (via ``reduce.py``), so the
runners cannot disagree about when a pane fires. A trigger description from
``tidal.model.trigger`` is compiled once into a tree of nodes; each window
keeps the mutable part in a small dict keyed by node id.

The rules follow Beam's trigger state machines: ``on_element`` observes an
element, ``should_fire`` asks whether the window should fire now,
``on_fire`` records a firing and says whether the trigger finished, and
``on_merge`` combines the states of merging windows.
"""

from __future__ import annotations

from typing import Any

from tidal.model.trigger import (
    AfterAll,
    AfterAny,
    AfterCount,
    AfterEach,
    AfterProcessingTime,
    AfterWatermark,
    Always,
    DefaultTrigger,
    Never,
    OrFinally,
    Repeatedly,
    Trigger,
)

__all__ = ["TriggerContext", "TriggerNode", "compile_trigger"]

State = dict[Any, Any]


class TriggerContext:
    """The times a trigger looks at: the input watermark, processing time, the window end."""

    __slots__ = ("watermark_us", "now_us", "window_max_us")

    def __init__(self, watermark_us: int, now_us: int, window_max_us: int) -> None:
        self.watermark_us = watermark_us
        self.now_us = now_us
        self.window_max_us = window_max_us

    @property
    def past_end_of_window(self) -> bool:
        return self.watermark_us > self.window_max_us


class TriggerNode:
    """One node of a compiled trigger; state lives in the window's dict under ``self.id``."""

    def __init__(self, ids: list[int]) -> None:
        self.id = len(ids)
        ids.append(self.id)

    def on_element(self, st: State, ctx: TriggerContext) -> None:
        pass

    def should_fire(self, st: State, ctx: TriggerContext) -> bool:
        return False

    def on_fire(self, st: State, ctx: TriggerContext) -> bool:
        return False

    def reset(self, st: State) -> None:
        st.pop(self.id, None)

    def on_merge(self, target: State, sources: list[State], ctx: TriggerContext) -> None:
        pass

    def processing_deadline(self, st: State) -> int | None:
        """The processing time (µs) at which this node may next fire, if it waits on one."""
        return None

    def children(self) -> tuple["TriggerNode", ...]:
        return ()

    def _reset_tree(self, st: State) -> None:
        self.reset(st)
        for c in self.children():
            c._reset_tree(st)

    def _merge_children(self, target: State, sources: list[State], ctx: TriggerContext) -> None:
        for c in self.children():
            c.on_merge(target, sources, ctx)


class _AfterWatermarkNode(TriggerNode):
    """On time when the watermark passes the end of window; early/late sub-triggers repeat."""

    def __init__(self, ids: list[int], early: Trigger | None, late: Trigger | None) -> None:
        super().__init__(ids)
        self.early = _compile(Repeatedly(early), ids) if early is not None else None
        self.late = _compile(Repeatedly(late), ids) if late is not None else None

    def children(self) -> tuple[TriggerNode, ...]:
        return tuple(c for c in (self.early, self.late) if c is not None)

    def _is_late(self, st: State) -> bool:
        return bool(st.get(self.id))

    def on_element(self, st: State, ctx: TriggerContext) -> None:
        if self._is_late(st):
            if self.late is not None:
                self.late.on_element(st, ctx)
        elif self.early is not None:
            self.early.on_element(st, ctx)

    def should_fire(self, st: State, ctx: TriggerContext) -> bool:
        if self._is_late(st):
            return self.late.should_fire(st, ctx) if self.late is not None else False
        if ctx.past_end_of_window:
            return True
        return self.early.should_fire(st, ctx) if self.early is not None else False

    def on_fire(self, st: State, ctx: TriggerContext) -> bool:
        if self._is_late(st):
            if self.late is not None:
                self.late.on_fire(st, ctx)
            return False
        if ctx.past_end_of_window:
            st[self.id] = True
            return self.late is None
        if self.early is not None:
            self.early.on_fire(st, ctx)
        return False

    def on_merge(self, target: State, sources: list[State], ctx: TriggerContext) -> None:
        # A merged window is in its late phase only if some source already fired
        # on time and the watermark is past the end of the merged window too.
        if ctx.past_end_of_window and any(s.get(self.id) for s in sources):
            target[self.id] = True
        else:
            target.pop(self.id, None)
        self._merge_children(target, sources, ctx)

    def processing_deadline(self, st: State) -> int | None:
        child = self.late if self._is_late(st) else self.early
        return child.processing_deadline(st) if child is not None else None


class _DefaultNode(TriggerNode):
    """Repeatedly(AfterWatermark()): fires whenever the watermark is past the end."""

    def should_fire(self, st: State, ctx: TriggerContext) -> bool:
        return ctx.past_end_of_window


class _AfterCountNode(TriggerNode):
    def __init__(self, ids: list[int], count: int) -> None:
        super().__init__(ids)
        self.count = count

    def on_element(self, st: State, ctx: TriggerContext) -> None:
        st[self.id] = st.get(self.id, 0) + 1

    def should_fire(self, st: State, ctx: TriggerContext) -> bool:
        return st.get(self.id, 0) >= self.count

    def on_fire(self, st: State, ctx: TriggerContext) -> bool:
        return True

    def on_merge(self, target: State, sources: list[State], ctx: TriggerContext) -> None:
        total = sum(s.get(self.id, 0) for s in sources)
        if total:
            target[self.id] = total


class _AfterProcessingTimeNode(TriggerNode):
    def __init__(self, ids: list[int], delay_us: int) -> None:
        super().__init__(ids)
        self.delay_us = delay_us

    def on_element(self, st: State, ctx: TriggerContext) -> None:
        if self.id not in st:
            st[self.id] = ctx.now_us + self.delay_us

    def should_fire(self, st: State, ctx: TriggerContext) -> bool:
        deadline = st.get(self.id)
        return deadline is not None and ctx.now_us >= deadline

    def on_fire(self, st: State, ctx: TriggerContext) -> bool:
        return True

    def on_merge(self, target: State, sources: list[State], ctx: TriggerContext) -> None:
        deadlines = [s[self.id] for s in sources if self.id in s]
        if deadlines:
            target[self.id] = min(deadlines)

    def processing_deadline(self, st: State) -> int | None:
        return st.get(self.id)


class _RepeatedlyNode(TriggerNode):
    def __init__(self, ids: list[int], underlying: Trigger) -> None:
        super().__init__(ids)
        self.underlying = _compile(underlying, ids)

    def children(self) -> tuple[TriggerNode, ...]:
        return (self.underlying,)

    def on_element(self, st: State, ctx: TriggerContext) -> None:
        self.underlying.on_element(st, ctx)

    def should_fire(self, st: State, ctx: TriggerContext) -> bool:
        return self.underlying.should_fire(st, ctx)

    def on_fire(self, st: State, ctx: TriggerContext) -> bool:
        if self.underlying.on_fire(st, ctx):
            self.underlying._reset_tree(st)
        return False

    def on_merge(self, target: State, sources: list[State], ctx: TriggerContext) -> None:
        self._merge_children(target, sources, ctx)

    def processing_deadline(self, st: State) -> int | None:
        return self.underlying.processing_deadline(st)


class _ParallelNode(TriggerNode):
    """AfterAny / AfterAll (and OrFinally, which is AfterAny of two)."""

    def __init__(self, ids: list[int], triggers: tuple[Trigger, ...], need_all: bool) -> None:
        super().__init__(ids)
        self.subs = tuple(_compile(t, ids) for t in triggers)
        self.need_all = need_all

    def children(self) -> tuple[TriggerNode, ...]:
        return self.subs

    def _finished(self, st: State) -> set[int]:
        return st.setdefault(self.id, set())  # type: ignore[no-any-return]

    def on_element(self, st: State, ctx: TriggerContext) -> None:
        done = st.get(self.id, ())
        for i, sub in enumerate(self.subs):
            if i not in done:
                sub.on_element(st, ctx)

    def should_fire(self, st: State, ctx: TriggerContext) -> bool:
        done = st.get(self.id, ())
        if self.need_all:
            return all(i in done or sub.should_fire(st, ctx) for i, sub in enumerate(self.subs))
        return any(i not in done and sub.should_fire(st, ctx) for i, sub in enumerate(self.subs))

    def on_fire(self, st: State, ctx: TriggerContext) -> bool:
        done = self._finished(st)
        for i, sub in enumerate(self.subs):
            if i not in done and sub.should_fire(st, ctx):
                if sub.on_fire(st, ctx):
                    done.add(i)
        if self.need_all:
            return len(done) == len(self.subs)
        return bool(done)

    def on_merge(self, target: State, sources: list[State], ctx: TriggerContext) -> None:
        merged: set[int] = set()
        for s in sources:
            merged |= s.get(self.id, set())
        if merged:
            target[self.id] = merged
        self._merge_children(target, sources, ctx)

    def processing_deadline(self, st: State) -> int | None:
        done = st.get(self.id, ())
        ds = [d for i, sub in enumerate(self.subs) if i not in done and (d := sub.processing_deadline(st)) is not None]
        return min(ds) if ds else None


class _SequenceNode(TriggerNode):
    """AfterEach: the sub-triggers in turn."""

    def __init__(self, ids: list[int], triggers: tuple[Trigger, ...]) -> None:
        super().__init__(ids)
        self.subs = tuple(_compile(t, ids) for t in triggers)

    def children(self) -> tuple[TriggerNode, ...]:
        return self.subs

    def _current(self, st: State) -> TriggerNode | None:
        ix = st.get(self.id, 0)
        return self.subs[ix] if ix < len(self.subs) else None

    def on_element(self, st: State, ctx: TriggerContext) -> None:
        cur = self._current(st)
        if cur is not None:
            cur.on_element(st, ctx)

    def should_fire(self, st: State, ctx: TriggerContext) -> bool:
        cur = self._current(st)
        return cur is not None and cur.should_fire(st, ctx)

    def on_fire(self, st: State, ctx: TriggerContext) -> bool:
        cur = self._current(st)
        if cur is not None and cur.on_fire(st, ctx):
            st[self.id] = st.get(self.id, 0) + 1
        return st.get(self.id, 0) >= len(self.subs)

    def on_merge(self, target: State, sources: list[State], ctx: TriggerContext) -> None:
        ix = max((s.get(self.id, 0) for s in sources), default=0)
        if ix:
            target[self.id] = ix
        self._merge_children(target, sources, ctx)

    def processing_deadline(self, st: State) -> int | None:
        cur = self._current(st)
        return cur.processing_deadline(st) if cur is not None else None


class _AlwaysNode(TriggerNode):
    def should_fire(self, st: State, ctx: TriggerContext) -> bool:
        return bool(st.get(self.id))

    def on_element(self, st: State, ctx: TriggerContext) -> None:
        st[self.id] = True

    def on_fire(self, st: State, ctx: TriggerContext) -> bool:
        st.pop(self.id, None)
        return False

    def on_merge(self, target: State, sources: list[State], ctx: TriggerContext) -> None:
        if any(s.get(self.id) for s in sources):
            target[self.id] = True


class _NeverNode(TriggerNode):
    pass


def _compile(trigger: Trigger, ids: list[int]) -> TriggerNode:
    if isinstance(trigger, DefaultTrigger):
        return _DefaultNode(ids)
    if isinstance(trigger, AfterWatermark):
        return _AfterWatermarkNode(ids, trigger.early, trigger.late)
    if isinstance(trigger, AfterCount):
        return _AfterCountNode(ids, trigger.count)
    if isinstance(trigger, AfterProcessingTime):
        return _AfterProcessingTimeNode(ids, trigger.delay_us)
    if isinstance(trigger, Repeatedly):
        return _RepeatedlyNode(ids, trigger.underlying)
    if isinstance(trigger, OrFinally):
        return _ParallelNode(ids, (trigger.trigger, trigger.until), need_all=False)
    if isinstance(trigger, AfterAny):
        return _ParallelNode(ids, trigger.triggers, need_all=False)
    if isinstance(trigger, AfterAll):
        return _ParallelNode(ids, trigger.triggers, need_all=True)
    if isinstance(trigger, AfterEach):
        return _SequenceNode(ids, trigger.triggers)
    if isinstance(trigger, Always):
        return _AlwaysNode(ids)
    if isinstance(trigger, Never):
        return _NeverNode(ids)
    raise TypeError(f"unknown trigger {trigger!r}")


def compile_trigger(trigger: Trigger) -> TriggerNode:
    """Compile a trigger description into its state machine."""
    return _compile(trigger, [])
