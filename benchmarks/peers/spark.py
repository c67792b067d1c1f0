"""The workloads on Apache Spark (PySpark), in three idioms: DataFrames and Structured Streaming (native operators), and RDDs with Python lambdas.

Runs in the Spark virtualenv (``make bench-peers``), in a local Spark of
``parallelism`` cores, through :mod:`tidal.benchmarks.peers.worker`. Each job
reads its input from pandas (Arrow-backed ``createDataFrame``) or from Python
lists (``parallelize``), and collects its result to the driver; the rows are
then turned into tidal's result tuples, outside the timed region.

Spark merges two session windows that touch (an event exactly one gap after
the last), Beam and tidal do not: with whole-millisecond times, a gap one
millisecond shorter and an end one millisecond later give Beam's sessions.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Iterable

from tidal.benchmarks.nexmark.generator import Bid
from tidal.benchmarks.nexmark.queries import hottest, is_bid, to_euro
from tidal.benchmarks.peers.inputs import NEXMARK_COLUMNS, nexmark_event, seconds

__all__ = ["start", "warm_up", "version", "prepare", "JOBS", "SparkSession"]

_SESSION_GAP_MS = 2000
#: The key of the event that closes a streaming sessions query's input (the workload's keys are 0..99).
_END_KEY = -1
_WINDOW_US = 10_000_000
_SLIDE_US = 5_000_000


class SparkSession:
    """The local Spark session and its context."""

    def __init__(self, parallelism: int) -> None:
        import os
        import sys

        from pyspark.sql import SparkSession as Builder

        # The Python workers run the lambdas and unpickle tidal's values: this virtualenv's Python.
        os.environ["PYSPARK_PYTHON"] = sys.executable
        self.parallelism = parallelism
        self.spark = (
            Builder.builder.master(f"local[{parallelism}]")
            .appName("tidal-bench")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", str(parallelism))
            .config("spark.default.parallelism", str(parallelism))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.memory", "2g")
            .getOrCreate()
        )
        self.spark.sparkContext.setLogLevel("ERROR")
        self.sc = self.spark.sparkContext

    def frame(self, columns: dict[str, list[Any]], schema: str | None = None) -> Any:
        import pandas as pd

        return self.spark.createDataFrame(pd.DataFrame(columns), schema=schema)

    def close(self) -> None:
        self.spark.stop()


def version() -> str:
    import pyspark

    return f"pyspark {pyspark.__version__}"


def start(parallelism: int) -> SparkSession:
    return SparkSession(parallelism)


def warm_up(session: SparkSession) -> None:
    """One tiny job of each idiom, so the first measured job does not pay for starting the first executors."""
    session.frame({"x": [1, 2]}).groupBy("x").count().collect()
    session.sc.parallelize([1, 2], session.parallelism).map(lambda x: (x, 1)).reduceByKey(operator.add).collect()


def _col(df: Any, name: str) -> list[Any]:
    return df[name].tolist()  # numpy scalars to Python ints and floats


# -- DataFrames ---------------------------------------------------------------------------
_NEXMARK_SCHEMA = ", ".join(
    f"{name} {'bigint' if kind == 'int' else 'double' if kind == 'float' else 'string'}" for name, kind in NEXMARK_COLUMNS
)


def _nexmark_arrow() -> Any:
    import pyarrow as pa

    kinds = {"int": pa.int64(), "float": pa.float64()}
    return pa.schema([(name, kinds.get(kind, pa.string())) for name, kind in NEXMARK_COLUMNS])


def _events(s: SparkSession, tables: dict[str, Any]) -> Any:
    return s.frame(tables["events"], _NEXMARK_SCHEMA)


def _ts(df: Any) -> Any:
    from pyspark.sql import functions as F

    return df.withColumn("ts", F.timestamp_millis("ts_ms"))


def wordcount_df(s: SparkSession, tables: dict[str, Any]) -> Any:
    return s.frame(tables["words"]).groupBy("word").count().toPandas()


def windowed_df(s: SparkSession, tables: dict[str, Any]) -> Any:
    from pyspark.sql import functions as F

    pairs = _ts(s.frame(tables["pairs"]))
    return (
        pairs.groupBy(F.window("ts", "10 seconds"), "key").agg(F.sum("value").alias("total"))
        .select(F.unix_micros("window.start").alias("start_us"), "key", "total").toPandas()
    )


def sessions_df(s: SparkSession, tables: dict[str, Any]) -> Any:
    from pyspark.sql import functions as F

    pairs = _ts(s.frame(tables["pairs"]))
    return (
        pairs.groupBy(F.session_window("ts", f"{_SESSION_GAP_MS - 1} milliseconds"), "key").agg(F.collect_list("value").alias("values"))
        .select("key", F.unix_micros("session_window.start").alias("start_us"), F.unix_micros("session_window.end").alias("end_us"), "values")
        .toPandas()
    )


def q0_df(s: SparkSession, tables: dict[str, Any]) -> Any:
    return _events(s, tables).select("*").toPandas()


def q1_df(s: SparkSession, tables: dict[str, Any]) -> Any:
    from pyspark.sql import functions as F

    return _events(s, tables).where("kind = 2").select("auction", "bidder", F.expr("price * 89 div 100").alias("euro"), "date_time").toPandas()


def q2_df(s: SparkSession, tables: dict[str, Any]) -> Any:
    return _events(s, tables).where("kind = 2 AND auction % 123 = 0").select("auction", "price").toPandas()


def q5_df(s: SparkSession, tables: dict[str, Any]) -> Any:
    from pyspark.sql import functions as F

    bids = _ts(_events(s, tables).where("kind = 2"))
    counts = bids.groupBy(F.window("ts", "10 seconds", "5 seconds").alias("w"), "auction").count()
    top = counts.groupBy("w").agg(F.max("count").alias("top"))
    return (
        counts.join(top, "w").where("count = top")
        .select(F.unix_micros("w.start").alias("start_us"), "auction", "count").toPandas()
    )


def yahoo_df(s: SparkSession, tables: dict[str, Any]) -> Any:
    from pyspark.sql import functions as F

    views = _ts(s.frame(tables["events"]).where("event_type = 'view'").select("ad_id", "ts_ms"))
    ads = s.frame(tables["ads"])
    return (
        views.join(F.broadcast(ads), "ad_id").groupBy(F.window("ts", "10 seconds"), "campaign").count()
        .select(F.unix_micros("window.start").alias("start_us"), "campaign", "count").toPandas()
    )


# -- Structured Streaming ------------------------------------------------------------------
# The same queries as streaming queries: a file source over a folder of Parquet files (written
# by ``prepare``, outside the timed region: a producer's work, not the engine's), an event-time
# watermark where windows are involved, and a ``foreachBatch`` sink that collects each
# micro-batch's rows to the driver. ``Trigger.AvailableNow`` reads what the folder holds and
# stops. Aggregations run in update mode: in append mode a window is emitted only once a later
# micro-batch's watermark passes it, and a bounded input has no later micro-batch. Nexmark q5
# (a count per window, then the maximum per window) needs two stateful aggregations chained in one
# query, which Structured Streaming does not support, so it has no streaming version here.


class _Collected:
    """What a query's ``foreachBatch`` sink received: each micro-batch's rows, in order."""

    def __init__(self) -> None:
        self.frames: list[Any] = []

    def __call__(self, batch: Any, batch_id: int) -> None:
        self.frames.append(batch.toPandas())

    def rows(self, group: list[str] | None) -> Any:
        """All rows; with ``group``, only the last row of each group (update mode re-emits a changed group)."""
        import pandas as pd

        frame = pd.concat(self.frames, ignore_index=True) if self.frames else pd.DataFrame()
        if group and len(frame):
            frame = frame.drop_duplicates(subset=group, keep="last").reset_index(drop=True)
        return frame


def prepare(session: SparkSession, variant: str, workload: str, tables: dict[str, Any]) -> dict[str, Any]:
    """Before the timed runs: the streaming variant's input as Parquet folders (other variants need nothing)."""
    if variant != "structured":
        return tables
    import os
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tempfile.mkdtemp(prefix="tidal-spark-stream-")
    streams: dict[str, Any] = {}
    for name in ("words", "pairs", "events"):  # the streamed tables (the ads table stays static)
        columns = tables.get(name)
        if columns is None:
            continue
        folder = f"{root}/{name}"
        os.makedirs(folder)
        schema = _nexmark_arrow() if name == "events" and workload in ("q0", "q1", "q2", "q5") else None
        if schema is None:
            table = pa.table(columns)
        else:  # the wide Nexmark table: NaN stands for a field the event's kind lacks
            table = pa.table([pa.array(columns[f.name], type=f.type, from_pandas=True) for f in schema], schema=schema)
        pq.write_table(table, f"{folder}/part-0.parquet")
        if workload == "sessions":
            # Sessions run in append mode (the only mode Spark has for them), where a session is
            # emitted by a micro-batch that starts after the watermark passed its end. Two more
            # files, each a micro-batch of its own, hold an event of a key of its own a day after
            # the last: the first moves the watermark past every session, as the end of a bounded
            # input does in Beam, and the second's micro-batch emits them. The query drops that key.
            last = max(columns["ts_ms"], default=0)
            for i in (1, 2):
                end = {"key": [_END_KEY], "value": [0], "ts_ms": [last + i * 86_400_000]}
                pq.write_table(pa.table(end, schema=table.schema), f"{folder}/part-{i}.parquet")
        streams[name] = (folder, session.spark.read.parquet(folder).schema)
    return {**tables, "streams": streams}


