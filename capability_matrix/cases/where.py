"""Cases for "Where in event time": global, fixed, sliding, session and custom windows,
custom merging windows, and timestamp control."""

from __future__ import annotations

from typing import Any, Iterable

import tidal as td
from tidal import trigger as tr
from tidal import window
from tidal.capability_matrix.case import GLOBAL_EOW, GW, W, case, early, eow, late, on_time
from tidal.capability_matrix.cases.common import create_stamped, sort_groups
from tidal.model.time import MIN_TIMESTAMP, Timestamp
from tidal.model.window import AssignContext, BoundedWindow, IntervalWindow, MergeContext, TimestampCombiner, TimestampedValue
from tidal.testing import TestStream

_WINDOWED = ("value", "window")
_STAMPED = ("value", "window", "timestamp")

# -- Global windows ---------------------------------------------------------------------


@case("global.default_window", "Global windows", observe=_STAMPED, expected=[("x", GW, MIN_TIMESTAMP)])
def global_default(p: td.Pipeline) -> Any:
    """Created elements are in the global window, at the minimum timestamp."""
    return p | td.Create(["x"])


@case("global.group_output_time", "Global windows", observe=_STAMPED, expected=[(("k", [1, 2]), GW, GLOBAL_EOW)])
def global_group_time(p: td.Pipeline) -> Any:
    """A group in the global window is stamped with the global window's max timestamp."""
    return create_stamped(p, [(("k", 1), 5), (("k", 2), 50)]) | td.GroupByKey() | sort_groups()


@case("global.rewindow", "Global windows", observe=_WINDOWED, expected=[(("k", [1, 2, 3]), GW)])
def global_rewindow(p: td.Pipeline) -> Any:
    """WindowInto(GlobalWindows()) after fixed windows puts everything back into one window."""
    stamped = create_stamped(p, [(("k", 1), 1), (("k", 2), 15), (("k", 3), 31)])
    fixed = stamped | "Fixed" >> td.WindowInto(window.FixedWindows(10))
    return fixed | "Global" >> td.WindowInto(window.GlobalWindows()) | td.GroupByKey() | sort_groups()


@case("global.timestamps_kept", "Global windows", observe=("value", "timestamp"), expected=[("a", Timestamp(3)), ("b", Timestamp(-2.5))])
def global_timestamps(p: td.Pipeline) -> Any:
    """Elements in the global window keep their own event times through a Map."""
    return create_stamped(p, [("a", 3), ("b", -2.5)]) | td.Map(lambda x: x)


# -- Fixed windows ----------------------------------------------------------------------


@case(
    "fixed.assign",
    "Fixed windows",
    observe=_WINDOWED,
    expected=[("a", W(0, 10)), ("b", W(0, 10)), ("c", W(10, 20)), ("d", W(20, 30))],
)
def fixed_assign(p: td.Pipeline) -> Any:
    """Each element falls in [start, start + size): 9.5 is in [0, 10), 10 starts [10, 20)."""
    stamped = create_stamped(p, [("a", 1), ("b", 9.5), ("c", 10), ("d", 25)])
    return stamped | td.WindowInto(window.FixedWindows(10))


@case(
    "fixed.sum_per_window",
    "Fixed windows",
    observe=_STAMPED,
    expected=[(("k", 3), W(0, 10), eow(10)), (("k", 10), W(10, 20), eow(20)), (("j", 5), W(0, 10), eow(10))],
)
def fixed_sum(p: td.Pipeline) -> Any:
    """A per-key sum in each window, stamped with the end of its window."""
    stamped = create_stamped(p, [(("k", 1), 1), (("k", 2), 9), (("k", 10), 11), (("j", 5), 0)])
    return stamped | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum)


