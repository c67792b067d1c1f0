"""The workloads on Apache Flink (PyFlink), in two idioms: Flink SQL (native operators) and the DataStream API with Python functions.

Runs in the Flink virtualenv (``make bench-peers``), in a local Flink of
``parallelism`` slots, through :mod:`tidal.benchmarks.peers.worker`. Every job
reads its input with ``from_pandas`` (``from_elements`` is slow for large
inputs) and collects its result in this process; the rows are then turned
into tidal's result tuples outside the timed region.

* SQL jobs run in a batch TableEnvironment (window table functions TUMBLE and
  HOP, joins, aggregates), except session windows, which Flink SQL runs only
  in streaming mode: that job declares a watermark on its input and runs in a
  streaming TableEnvironment (the bounded input ends with the final watermark).
* DataStream jobs put every map, filter, key selector, reduce and window
  function in Python (Python UDF workers need this virtualenv's Python:
  ``set_python_executable``). Those without windows run in batch execution
  mode; those with event-time windows run in streaming mode, with timestamps a
  Python ``TimestampAssigner`` reads from each row and a bounded-out-of-
  orderness watermark (PyFlink's Python window operators deadlock in batch
  execution mode: the timer registration waits on the bundle that waits on it).

Flink merges two session windows that touch (an event exactly one gap after
the last), Beam and tidal do not: with whole-millisecond times, a gap one
millisecond shorter and an end one millisecond later give Beam's sessions.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable

from tidal.benchmarks.peers.inputs import NEXMARK_COLUMNS, nexmark_event, seconds

__all__ = ["start", "warm_up", "version", "JOBS", "FlinkSession"]

_SESSION_GAP_MS = 2000
_WATERMARK_DELAY = "INTERVAL '1' SECOND"  # the inputs are out of order by far less


def version() -> str:
    from importlib.metadata import version as dist_version

    import pyflink  # noqa: F401  (an engine that is not there says so by its module's name)

    return f"apache-flink {dist_version('apache-flink')}"


class FlinkSession:
    """A batch TableEnvironment (SQL), a streaming one (SQL sessions) and a batch DataStream environment."""

    def __init__(self, parallelism: int) -> None:
        from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment
        from pyflink.table import EnvironmentSettings, StreamTableEnvironment, TableEnvironment

        self.parallelism = parallelism
        self.batch = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
        self._configure(self.batch)
        self.stream_env = StreamExecutionEnvironment.get_execution_environment()
        self.stream_env.set_parallelism(parallelism)
        self.stream_env.set_runtime_mode(RuntimeExecutionMode.STREAMING)
        self.stream_env.set_python_executable(sys.executable)
        self.stream = StreamTableEnvironment.create(self.stream_env)
        self._configure(self.stream)
        self.ds_env = StreamExecutionEnvironment.get_execution_environment()
        self.ds_env.set_parallelism(parallelism)
        self.ds_env.set_runtime_mode(RuntimeExecutionMode.BATCH)
        self.ds_env.set_python_executable(sys.executable)
        self.ds_tables = StreamTableEnvironment.create(self.ds_env)
        self._configure(self.ds_tables)

    def _configure(self, t_env: Any) -> None:
        config = t_env.get_config()
        config.set("parallelism.default", str(self.parallelism))
        config.set("table.local-time-zone", "UTC")
        config.set("python.executable", sys.executable)

    def close(self) -> None:
        pass


def start(parallelism: int) -> FlinkSession:
    return FlinkSession(parallelism)


def warm_up(session: FlinkSession) -> None:
    """One tiny job of each idiom, so the first measured job does not pay for the first job's set-up."""
    import pandas as pd

    session.batch.from_pandas(pd.DataFrame({"x": [1, 2]})).to_pandas()
    with _rows(session, {"x": [1, 2]}).map(lambda r: r[0]).execute_and_collect() as rows:
        list(rows)