def _stream(s: SparkSession, tables: dict[str, Any], name: str) -> Any:
    folder, schema = tables["streams"][name]
    return s.spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(folder)


def _run_stream(df: Any, mode: str, group: list[str] | None = None) -> Any:
    """Run ``df`` as a streaming query over what its folders hold; the rows it emitted."""
    collected = _Collected()
    query = df.writeStream.outputMode(mode).foreachBatch(collected).trigger(availableNow=True).start()
    query.awaitTermination()
    if query.exception() is not None:
        raise RuntimeError(f"the streaming query failed: {query.exception()}")
    return collected.rows(group)


def _stamped(s: SparkSession, tables: dict[str, Any], name: str) -> Any:
    return _ts(_stream(s, tables, name)).withWatermark("ts", "0 seconds")


def wordcount_ss(s: SparkSession, tables: dict[str, Any]) -> Any:
    return _run_stream(_stream(s, tables, "words").groupBy("word").count(), "update", ["word"])


def windowed_ss(s: SparkSession, tables: dict[str, Any]) -> Any:
    from pyspark.sql import functions as F

    counts = (
        _stamped(s, tables, "pairs").groupBy(F.window("ts", "10 seconds"), "key").agg(F.sum("value").alias("total"))
        .select(F.unix_micros("window.start").alias("start_us"), "key", "total")
    )
    return _run_stream(counts, "update", ["start_us", "key"])