@case(
    "fixed.offset",
    "Fixed windows",
    observe=_WINDOWED,
    expected=[("a", W(-7, 3)), ("b", W(3, 13)), ("c", W(3, 13))],
)
def fixed_offset(p: td.Pipeline) -> Any:
    """FixedWindows(10, offset=3) puts 2 in [-7, 3) and both 3 and 12.9 in [3, 13)."""
    stamped = create_stamped(p, [("a", 2), ("b", 3), ("c", 12.9)])
    return stamped | td.WindowInto(window.FixedWindows(10, offset=3))


@case(
    "fixed.negative_timestamps",
    "Fixed windows",
    observe=_WINDOWED,
    expected=[("a", W(-10, 0)), ("b", W(-10, 0)), ("c", W(-20, -10))],
)
def fixed_negative(p: td.Pipeline) -> Any:
    """Windows before time zero: -1 and -10 are in [-10, 0), -10.5 in [-20, -10)."""
    stamped = create_stamped(p, [("a", -1), ("b", -10), ("c", -10.5)])
    return stamped | td.WindowInto(window.FixedWindows(10))


@case("fixed.many_windows", "Fixed windows", observe=_WINDOWED, expected=[(10, W(10 * i, 10 * i + 10)) for i in range(100)])
def fixed_many(p: td.Pipeline) -> Any:
    """A thousand elements over a hundred windows: ten in each."""
    stamped = create_stamped(p, [(1, i) for i in range(1000)])
    return stamped | td.WindowInto(window.FixedWindows(10)) | td.CombineGlobally(sum).without_defaults()


@case("fixed.one_element", "Fixed windows", observe=_STAMPED, expected=[(("k", ["v"]), W(60, 120), eow(120))])
def fixed_one(p: td.Pipeline) -> Any:
    """One element gives one group in its window."""
    stamped = create_stamped(p, [(("k", "v"), 61)])
    return stamped | td.WindowInto(window.FixedWindows(60)) | td.GroupByKey() | sort_groups()


# -- Sliding windows --------------------------------------------------------------------


@case("sliding.assign", "Sliding windows", observe=_WINDOWED, expected=[("x", W(5, 15)), ("x", W(10, 20))])
def sliding_assign(p: td.Pipeline) -> Any:
    """SlidingWindows(10, 5) puts t = 12 in [5, 15) and [10, 20)."""
    return create_stamped(p, [("x", 12)]) | td.WindowInto(window.SlidingWindows(10, 5))


@case(
    "sliding.count_per_window",
    "Sliding windows",
    observe=_STAMPED,
    expected=[
        (("k", 1), W(-5, 5), eow(5)),
        (("k", 2), W(0, 10), eow(10)),
        (("k", 2), W(5, 15), eow(15)),
        (("k", 1), W(10, 20), eow(20)),
    ],
)
def sliding_count(p: td.Pipeline) -> Any:
    """Elements at 1, 6 and 12 are counted in every window that contains them."""
    stamped = create_stamped(p, [(("k", 1), 1), (("k", 1), 6), (("k", 1), 12)])
    return stamped | td.WindowInto(window.SlidingWindows(10, 5)) | td.CombinePerKey(sum)


@case("sliding.period_equals_size", "Sliding windows", observe=_WINDOWED, expected=[("a", W(0, 10)), ("b", W(10, 20))])
def sliding_tumbling(p: td.Pipeline) -> Any:
    """With period equal to size, sliding windows are fixed windows."""
    return create_stamped(p, [("a", 3), ("b", 13)]) | td.WindowInto(window.SlidingWindows(10, 10))


@case("sliding.offset", "Sliding windows", observe=_WINDOWED, expected=[("x", W(7, 17)), ("x", W(12, 22))])
def sliding_offset(p: td.Pipeline) -> Any:
    """SlidingWindows(10, 5, offset=2) puts t = 12 in [7, 17) and [12, 22)."""
    return create_stamped(p, [("x", 12)]) | td.WindowInto(window.SlidingWindows(10, 5, offset=2))


# -- Session windows --------------------------------------------------------------------