def _table(t_env: Any, columns: dict[str, list[Any]], types: dict[str, str] | None = None) -> Any:
    import pandas as pd
    from pyflink.table import DataTypes

    frame = pd.DataFrame(columns)
    if types is None:
        return t_env.from_pandas(frame)
    mapping = {"int": DataTypes.BIGINT(), "float": DataTypes.DOUBLE(), "str": DataTypes.STRING()}
    schema = DataTypes.ROW([DataTypes.FIELD(name, mapping[types[name]]) for name in frame.columns])
    return t_env.from_pandas(frame, schema)


_NEXMARK_TYPES = dict(NEXMARK_COLUMNS)


def _events(t_env: Any, tables: dict[str, Any]) -> Any:
    return _table(t_env, tables["events"], _NEXMARK_TYPES)


def _stamped(t_env: Any, table: Any, columns: str) -> Any:
    """``table``'s ``columns`` and its millisecond time as a TIMESTAMP_LTZ ``ts``, for the window table functions."""
    return t_env.sql_query(f"SELECT {columns}, TO_TIMESTAMP_LTZ(ts_ms, 3) AS ts FROM {table}")


def _micros(series: Any) -> list[int]:
    """Epoch microseconds of a pandas datetime column (Flink's TIMESTAMP(3), UTC)."""
    import pandas as pd

    return [int(v) for v in (series - pd.Timestamp(0)) // pd.Timedelta(microseconds=1)]


# -- Flink SQL -------------------------------------------------------------------------------
def wordcount_sql(s: FlinkSession, tables: dict[str, Any]) -> Any:
    words = _table(s.batch, tables["words"])
    return s.batch.sql_query(f"SELECT word, COUNT(*) AS c FROM {words} GROUP BY word").to_pandas()


def windowed_sql(s: FlinkSession, tables: dict[str, Any]) -> Any:
    pairs = _stamped(s.batch, _table(s.batch, tables["pairs"]), "key, `value`")
    return s.batch.sql_query(
        f"SELECT window_start, key, SUM(`value`) AS total FROM TABLE(TUMBLE(TABLE {pairs}, DESCRIPTOR(ts), INTERVAL '10' SECOND)) "
        "GROUP BY window_start, window_end, key"
    ).to_pandas()


def sessions_sql(s: FlinkSession, tables: dict[str, Any]) -> list[Any]:
    from pyflink.table import DataTypes, Schema

    t = s.stream
    rows = t.to_data_stream(_table(t, tables["pairs"]))
    pairs = t.from_data_stream(
        rows,
        Schema.new_builder()
        .column("key", DataTypes.BIGINT()).column("value", DataTypes.BIGINT()).column("ts_ms", DataTypes.BIGINT())
        .column_by_expression("ts", "TO_TIMESTAMP_LTZ(ts_ms, 3)")
        .watermark("ts", f"ts - {_WATERMARK_DELAY}")
        .build(),
    )
    result = t.sql_query(
        f"SELECT key, window_start, window_end, ARRAY_AGG(`value`) AS vs FROM TABLE(SESSION(TABLE {pairs} PARTITION BY key, "
        f"DESCRIPTOR(ts), INTERVAL '{(_SESSION_GAP_MS - 1) / 1000:.3f}' SECOND)) GROUP BY key, window_start, window_end"
    )
    with result.execute().collect() as it:
        return [(r[0], r[1], r[2], list(r[3])) for r in it]


def q0_sql(s: FlinkSession, tables: dict[str, Any]) -> Any:
    events = _events(s.batch, tables)
    return s.batch.sql_query(f"SELECT * FROM {events}").to_pandas()


def q1_sql(s: FlinkSession, tables: dict[str, Any]) -> Any:
    events = _events(s.batch, tables)
    return s.batch.sql_query(
        f"SELECT auction, bidder, CAST((price * 89 - MOD(price * 89, 100)) / 100 AS BIGINT) AS euro, date_time FROM {events} WHERE kind = 2"
    ).to_pandas()


def q2_sql(s: FlinkSession, tables: dict[str, Any]) -> Any:
    events = _events(s.batch, tables)
    return s.batch.sql_query(f"SELECT auction, price FROM {events} WHERE kind = 2 AND MOD(auction, 123) = 0").to_pandas()


def q5_sql(s: FlinkSession, tables: dict[str, Any]) -> Any:
    bids = _stamped(s.batch, s.batch.sql_query(f"SELECT auction, ts_ms FROM {_events(s.batch, tables)} WHERE kind = 2"), "auction")
    counts = s.batch.sql_query(
        f"SELECT window_start, window_end, auction, COUNT(*) AS c FROM TABLE(HOP(TABLE {bids}, DESCRIPTOR(ts), "
        "INTERVAL '5' SECOND, INTERVAL '10' SECOND)) GROUP BY window_start, window_end, auction"
    )
    tops = s.batch.sql_query(f"SELECT window_start AS ws, window_end AS we, MAX(c) AS top FROM {counts} GROUP BY window_start, window_end")
    return s.batch.sql_query(
        f"SELECT window_start, auction, c FROM {counts} JOIN {tops} ON window_start = ws AND window_end = we WHERE c = top"
    ).to_pandas()


def yahoo_sql(s: FlinkSession, tables: dict[str, Any]) -> Any:
    events = _table(s.batch, tables["events"])
    ads = _table(s.batch, tables["ads"])
    views = s.batch.sql_query(
        f"SELECT a.campaign, TO_TIMESTAMP_LTZ(e.ts_ms, 3) AS ts FROM {events} AS e JOIN {ads} AS a ON e.ad_id = a.ad_id "
        "WHERE e.event_type = 'view'"
    )
    return s.batch.sql_query(
        f"SELECT window_start, campaign, COUNT(*) AS c FROM TABLE(TUMBLE(TABLE {views}, DESCRIPTOR(ts), INTERVAL '10' SECOND)) "
        "GROUP BY window_start, window_end, campaign"
    ).to_pandas()


# -- DataStream API with Python functions --------------------------------------------------------
def _rows(s: FlinkSession, columns: dict[str, list[Any]], types: dict[str, str] | None = None, streaming: bool = False) -> Any:
    """The table as a DataStream of Rows, in batch execution mode or (``streaming``) streaming mode.

    A projection comes first: the Arrow source's rows handed straight to a
    Python function fail to serialize their strings (PyFlink 2.3), the
    projection's do not.
    """
    t_env = s.stream if streaming else s.ds_tables
    table = _table(t_env, columns, types)
    names = ", ".join(f"`{name}`" for name in columns)
    return t_env.to_data_stream(t_env.sql_query(f"SELECT {names} FROM {table}"))


def _timestamped(ds: Any) -> Any:
    """Event time from each row's ``ts_ms``, the watermark a second behind the latest (the inputs are far less out of order)."""
    from pyflink.common import Duration
    from pyflink.common.watermark_strategy import TimestampAssigner, WatermarkStrategy

    class FromTsMs(TimestampAssigner):  # type: ignore[misc]
        def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
            return int(value.ts_ms)

    strategy = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_seconds(1)).with_timestamp_assigner(FromTsMs())
    return ds.assign_timestamps_and_watermarks(strategy)