def sessions_ss(s: SparkSession, tables: dict[str, Any]) -> Any:
    from pyspark.sql import functions as F

    sessions = (
        _stamped(s, tables, "pairs")
        .groupBy(F.session_window("ts", f"{_SESSION_GAP_MS - 1} milliseconds"), "key").agg(F.collect_list("value").alias("values"))
        .select("key", F.unix_micros("session_window.start").alias("start_us"), F.unix_micros("session_window.end").alias("end_us"), "values")
    )
    rows = _run_stream(sessions, "append")
    # The closing key is dropped here: in the query, a filter on a grouping key would be pushed
    # below the watermark, which would then never see the closing events.
    return rows[rows["key"] != _END_KEY] if len(rows) else rows


def q0_ss(s: SparkSession, tables: dict[str, Any]) -> Any:
    return _run_stream(_stream(s, tables, "events").select("*"), "append")


def q1_ss(s: SparkSession, tables: dict[str, Any]) -> Any:
    from pyspark.sql import functions as F

    bids = _stream(s, tables, "events").where("kind = 2")
    return _run_stream(bids.select("auction", "bidder", F.expr("price * 89 div 100").alias("euro"), "date_time"), "append")


def q2_ss(s: SparkSession, tables: dict[str, Any]) -> Any:
    return _run_stream(_stream(s, tables, "events").where("kind = 2 AND auction % 123 = 0").select("auction", "price"), "append")