@case("sessions.merge", "Session windows", observe=_STAMPED, expected=[(("a", [1, 3, 7]), W(1, 12), eow(12))])
def sessions_merge(p: td.Pipeline) -> Any:
    """Elements closer than the gap merge into one session spanning all of them."""
    stamped = create_stamped(p, [(("a", 1), 1), (("a", 3), 3), (("a", 7), 7)])
    return stamped | td.WindowInto(window.Sessions(5)) | td.GroupByKey() | sort_groups()


@case("sessions.gap_splits", "Session windows", observe=_WINDOWED, expected=[(("a", [1]), W(1, 6)), (("a", [20, 22]), W(20, 27))])
def sessions_split(p: td.Pipeline) -> Any:
    """A pause longer than the gap starts a new session."""
    stamped = create_stamped(p, [(("a", 1), 1), (("a", 20), 20), (("a", 22), 22)])
    return stamped | td.WindowInto(window.Sessions(5)) | td.GroupByKey() | sort_groups()


@case("sessions.touching_not_merged", "Session windows", observe=_WINDOWED, expected=[(("a", [0]), W(0, 5)), (("a", [5]), W(5, 10))])
def sessions_touching(p: td.Pipeline) -> Any:
    """Sessions [0, 5) and [5, 10) touch but do not overlap, so they stay apart."""
    stamped = create_stamped(p, [(("a", 0), 0), (("a", 5), 5)])
    return stamped | td.WindowInto(window.Sessions(5)) | td.GroupByKey() | sort_groups()


@case("sessions.per_key", "Session windows", observe=_WINDOWED, expected=[(("a", [1]), W(1, 6)), (("b", [3]), W(3, 8))])
def sessions_per_key(p: td.Pipeline) -> Any:
    """Sessions of different keys never merge, even when they overlap in time."""
    stamped = create_stamped(p, [(("a", 1), 1), (("b", 3), 3)])
    return stamped | td.WindowInto(window.Sessions(5)) | td.GroupByKey() | sort_groups()


@case("sessions.bridged", "Session windows", observe=_WINDOWED, expected=[(("a", 15), W(1, 14))])
def sessions_bridged(p: td.Pipeline) -> Any:
    """An element between two sessions bridges them into one (1 and 9 are joined by 5)."""
    stamped = create_stamped(p, [(("a", 1), 1), (("a", 9), 9), (("a", 5), 5)])
    return stamped | td.WindowInto(window.Sessions(5)) | td.CombinePerKey(sum)


@case("sessions.one_element", "Session windows", observe=_STAMPED, expected=[(("a", 1), W(4, 14), eow(14))])
def sessions_one(p: td.Pipeline) -> Any:
    """A lone element is a session of exactly the gap."""
    stamped = create_stamped(p, [(("a", 1), 4)])
    return stamped | td.WindowInto(window.Sessions(10)) | td.CombinePerKey(sum)


@case("sessions.merged_window_panes_start_at_index_0", "Session windows", observe=("value", "window", "timestamp", "pane"),
      expected=[(("a", [1, 3]), W(1, 13), eow(13), early(0)),
                (("a", [1, 3, 12, 14]), W(1, 24), eow(24), early(0)),
                (("a", [1, 3, 12, 14]), W(1, 24), eow(24), on_time(1, last=True))])
def sessions_pane_index_after_merge(p: td.Pipeline) -> Any:
    """Pane info does not survive a merge: after an early pane of [1, 13), new elements merge it into
    [1, 24), a new window whose first pane has index 0 again (the elements and trigger state do merge)."""
    stream = (TestStream().add_elements([TimestampedValue(("a", 1), 1), TimestampedValue(("a", 3), 3)])
              .add_elements([TimestampedValue(("a", 12), 12), TimestampedValue(("a", 14), 14)])
              .advance_watermark_to_infinity())
    trigger = tr.AfterWatermark(early=tr.AfterCount(2))
    windowed = p | stream | td.WindowInto(window.Sessions(10), trigger=trigger, accumulation_mode=tr.AccumulationMode.ACCUMULATING)
    return windowed | td.GroupByKey() | sort_groups()