def _collect(ds: Any) -> list[Any]:
    with ds.execute_and_collect() as rows:
        return list(rows)


def _window_function(emit: Callable[[Any, Any, Any], Iterable[Any]]) -> Any:
    """A ProcessWindowFunction calling ``emit(key, window, elements)``."""
    from pyflink.datastream.functions import ProcessWindowFunction

    class Emit(ProcessWindowFunction):  # type: ignore[misc]
        def process(self, key: Any, context: Any, elements: Iterable[Any]) -> Iterable[Any]:
            return emit(key, context.window(), elements)

    return Emit()


def _with_start(key: Any, window: Any, elements: Iterable[Any]) -> Iterable[Any]:
    for total in elements:
        yield (seconds(window.start * 1000), key, total[1])


def wordcount_datastream(s: FlinkSession, tables: dict[str, Any]) -> list[Any]:
    ds = _rows(s, tables["words"])
    return _collect(ds.map(lambda r: (r.word, 1)).key_by(lambda p: p[0]).reduce(lambda a, b: (a[0], a[1] + b[1])))


def windowed_datastream(s: FlinkSession, tables: dict[str, Any]) -> list[Any]:
    from pyflink.common import Time
    from pyflink.datastream.window import TumblingEventTimeWindows

    ds = _timestamped(_rows(s, tables["pairs"], streaming=True)).map(lambda r: (r.key, r.value))
    return _collect(
        ds.key_by(lambda p: p[0]).window(TumblingEventTimeWindows.of(Time.seconds(10)))
        .reduce(lambda a, b: (a[0], a[1] + b[1]), window_function=_window_function(_with_start))
    )


