"""The rows of the capability matrix, grouped as Apache Beam groups them.

Beam's matrix asks four questions (what is computed, where in event time,
when in processing time, how refinements relate); tidal adds rows that
Beam's matrix lacks. Every case names exactly one of these rows.

>>> [g.name for g in GROUPS][:2]
['What is computed', 'Where in event time']
>>> ROW_BY_NAME["Session windows"].group
'Where in event time'
"""

from __future__ import annotations

import attrs

__all__ = ["Row", "Group", "GROUPS", "ROWS", "ROW_BY_NAME", "find_row"]


@attrs.frozen
class Row:
    """One capability: a row of the matrix."""

    name: str
    group: str
    description: str


@attrs.frozen
class Group:
    """A heading of the matrix and the rows under it, in display order."""

    name: str
    description: str
    rows: tuple[Row, ...]


def _group(name: str, description: str, rows: list[tuple[str, str]]) -> Group:
    return Group(name, description, tuple(Row(r, name, d) for r, d in rows))


GROUPS: tuple[Group, ...] = (
    _group(
        "What is computed",
        "the transforms a pipeline is made of",
        [
            ("ParDo", "element-wise processing: Map, FlatMap, Filter, DoFn lifecycle and parameters, tagged outputs"),
            ("GroupByKey", "grouping (key, value) pairs by key and window"),
            ("Flatten", "the union of several PCollections"),
            ("Combine", "CombinePerKey, CombineGlobally, CombineValues and CombineFns with accumulators"),
            ("Composite transforms", "transforms built from others: user PTransforms, Partition, CoGroupByKey, Distinct, ..."),
            ("Side inputs", "AsSingleton, AsIter, AsList, AsDict views, windowed side inputs"),
            ("Source API", "bounded sources: Read, source splitting, Impulse, Create"),
            ("Metrics", "user counters, distributions and gauges, queried from the result"),
            ("Stateful processing", "per-key, per-window state in a DoFn: value, bag, set and combining state"),
        ],
    ),
    _group(
        "Where in event time",
        "how elements are assigned to windows of event time",
        [
            ("Global windows", "the single window over all of event time"),
            ("Fixed windows", "tumbling windows of a fixed size, with an offset"),
            ("Sliding windows", "overlapping windows of a size, every period"),
            ("Session windows", "per-key windows that merge when they overlap"),
            ("Custom windows", "a user WindowFn and a user window class"),
            ("Custom merging windows", "a user WindowFn that merges windows"),
            ("Timestamp control", "re-stamping elements and choosing the timestamp of a pane"),
        ],
    ),
    _group(
        "When in processing time",
        "when the panes of a window are emitted",
        [
            ("Configurable triggering", "choosing a trigger other than the default"),
            ("Event-time triggers", "AfterWatermark with early and late firings"),
            ("Processing-time triggers", "AfterProcessingTime, driven by the processing-time clock"),
            ("Count triggers", "AfterCount, once or repeatedly"),
            ("Composite triggers", "AfterAny, AfterAll, AfterEach, OrFinally"),
            ("Allowed lateness", "late data kept within the lateness, dropped beyond it"),
            ("Timers", "event-time and processing-time timers in a stateful DoFn"),
        ],
    ),
    _group(
        "How refinements relate",
        "what a later pane of a window holds",
        [
            ("Discarding", "each pane holds only what arrived since the previous one"),
            ("Accumulating", "each pane holds everything of the window so far"),
        ],
    ),
    _group(
        "Files in and out",
        "reading and writing files (Beam lists these as I/O connectors, not in its matrix)",
        [
            ("Text files", "ReadFromText with compression and header lines; WriteToText with Beam's shard names, headers, bytes and str"),
            ("CSV files", "ReadFromCsv into dict rows with inferred types; WriteToCsv from dict rows"),
            ("JSON lines files", "ReadFromJson and WriteToJson, one JSON value per line"),
            ("Parquet files", "ReadFromParquet (rows), ReadArrow over Parquet (timestamped pairs), WriteToParquet with a schema"),
        ],
    ),
    _group(
        "Beyond the Beam matrix",
        "rows Apache Beam's matrix does not have",
        [
            ("TestStream", "scripted elements, watermark and processing-time advances"),
            ("Unbounded sources", "reading sources without an end, with watermarks and cancellation"),
            (
                "Redis Streams",
                "ReadFromRedisStream and WriteToRedisStream against a real redis-server: event time from a "
                "field or the entry ID, per-stream watermarks, output published when the run or checkpoint "
                "completes (skipped where no redis-server can run)",
            ),
            (
                "Watched directory",
                "fileio.MatchContinuously and ReadContinuously: files read as they appear under a glob (text, CSV, "
                "JSON lines, Parquet), stamped with their modification time or a column",
            ),
            (
                "Count windows",
                "Flink's count windows: CountWindows(size, every) per key, tumbling or sliding, counted in "
                "processing order, a partial last window at the end of the input",
            ),
            (
                "Delta (data-driven) windows",
                "Flink's delta windows: DeltaWindows(threshold, distance_fn) closes a key's window when a value "
                "moves more than the threshold from the window's first",
            ),
            (
                "Evictors",
                "Flink's CountEvictor, TimeEvictor and DeltaEvictor in WindowInto, before or after the grouping "
                "function, with triggers, accumulation and combines",
            ),
            ("Windowed join", "WindowedJoin: inner, left, right and full outer joins of two keyed PCollections per window"),
            ("Bad input rejected with a clear error", "mistakes are refused with an error that names the step and says what to do"),
            (
                "Exactly-once after failure",
                "after an injected crash the runner recovers from its checkpoint: the output of an idempotent "
                "sink, and the files a transactional sink (WriteToText, WriteToParquet) published, are exactly "
                "what a run without failure gives, and the restart did not re-read the whole input",
            ),
            (
                "Queryable state",
                "result.query_state reads a key's state in a stateful DoFn while the job runs (a copy, answered "
                "between bundles; on Ray by the worker that owns the key); unknown names are refused with the "
                "names there are, and a finished job says it finished",
            ),
            (
                "Beam source compatibility",
                "an Apache Beam program ported by replacing every apache_beam with tidal runs and writes exactly "
                "the lines Apache Beam's DirectRunner writes for the same input",
            ),
            (
                "State larger than memory",
                "state_backend=disk: keyed state (stateful DoFn cells, window buffers and accumulators) in an "
                "embedded store on disk behind a small in-memory cache, with the same results as in memory",
            ),
            (
                "Incremental checkpoints",
                "on the disk backend a checkpoint holds only the keys that changed and names the earlier ones it "
                "needs; a restore after a crash folds that chain back and the output is exactly once",
            ),
            ("Runner overhead (measured)", "small standard pipelines, timed; the cell shows the measured durations"),
        ],
    ),
)

ROWS: tuple[Row, ...] = tuple(row for group in GROUPS for row in group.rows)
ROW_BY_NAME: dict[str, Row] = {row.name: row for row in ROWS}


def find_row(name: str) -> Row | None:
    """The row called ``name``, ignoring case (limitations may be declared in lower case)."""
    row = ROW_BY_NAME.get(name)
    if row is not None:
        return row
    folded = name.casefold()
    for row in ROWS:
        if row.name.casefold() == folded:
            return row
    return None