# -- Custom windows ---------------------------------------------------------------------


class _WeekWindows(window.NonMergingWindowFn):
    """Windows of 7 seconds starting at multiples of 7."""

    def assign(self, context: AssignContext) -> list[BoundedWindow]:
        start = int(context.timestamp.micros // 7_000_000) * 7
        return [IntervalWindow(start, start + 7)]


@case("custom.windowfn", "Custom windows", observe=_WINDOWED, expected=[(("k", [1, 6]), W(0, 7)), (("k", [7]), W(7, 14))])
def custom_windowfn(p: td.Pipeline) -> Any:
    """A user WindowFn's assign() decides the windows."""
    stamped = create_stamped(p, [(("k", 1), 1), (("k", 6), 6.5), (("k", 7), 7)])
    return stamped | td.WindowInto(_WeekWindows()) | td.GroupByKey() | sort_groups()


class TenantWindow(BoundedWindow):
    """A window of one tenant's data up to ``end``: a user window class."""

    tenant: str

    def __init__(self, tenant: str, end: float | Timestamp) -> None:
        super().__init__(end)
        object.__setattr__(self, "tenant", tenant)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TenantWindow) and (self.tenant, self._end_us) == (other.tenant, other._end_us)

    def __hash__(self) -> int:
        return hash((self.tenant, self._end_us))

    def _sort_key(self) -> tuple[int, int]:
        return (self._end_us, int.from_bytes(self.tenant.encode()[:8], "big"))

    def __repr__(self) -> str:
        return f"TenantWindow({self.tenant!r}, {self._end_us / 1e6:g})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (TenantWindow, (self.tenant, self.end))