def _session(key: Any, window: Any, elements: Iterable[Any]) -> Iterable[Any]:
    yield ((key, seconds(window.start * 1000), seconds((window.end + 1) * 1000)), sorted(v for _, v in elements))


def sessions_datastream(s: FlinkSession, tables: dict[str, Any]) -> list[Any]:
    from pyflink.common import Time
    from pyflink.datastream.window import EventTimeSessionWindows

    ds = _timestamped(_rows(s, tables["pairs"], streaming=True)).map(lambda r: (r.key, r.value))
    return _collect(
        ds.key_by(lambda p: p[0]).window(EventTimeSessionWindows.with_gap(Time.milliseconds(_SESSION_GAP_MS - 1)))
        .process(_window_function(_session))
    )


def q0_datastream(s: FlinkSession, tables: dict[str, Any]) -> list[Any]:
    return _collect(_rows(s, tables["events"], _NEXMARK_TYPES).map(lambda r: r))


def q1_datastream(s: FlinkSession, tables: dict[str, Any]) -> list[Any]:
    ds = _rows(s, tables["events"], _NEXMARK_TYPES)
    return _collect(ds.filter(lambda r: r.kind == 2).map(lambda r: (r.auction, r.bidder, r.price * 89 // 100, r.date_time)))


def q2_datastream(s: FlinkSession, tables: dict[str, Any]) -> list[Any]:
    ds = _rows(s, tables["events"], _NEXMARK_TYPES)
    return _collect(ds.filter(lambda r: r.kind == 2 and r.auction % 123 == 0).map(lambda r: (r.auction, r.price)))


def _counted(key: Any, window: Any, elements: Iterable[Any]) -> Iterable[Any]:
    for auction_count in elements:
        yield (window.start, auction_count[0], auction_count[1])


def _hottest(key: Any, window: Any, elements: Iterable[Any]) -> Iterable[Any]:
    counts = list(elements)
    top = max(c for _, _, c in counts)
    for start, auction, c in sorted(counts):
        if c == top:
            yield (seconds(start * 1000), auction, c)


def q5_datastream(s: FlinkSession, tables: dict[str, Any]) -> list[Any]:
    from pyflink.common import Time
    from pyflink.datastream.window import SlidingEventTimeWindows, TumblingEventTimeWindows

    bids = _timestamped(_rows(s, tables["events"], _NEXMARK_TYPES, streaming=True).filter(lambda r: r.kind == 2)).map(lambda r: (r.auction, 1))
    counts = (
        bids.key_by(lambda p: p[0]).window(SlidingEventTimeWindows.of(Time.seconds(10), Time.seconds(5)))
        .reduce(lambda a, b: (a[0], a[1] + b[1]), window_function=_window_function(_counted))
    )
    # A window's counts carry its last instant as their time: a 5 s tumbling window per window start gathers them.
    return _collect(
        counts.key_by(lambda c: c[0]).window(TumblingEventTimeWindows.of(Time.seconds(5))).process(_window_function(_hottest))
    )


def yahoo_datastream(s: FlinkSession, tables: dict[str, Any]) -> list[Any]:
    from pyflink.common import Time
    from pyflink.datastream.window import TumblingEventTimeWindows

    campaigns = tables["ad_table"]  # the join table travels with the function, as a Python user would ship it
    views = _timestamped(_rows(s, tables["events"], streaming=True).filter(lambda r: r.event_type == "view")).map(lambda r: (campaigns[r.ad_id], 1))
    return _collect(
        views.key_by(lambda p: p[0]).window(TumblingEventTimeWindows.of(Time.seconds(10)))
        .reduce(lambda a, b: (a[0], a[1] + b[1]), window_function=_window_function(_with_start))
    )


# -- back to tidal's results -----------------------------------------------------------------
def _col(df: Any, name: str) -> list[Any]:
    return df[name].tolist()


def _same(rows: Any) -> list[Any]:
    return list(rows)


def _sessions(rows: list[Any]) -> list[Any]:
    return [((k, seconds(m), seconds(e + 1000)), sorted(vs)) for k, m, e, vs in (
        (k, _epoch_us(start), _epoch_us(end), vs) for k, start, end, vs in rows
    )]


def _epoch_us(value: Any) -> int:
    """Epoch microseconds of what a collected TIMESTAMP(3) is: a naive datetime in the session's zone (UTC).

    PyFlink builds that datetime from float seconds, so its microseconds can
    be one short (128.794999 for 128.795); a TIMESTAMP(3) holds whole
    milliseconds, so the nearest one is the value.
    """
    import datetime

    if isinstance(value, datetime.datetime):
        epoch = datetime.datetime(1970, 1, 1, tzinfo=value.tzinfo)
        micros = (value - epoch) // datetime.timedelta(microseconds=1)
        return round(micros / 1000) * 1000
    return int(value)


CONVERT: dict[str, Callable[[Any], list[Any]]] = {
    "wordcount": lambda df: list(zip(_col(df, "word"), _col(df, "c"))),
    "windowed": lambda df: [(seconds(w), k, t) for w, k, t in zip(_micros(df["window_start"]), _col(df, "key"), _col(df, "total"))],
    "sessions": _sessions,
    "q0": lambda df: [nexmark_event(r) for r in df.to_dict("records")],
    "q1": lambda df: list(zip(_col(df, "auction"), _col(df, "bidder"), _col(df, "euro"), _col(df, "date_time"))),
    "q2": lambda df: list(zip(_col(df, "auction"), _col(df, "price"))),
    "q5": lambda df: [(seconds(w), a, c) for w, a, c in zip(_micros(df["window_start"]), _col(df, "auction"), _col(df, "c"))],
    "yahoo": lambda df: [(seconds(w), c, n) for w, c, n in zip(_micros(df["window_start"]), _col(df, "campaign"), _col(df, "c"))],
}

_DATASTREAM_CONVERT: dict[str, Callable[[Any], list[Any]]] = {
    "q0": lambda rows: [nexmark_event(r.as_dict()) for r in rows],
}

#: (workload, variant) -> (job, conversion of what it collected into tidal's results).
JOBS: dict[tuple[str, str], tuple[Callable[[FlinkSession, dict[str, Any]], Any], Callable[[Any], list[Any]]]] = {
    **{(w, "sql"): (job, CONVERT[w]) for w, job in {
        "wordcount": wordcount_sql, "windowed": windowed_sql, "sessions": sessions_sql, "q0": q0_sql, "q1": q1_sql, "q2": q2_sql,
        "q5": q5_sql, "yahoo": yahoo_sql,
    }.items()},
    **{(w, "datastream"): (job, _DATASTREAM_CONVERT.get(w, _same)) for w, job in {
        "wordcount": wordcount_datastream, "windowed": windowed_datastream, "sessions": sessions_datastream,
        "q0": q0_datastream, "q1": q1_datastream, "q2": q2_datastream, "q5": q5_datastream, "yahoo": yahoo_datastream,
    }.items()},
}


# -- a paced stream (the latency sweep, :mod:`tidal.benchmarks.peers.streaming`) -------------------
#: The knob the latency sweep turns: how long a network buffer may wait to fill before it is sent.
STREAM_KNOB = ("buffer_timeout_ms", (0, 10, 100))


def stream_yahoo(s: FlinkSession, server: Any, info: dict[str, Any], buffer_timeout_ms: Any) -> list[tuple[Any, float]]:
    """The Yahoo query in Flink SQL between sockets: Flink's socket source reads ``server``'s lines, its socket sink writes the rows back.

    The job has no Python function: the lines are parsed by SQL, the rows
    leave through Flink's socket sink into a :class:`~.streaming.LineCollector`
    of this process, which notes when each arrived. Flink SQL keeps the
    event-time attribute through a window aggregation but not through a
    regular join, so the views are counted per ad and window first (emitted
    when the watermark passes the window), then joined with the ads and
    summed per campaign: an updating result, of which each (window,
    campaign)'s last row is its count.
    """
    from pyflink.common import Types
    from pyflink.common.serialization import RowFieldExtractorSchema
    from pyflink.datastream import RuntimeExecutionMode, StreamExecutionEnvironment
    from pyflink.datastream.functions import SinkFunction, SourceFunction
    from pyflink.java_gateway import get_gateway
    from pyflink.table import Schema, StreamTableEnvironment

    from tidal.benchmarks.peers.streaming import LineCollector

    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(s.parallelism)
    env.set_runtime_mode(RuntimeExecutionMode.STREAMING)
    env.set_buffer_timeout(int(buffer_timeout_ms))
    env.get_config().set_auto_watermark_interval(10)
    t_env = StreamTableEnvironment.create(env)
    s._configure(t_env)
    legacy = get_gateway().jvm.org.apache.flink.streaming.api.functions
    lines = env.add_source(SourceFunction(legacy.source.legacy.SocketTextStreamFunction("127.0.0.1", server.port, "\n", 0)), "paced lines", Types.STRING())
    delay_ms = max(0, round(info["out_of_orderness"] * 1000))
    schema = (
        Schema.new_builder().column("f0", "STRING")
        .column_by_expression("ad_id", "CAST(SPLIT_INDEX(f0, ',', 2) AS BIGINT)")
        .column_by_expression("event_type", "SPLIT_INDEX(f0, ',', 4)")
        .column_by_expression("ts", "TO_TIMESTAMP_LTZ(CAST(SPLIT_INDEX(f0, ',', 5) AS BIGINT), 3)")
        .watermark("ts", f"ts - INTERVAL '{delay_ms / 1000:.3f}' SECOND")
        .build()
    )
    events = t_env.from_data_stream(lines, schema)
    ads = t_env.from_elements(info["ads"], ["ad", "campaign"])
    per_ad = t_env.sql_query(
        "SELECT UNIX_TIMESTAMP(DATE_FORMAT(window_start, 'yyyy-MM-dd HH:mm:ss')) AS ws, ad_id, COUNT(*) AS c "
        f"FROM TABLE(TUMBLE(TABLE {events}, DESCRIPTOR(ts), INTERVAL '10' SECOND)) "
        "WHERE event_type = 'view' GROUP BY window_start, window_end, ad_id"
    )
    counts = t_env.sql_query(
        "SELECT CAST(CONCAT(CAST(ws AS STRING), ',', CAST(campaign AS STRING), ',', CAST(SUM(c) AS STRING), U&'\\000A') AS BYTES) "
        f"FROM {per_ad} JOIN {ads} ON ad_id = ad GROUP BY ws, campaign"
    )
    with LineCollector() as collector:
        sink = legacy.sink.legacy.SocketClientSink("127.0.0.1", collector.port, RowFieldExtractorSchema(0)._j_serialization_schema, 0, True)
        t_env.to_changelog_stream(counts).add_sink(SinkFunction(sink)).set_parallelism(1)
        env.execute("yahoo on a paced stream")
        received = collector.lines()
    last: dict[tuple[float, int], tuple[Any, float]] = {}
    for line, arrived in received:  # a key's rows come in order (-U old, +U new): its last row is its count
        ws, campaign, count = line.split(",")
        window = float(ws)
        last[window, int(campaign)] = ((window, int(campaign), int(count)), arrived)
    return list(last.values())


STREAMS = {"yahoo": stream_yahoo}
#: Flink reads as soon as its source task runs.
STREAM_WAIT = False