def yahoo_ss(s: SparkSession, tables: dict[str, Any]) -> Any:
    from pyspark.sql import functions as F

    views = _stamped(s, tables, "events").where("event_type = 'view'").select("ad_id", "ts")
    ads = s.frame(tables["ads"])  # the static side of a stream-static join
    counts = (
        views.join(F.broadcast(ads), "ad_id").groupBy(F.window("ts", "10 seconds"), "campaign").count()
        .select(F.unix_micros("window.start").alias("start_us"), "campaign", "count")
    )
    return _run_stream(counts, "update", ["start_us", "campaign"])


# -- RDDs with Python lambdas --------------------------------------------------------------
def _rdd(s: SparkSession, tables: dict[str, Any], with_time: bool = False) -> Any:
    values = tables["values"] if with_time else [v for v, _ in tables["values"]]
    return s.sc.parallelize(values, s.parallelism)


def _window_start_us(t_us: int, size_us: int = _WINDOW_US) -> int:
    return t_us - t_us % size_us


def wordcount_rdd(s: SparkSession, tables: dict[str, Any]) -> list[Any]:
    return _rdd(s, tables).map(lambda w: (w, 1)).reduceByKey(operator.add).collect()  # type: ignore[no-any-return]


def windowed_rdd(s: SparkSession, tables: dict[str, Any]) -> list[Any]:
    return (  # type: ignore[no-any-return]
        _rdd(s, tables, with_time=True)
        .map(lambda vt: ((_window_start_us(vt[1]), vt[0][0]), vt[0][1]))
        .reduceByKey(operator.add)
        .map(lambda kv: (kv[0][0] / 1e6, kv[0][1], kv[1]))
        .collect()
    )


def sessionize(key: Any, stamped: Iterable[tuple[int, Any]], gap_us: int = _SESSION_GAP_MS * 1000) -> list[Any]:
    """Beam's sessions of one key from (timestamp µs, value) pairs: ``((key, start, end), sorted values)``.

    >>> sessionize("k", [(0, 1), (2_500_000, 3), (500_000, 2)])
    [(('k', 0.0, 2.5), [1, 2]), (('k', 2.5, 4.5), [3])]
    """
    out: list[Any] = []
    start = end = None
    values: list[Any] = []
    for t, v in sorted(stamped, key=lambda tv: tv[0]):
        if end is not None and t < end:
            end = max(end, t + gap_us)
            values.append(v)
            continue
        if end is not None:
            out.append(((key, start / 1e6, end / 1e6), sorted(values)))  # type: ignore[operator]
        start, end, values = t, t + gap_us, [v]
    if end is not None:
        out.append(((key, start / 1e6, end / 1e6), sorted(values)))  # type: ignore[operator]
    return out


def sessions_rdd(s: SparkSession, tables: dict[str, Any]) -> list[Any]:
    return (  # type: ignore[no-any-return]
        _rdd(s, tables, with_time=True)
        .map(lambda vt: (vt[0][0], (vt[1], vt[0][1])))
        .groupByKey()
        .flatMap(lambda kv: sessionize(kv[0], kv[1]))
        .collect()
    )


def q0_rdd(s: SparkSession, tables: dict[str, Any]) -> list[Any]:
    return _rdd(s, tables).map(lambda e: e).collect()  # type: ignore[no-any-return]