class _TenantWindows(window.NonMergingWindowFn):
    """Each (tenant, value) element goes to its tenant's window of 100 seconds."""

    def assign(self, context: AssignContext) -> list[BoundedWindow]:
        end = (int(context.timestamp.micros // 100_000_000) + 1) * 100
        return [TenantWindow(context.element[0], end)]


@case(
    "custom.window_class",
    "Custom windows",
    observe=_WINDOWED,
    expected=[(("acme", 3), TenantWindow("acme", 100)), (("zeta", 5), TenantWindow("zeta", 100)), (("acme", 7), TenantWindow("acme", 200))],
)
def custom_window_class(p: td.Pipeline) -> Any:
    """A user BoundedWindow subclass chosen from the element: sums per tenant window."""
    stamped = create_stamped(p, [(("acme", 1), 10), (("acme", 2), 20), (("zeta", 5), 30), (("acme", 7), 150)])
    return stamped | td.WindowInto(_TenantWindows()) | td.CombinePerKey(sum)


class _DayAndHour(window.NonMergingWindowFn):
    """Every element in its 10-second window and in its 100-second window."""

    def assign(self, context: AssignContext) -> list[BoundedWindow]:
        t = context.timestamp.micros
        small = t // 10_000_000 * 10
        big = t // 100_000_000 * 100
        return [IntervalWindow(small, small + 10), IntervalWindow(big, big + 100)]


@case(
    "custom.several_windows",
    "Custom windows",
    observe=_WINDOWED,
    expected=[(("k", 3), W(0, 10)), (("k", 4), W(10, 20)), (("k", 7), W(0, 100))],
)
def custom_several(p: td.Pipeline) -> Any:
    """A WindowFn may put an element in several windows; it is counted in each."""
    stamped = create_stamped(p, [(("k", 1), 1), (("k", 2), 2), (("k", 4), 15)])
    return stamped | td.WindowInto(_DayAndHour()) | td.CombinePerKey(sum)


# -- Custom merging windows -------------------------------------------------------------


class _EpochSessions(window.WindowFn):
    """Each element opens [t, t + 1); all windows of a key within the same 100 s epoch merge."""

    def assign(self, context: AssignContext) -> list[BoundedWindow]:
        t = context.timestamp.micros
        return [IntervalWindow.from_micros(t, t + 1_000_000)]

    def merge(self, merge_context: MergeContext) -> None:
        by_epoch: dict[int, list[Any]] = {}
        for w in merge_context.windows:
            by_epoch.setdefault(w.start.micros // 100_000_000, []).append(w)  # type: ignore[attr-defined]
        for group in by_epoch.values():
            if len(group) > 1:
                merged = IntervalWindow.from_micros(min(w[0] for w in group), max(w[1] for w in group))
                merge_context.merge(group, merged)


@case(
    "custom_merging.groups",
    "Custom merging windows",
    observe=_WINDOWED,
    expected=[(("a", [1, 50, 98]), W(1, 99)), (("a", [150]), W(150, 151)), (("b", [60]), W(60, 61))],
)
def custom_merging_groups(p: td.Pipeline) -> Any:
    """A user merging WindowFn merges a key's windows of one epoch; other keys stay apart."""
    stamped = create_stamped(p, [(("a", 1), 1), (("a", 50), 50), (("a", 98), 98), (("a", 150), 150), (("b", 60), 60)])
    return stamped | td.WindowInto(_EpochSessions()) | td.GroupByKey() | sort_groups()


@case("custom_merging.combine", "Custom merging windows", observe=_STAMPED, expected=[(("a", 6), W(10, 31), eow(31))])
def custom_merging_combine(p: td.Pipeline) -> Any:
    """A combine over merged custom windows merges the accumulators too."""
    stamped = create_stamped(p, [(("a", 1), 10), (("a", 2), 20), (("a", 3), 30)])
    return stamped | td.WindowInto(_EpochSessions()) | td.CombinePerKey(sum)


@case("custom_merging.no_merge_needed", "Custom merging windows", observe=_WINDOWED, expected=[(("a", 1), W(5, 6)), (("a", 2), W(105, 106))])
def custom_merging_none(p: td.Pipeline) -> Any:
    """Windows the merging WindowFn does not merge keep their own groups."""
    stamped = create_stamped(p, [(("a", 1), 5), (("a", 2), 105)])
    return stamped | td.WindowInto(_EpochSessions()) | td.CombinePerKey(sum)


@case(
    "custom_merging.streaming",
    "Custom merging windows",
    observe=_WINDOWED,
    expected=[(("a", [1, 2]), W(1, 3)), (("a", [150]), W(150, 151))],
)
def custom_merging_stream(p: td.Pipeline) -> Any:
    """In a stream, windows merged before the watermark passes them fire once, merged."""
    stream = (
        TestStream()
        .add_elements([TimestampedValue(("a", 1), 1)])
        .add_elements([TimestampedValue(("a", 150), 150)])
        .add_elements([TimestampedValue(("a", 2), 2)])
        .advance_watermark_to(200)
        .advance_watermark_to_infinity()
    )
    return p | stream | td.WindowInto(_EpochSessions()) | td.GroupByKey() | sort_groups()


# -- Timestamp control ------------------------------------------------------------------


@case("timestamp.restamp", "Timestamp control", observe=("value", "timestamp"), expected=[(1, Timestamp(10)), (2, Timestamp(20))])
def ts_restamp(p: td.Pipeline) -> Any:
    """Returning TimestampedValue from Map sets a new event time."""
    return p | td.Create([1, 2]) | td.Map(lambda x: TimestampedValue(x, x * 10))


class _ShiftBy(td.DoFn):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def process(self, x: Any, t: Any = td.DoFn.TimestampParam) -> Iterable[Any]:
        yield TimestampedValue(x, t.micros / 1e6 + self.seconds)


@case("timestamp.restamp_reassigns_windows", "Timestamp control", observe=_WINDOWED, expected=[(("k", [1, 2]), W(20, 30))])
def ts_reassign(p: td.Pipeline) -> Any:
    """Re-stamping after WindowInto re-assigns the windows at the new time (1 and 5 move to [20, 30))."""
    stamped = create_stamped(p, [(("k", 1), 1), (("k", 2), 5)])
    return stamped | td.WindowInto(window.FixedWindows(10)) | td.ParDo(_ShiftBy(20)) | td.GroupByKey() | sort_groups()


@case(
    "timestamp.output_at_earliest",
    "Timestamp control",
    observe=_STAMPED,
    expected=[(("k", [3, 7]), W(0, 10), Timestamp(3)), (("k", [12]), W(10, 20), Timestamp(12))],
)
def ts_earliest(p: td.Pipeline) -> Any:
    """TimestampCombiner.OUTPUT_AT_EARLIEST stamps a pane with its earliest input."""
    stamped = create_stamped(p, [(("k", 7), 7), (("k", 3), 3), (("k", 12), 12)])
    windowed = stamped | td.WindowInto(window.FixedWindows(10), timestamp_combiner=TimestampCombiner.OUTPUT_AT_EARLIEST)
    return windowed | td.GroupByKey() | sort_groups()


@case(
    "timestamp.output_at_latest",
    "Timestamp control",
    observe=_STAMPED,
    expected=[(("k", [3, 7]), W(0, 10), Timestamp(7))],
)
def ts_latest(p: td.Pipeline) -> Any:
    """TimestampCombiner.OUTPUT_AT_LATEST stamps a pane with its latest input."""
    stamped = create_stamped(p, [(("k", 7), 7), (("k", 3), 3)])
    windowed = stamped | td.WindowInto(window.FixedWindows(10), timestamp_combiner=TimestampCombiner.OUTPUT_AT_LATEST)
    return windowed | td.GroupByKey() | sort_groups()


class _StartStamped(window.NonMergingWindowFn):
    """Fixed 10-second windows whose transformed output time is the window's start."""

    def assign(self, context: AssignContext) -> list[BoundedWindow]:
        start = context.timestamp.micros // 10_000_000 * 10
        return [IntervalWindow(start, start + 10)]

    def get_transformed_output_time(self, w: BoundedWindow, input_timestamp: Timestamp) -> Timestamp:
        return w.start  # type: ignore[attr-defined,no-any-return]


@case(
    "timestamp.output_at_earliest_transformed",
    "Timestamp control",
    observe=_STAMPED,
    expected=[(("k", [13, 17]), W(10, 20), Timestamp(10))],
)
def ts_transformed(p: td.Pipeline) -> Any:
    """OUTPUT_AT_EARLIEST_TRANSFORMED uses the WindowFn's get_transformed_output_time."""
    stamped = create_stamped(p, [(("k", 17), 17), (("k", 13), 13)])
    windowed = stamped | td.WindowInto(_StartStamped(), timestamp_combiner=TimestampCombiner.OUTPUT_AT_EARLIEST_TRANSFORMED)
    return windowed | td.GroupByKey() | sort_groups()


@case(
    "timestamp.late_element_cannot_hold",
    "Timestamp control",
    observe=("value", "window", "timestamp", "pane"),
    expected=[(("k", [5]), W(0, 10), eow(10), late(0, 0))],
)
def ts_late_no_hold(p: td.Pipeline) -> Any:
    """A pane of an element that arrived late is stamped at the window's end, not at the element.

    (Its pane is the window's first, but data fired it behind the watermark: LATE, index 0.)
    """
    stream = (
        TestStream()
        .advance_watermark_to(20)
        .add_elements([TimestampedValue(("k", 5), 5)])
        .advance_watermark_to(30)
        .advance_watermark_to_infinity()
    )
    windowed = p | stream | td.WindowInto(
        window.FixedWindows(10), timestamp_combiner=TimestampCombiner.OUTPUT_AT_EARLIEST, allowed_lateness=100
    )
    return windowed | td.GroupByKey() | sort_groups()