def q1_rdd(s: SparkSession, tables: dict[str, Any]) -> list[Any]:
    return _rdd(s, tables).filter(is_bid).map(to_euro).collect()  # type: ignore[no-any-return]


def q2_rdd(s: SparkSession, tables: dict[str, Any]) -> list[Any]:
    return _rdd(s, tables).filter(is_bid).filter(lambda b: b.auction % 123 == 0).map(lambda b: (b.auction, b.price)).collect()  # type: ignore[no-any-return]


def _sliding_starts_us(t_us: int) -> list[int]:
    last = t_us - t_us % _SLIDE_US
    return [last - k * _SLIDE_US for k in range(_WINDOW_US // _SLIDE_US)]


def q5_rdd(s: SparkSession, tables: dict[str, Any]) -> list[Any]:
    return (  # type: ignore[no-any-return]
        _rdd(s, tables, with_time=True)
        .filter(lambda vt: type(vt[0]) is Bid)
        .flatMap(lambda vt: [((start, vt[0].auction), 1) for start in _sliding_starts_us(vt[1])])
        .reduceByKey(operator.add)
        .map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
        .groupByKey()
        .flatMap(lambda kv: [(kv[0] / 1e6, a, c) for a, c in hottest((None, kv[1]))])
        .collect()
    )


def yahoo_rdd(s: SparkSession, tables: dict[str, Any]) -> list[Any]:
    campaigns = s.sc.broadcast(tables["ad_table"])
    return (  # type: ignore[no-any-return]
        _rdd(s, tables, with_time=True)
        .filter(lambda vt: vt[0].event_type == "view")
        .map(lambda vt: ((_window_start_us(vt[1]), campaigns.value[vt[0].ad_id]), 1))
        .reduceByKey(operator.add)
        .map(lambda kv: (kv[0][0] / 1e6, kv[0][1], kv[1]))
        .collect()
    )


# -- back to tidal's results -----------------------------------------------------------------
def _rows(df: Any) -> list[dict[str, Any]]:
    return df.to_dict("records")  # type: ignore[no-any-return]


def _same(rows: Any) -> list[Any]:
    return list(rows)


CONVERT: dict[str, Callable[[Any], list[Any]]] = {
    "wordcount": lambda df: list(zip(_col(df, "word"), _col(df, "count"))),
    "windowed": lambda df: [(seconds(w), k, t) for w, k, t in zip(_col(df, "start_us"), _col(df, "key"), _col(df, "total"))],
    "sessions": lambda df: [
        ((k, seconds(s), seconds(e + 1000)), sorted(int(v) for v in vs))
        for k, s, e, vs in zip(_col(df, "key"), _col(df, "start_us"), _col(df, "end_us"), df["values"])
    ],
    "q0": lambda df: [nexmark_event(r) for r in _rows(df)],
    "q1": lambda df: list(zip(_col(df, "auction"), _col(df, "bidder"), _col(df, "euro"), _col(df, "date_time"))),
    "q2": lambda df: list(zip(_col(df, "auction"), _col(df, "price"))),
    "q5": lambda df: [(seconds(w), a, c) for w, a, c in zip(_col(df, "start_us"), _col(df, "auction"), _col(df, "count"))],
    "yahoo": lambda df: [(seconds(w), c, n) for w, c, n in zip(_col(df, "start_us"), _col(df, "campaign"), _col(df, "count"))],
}

#: (workload, variant) -> (job, conversion of what it collected into tidal's results).
JOBS: dict[tuple[str, str], tuple[Callable[[SparkSession, dict[str, Any]], Any], Callable[[Any], list[Any]]]] = {
    **{(w, "dataframe"): (job, CONVERT[w]) for w, job in {
        "wordcount": wordcount_df, "windowed": windowed_df, "sessions": sessions_df, "q0": q0_df, "q1": q1_df, "q2": q2_df,
        "q5": q5_df, "yahoo": yahoo_df,
    }.items()},
    **{(w, "structured"): (job, CONVERT[w]) for w, job in {
        "wordcount": wordcount_ss, "windowed": windowed_ss, "sessions": sessions_ss, "q0": q0_ss, "q1": q1_ss, "q2": q2_ss,
        "yahoo": yahoo_ss,
    }.items()},
    **{(w, "rdd"): (job, _same) for w, job in {
        "wordcount": wordcount_rdd, "windowed": windowed_rdd, "sessions": sessions_rdd, "q0": q0_rdd, "q1": q1_rdd, "q2": q2_rdd,
        "q5": q5_rdd, "yahoo": yahoo_rdd,
    }.items()},
}


# -- a paced stream (the latency sweep, :mod:`tidal.benchmarks.peers.streaming`) -------------------
#: The knob the latency sweep turns: the micro-batch trigger interval, seconds (0: the next batch as soon as one ends).
STREAM_KNOB = ("trigger_interval", (0.0, 0.5, 2.0))


def stream_yahoo(s: SparkSession, server: Any, info: dict[str, Any], trigger_interval: Any) -> list[tuple[Any, float]]:
    """The Yahoo query as a Structured Streaming query over the lines of ``server`` (Spark's socket source).

    The lines are parsed by Spark's own functions, the views joined with the
    static ads table, counted per campaign in 10 s windows under a watermark
    as late as the input's disorder, in update mode: each micro-batch's
    ``foreachBatch`` brings the windows it changed to this process, and each
    (window, campaign)'s last row is its count. The clock starts once the
    first micro-batch (the server's preamble) has run. Spark's socket source never
    ends, so the query is stopped once the counts add up to the views sent.
    """
    import threading
    import time

    from pyspark.sql import functions as F

    parts = F.split(F.col("value"), ",")
    lines = s.spark.readStream.format("socket").option("host", "127.0.0.1").option("port", server.port).load()
    delay_ms = max(0, round(info["out_of_orderness"] * 1000))
    views = (
        lines.select(parts[2].cast("long").alias("ad_id"), parts[4].alias("event_type"), F.timestamp_millis(parts[5].cast("long")).alias("ts"))
        .withWatermark("ts", f"{delay_ms} milliseconds").where("event_type = 'view'")
    )
    ads = s.frame({"ad_id": [a for a, _ in info["ads"]], "campaign": [c for _, c in info["ads"]]})
    counts = (
        views.join(F.broadcast(ads), "ad_id").groupBy(F.window("ts", "10 seconds"), "campaign").count()
        .select(F.unix_micros("window.start").alias("start_us"), "campaign", "count")
    )
    last: dict[tuple[float, int], tuple[Any, float]] = {}
    total = [0]
    done = threading.Event()

    def collect(batch: Any, batch_id: int) -> None:
        rows = batch.collect()
        now = time.time()
        server.go()  # the query runs: the paced lines may start
        for start_us, campaign, count in rows:
            key = (seconds(start_us), int(campaign))
            previous = last.get(key)
            total[0] += int(count) - (previous[0][2] if previous else 0)
            last[key] = ((key[0], key[1], int(count)), now)
        if total[0] >= info["views"]:
            done.set()

    writer = counts.writeStream.outputMode("update").foreachBatch(collect)
    if float(trigger_interval) > 0:
        writer = writer.trigger(processingTime=f"{round(float(trigger_interval) * 1000)} milliseconds")
    query = writer.start()
    try:
        deadline = time.monotonic() + info.get("timeout", 300.0)
        while not done.wait(0.05):
            if query.exception() is not None:
                raise RuntimeError(f"the streaming query failed: {query.exception()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the counts reached {total[0]} of {info['views']} views")
    finally:
        query.stop()
    return list(last.values())


STREAMS = {"yahoo": stream_yahoo}
#: The query is set up by its first micro-batch: pace the lines once it ran.
STREAM_WAIT = True
