"""Batched DoFns: ``process_batch`` over Arrow record batches, in the shared ParDo kernel.

A DoFn that overrides :meth:`~tidal.DoFn.process_batch` gets the elements of
each bundle as pyarrow record batches instead of one at a time (Beam's
batched DoFns). Every runner runs it through :class:`BatchKernel`, which the
:class:`~tidal.runners.core.invoker.DoFnInvoker` picks for such a DoFn, so
the direct, Ray and micro-batch runners give the same results.

**Elements to columns.** The elements of a batch all have one *form*:

==========================  ===================================================
element                     columns of the batch
==========================  ===================================================
``dict``                    one per key (keys must be strings), in key order
``NamedTuple``              one per field, in field order
``(key, value)`` pair       ``key`` and ``value`` (any other tuple is an error)
any other value             ``value`` (numbers, strings, bytes, lists, ...)
==========================  ===================================================

Column types are inferred by ``pyarrow.array`` unless the DoFn sets
``batch_schema``. Without a schema, elements whose fields hold different
Python types (``1`` and ``1.5``, or ``1`` and ``None``) go to different
batches, so a column's type never depends on which elements a runner put
in the same bundle; a column of ``None`` values has Arrow's ``null`` type.
With ``batch_schema`` (whose names must be the elements' columns) all the
elements of a form go to one batch typed by the schema, and ``None`` is a
null of the column's type. Nested values (lists, dicts) are inferred from
the whole batch: keep their inner types uniform, or set a schema.

**Rows back to elements.** The rows of every output batch become output
elements, in the input's form where the columns allow it:

* dict elements come back as dicts (column name to value);
* NamedTuple elements come back as that NamedTuple when the output columns are
  exactly its fields, else as dicts;
* ``(key, value)`` pairs and other values come back as bare values when the
  only output column is ``value``, as ``(key, value)`` pairs when the columns
  are exactly ``key`` and ``value``, and as dicts otherwise.

**Windows, panes and timestamps.** By default a batch holds elements that
share their windows, pane *and* timestamp (Beam's homogeneous windowed
batches): each output row gets that timestamp, those windows and that pane,
exactly as if ``process`` had yielded it for any one of the elements. For
rows with many timestamps (event-time data) set ``batch_timestamp_column``:
batches then share windows and pane only, the named column holds each row's
timestamp (``timestamp("us", tz="UTC")``), and every output batch must have
that column; it sets each output row's timestamp, which must lie in the
batch's windows (re-window later with WindowInto), and is not part of the
output element. With ``DoFn.WindowParam`` or side inputs, an element in
several windows is processed once per window, as ``process`` is.

How elements are cut into batches depends on the runner's bundles, so
``process_batch`` must treat its rows independently (a row-wise function, a
filter, an explode): then every runner gives the same output. When a DoFn
defines ``process`` as well, ``process_batch`` is the one every runner calls.
(The micro-batch runner hands the columns of an Arrow source straight to a
batched DoFn that reads it: :mod:`tidal.runners.microbatch.arrow_pardo`.)

>>> import pyarrow as pa
>>> import pyarrow.compute as pc
>>> import tidal as td
>>> class Total(td.DoFn):
...     def process_batch(self, batch):
...         total = pc.multiply(batch.column("price"), batch.column("qty"))
...         yield pa.record_batch({"item": batch.column("item"), "total": total})
>>> orders = [{"item": "tea", "price": 2.5, "qty": 2}, {"item": "jam", "price": 4.0, "qty": 1}]
>>> with td.Pipeline() as p:
...     out = p | td.Create(orders) | td.ParDo(Total())
...     td.testing.assert_that(out, td.testing.equal_to([{"item": "tea", "total": 5.0}, {"item": "jam", "total": 4.0}]))
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Iterable, NoReturn

import numpy as np
import pyarrow as pa

from tidal.model.dofn import DoFn, DoFnParam
from tidal.model.pvalue import TaggedOutput
from tidal.model.time import MIN_TIMESTAMP_US, Timestamp
from tidal.model.window import IntervalWindow
from tidal.runners.core.errors import PipelineExecutionError, describe_element

if TYPE_CHECKING:
    from tidal.runners.core.invoker import DoFnInvoker

__all__ = [
    "KEY_COLUMN",
    "VALUE_COLUMN",
    "TIMESTAMP_TYPE",
    "ArrowRows",
    "BatchKernel",
    "defines_process_batch",
]

#: The column of a (key, value) pair's key.
KEY_COLUMN = "key"
#: The column of a bare value, and of a (key, value) pair's value.
VALUE_COLUMN = "value"
#: The Arrow type of ``batch_timestamp_column``: microseconds since the epoch, UTC.
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

# The element forms (first item of a form tuple).
_VALUE, _PAIR, _DICT, _NAMED = "value", "pair", "dict", "namedtuple"
_PAIR_NAMES = [KEY_COLUMN, VALUE_COLUMN]
_VALUE_NAMES = [VALUE_COLUMN]
_PARAMS_ALLOWED = ("WindowParam", "TimestampParam", "PaneInfoParam")


def defines_process_batch(dofn: DoFn) -> bool:
    """Whether ``dofn`` overrides :meth:`DoFn.process_batch` (it is a batched DoFn)."""
    method = getattr(type(dofn), "process_batch", None)
    return method is not None and method is not DoFn.process_batch


class ArrowRows:
    """Rows that are already Arrow columns, standing in for elements in a bundle.

    A source that reads Arrow data puts one in a windowed-value tuple in place
    of its rows' elements, so a batched DoFn gets the columns without a
    detour through Python objects. With ``kind`` ``"pair"`` the rows stand for
    ``(key, value)`` elements and ``batch`` has the columns ``key`` and
    ``value``; with ``"dict"`` they stand for dicts, one column per key; with
    ``"value"`` for single values, in the one column ``value``. The
    columns are typed as the elements would make them; ``timestamps_us``
    holds each row's timestamp (used with ``batch_timestamp_column``;
    otherwise every row has the tuple's timestamp).
    """

    __slots__ = ("batch", "timestamps_us", "kind")

    def __init__(self, batch: pa.RecordBatch, timestamps_us: np.ndarray, kind: str = "pair") -> None:
        self.batch = batch
        self.timestamps_us = timestamps_us
        self.kind = kind

    def __repr__(self) -> str:
        return f"ArrowRows({self.batch.num_rows} rows)"

    def __reduce__(self) -> Any:
        return (ArrowRows, (self.batch, self.timestamps_us, self.kind))


class BatchKernel:
    """Runs a batched DoFn over bundles: group, convert, call ``process_batch``, convert back.

    The bundle loop is one of the runners' hot loops, written for speed on
    purpose: an element costs a lookup of its form by class, two identity
    checks of its windows and pane against the previous element's, and one
    dict lookup by (timestamp, form).
    """

    def __init__(self, invoker: "DoFnInvoker") -> None:
        self.invoker = invoker
        self.label = invoker.label
        dofn = invoker.dofn
        self.process_batch = dofn.process_batch
        self.fn_name = f"{type(dofn).__name__}.process_batch"
        column = dofn.batch_timestamp_column
        if column is not None and not isinstance(column, str):
            raise PipelineExecutionError(self.label, f"batch_timestamp_column must be a column name (str), got {column!r}")
        self.timestamp_column = column
        schema = dofn.batch_schema
        if schema is not None and not isinstance(schema, pa.Schema):
            raise PipelineExecutionError(self.label, f"batch_schema must be a pyarrow.Schema, got {schema!r}")
        self.schema = schema
        if invoker.signature.is_stateful:
            raise PipelineExecutionError(
                self.label,
                f"{type(dofn).__name__} defines process_batch and declares state or timers: a batched DoFn "
                "cannot use state or timers (use process for a stateful DoFn)",
            )
        self.params = self._batch_params(dofn)
        kinds = {p.kind for _, p in self.params}
        self.explode = "WindowParam" in kinds or invoker.has_side_inputs
        # Forms already met: by the class of a single value, by the classes of a pair.
        self._value_forms: dict[type, tuple[Any, ...]] = {}
        self._pair_forms: dict[tuple[type, type], tuple[Any, ...]] = {}

    def _batch_params(self, dofn: DoFn) -> list[tuple[str, DoFnParam]]:
        try:
            sig = inspect.signature(dofn.process_batch)
        except (TypeError, ValueError):
            return []
        params: list[tuple[str, DoFnParam]] = []
        for name, param in sig.parameters.items():
            if not isinstance(param.default, DoFnParam):
                continue
            kind = param.default.kind
            if kind not in _PARAMS_ALLOWED:
                raise PipelineExecutionError(
                    self.label,
                    f"process_batch cannot take {param.default!r} (parameter {name!r}): a batch has no single "
                    "element, key, state or timer; it may take DoFn.WindowParam, DoFn.TimestampParam and "
                    "DoFn.PaneInfoParam",
                )
            if kind == "TimestampParam" and self.timestamp_column is not None:
                raise PipelineExecutionError(
                    self.label,
                    f"process_batch cannot take DoFn.TimestampParam when batch_timestamp_column is set: the rows' "
                    f"timestamps are in the column {self.timestamp_column!r}",
                )
            params.append((name, param.default))
        return params

    # -- the bundle loop ------------------------------------------------------------------
    def __call__(self, bundle: list[Any]) -> None:
        """Group ``bundle`` into batches and run ``process_batch`` on each."""
        by_time = self.timestamp_column is None
        value_forms = self._value_forms
        pair_forms = self._pair_forms
        form_of = self._form_of
        # (windows, pane) -> (timestamp, form) or form -> (values, timestamps). Consecutive
        # elements mostly share their windows and pane objects: the identity check skips
        # hashing them (a PaneInfo hashes in Python).
        groups: dict[tuple[Any, Any], dict[Any, tuple[list[Any], list[int]]]] = {}
        last_ws: Any = None
        last_p: Any = None
        inner: dict[Any, tuple[list[Any], list[int]]] = {}
        for v, t, ws, p in bundle:
            cls = v.__class__
            form = value_forms.get(cls)
            if form is None:
                if cls is tuple and len(v) == 2:
                    form = pair_forms.get((v[0].__class__, v[1].__class__))
                if form is None:
                    if cls is ArrowRows:
                        self._run_rows(v, t, ws, p)
                        continue
                    form = form_of(v)
            if ws is not last_ws or p is not last_p:
                last_ws, last_p = ws, p
                inner = groups.get((ws, p))  # type: ignore[assignment]
                if inner is None:
                    inner = groups[(ws, p)] = {}
            key = (t, form) if by_time else form
            group = inner.get(key)
            if group is None:
                group = inner[key] = ([], [])
            group[0].append(v)
            group[1].append(t)
        for (ws, p), inner in groups.items():
            for key, (values, times) in inner.items():
                t, form = key if by_time else (times[0], key)
                self._run(self._encode(form, values, times), form, t, ws, p)

    def _form_of(self, v: Any) -> tuple[Any, ...]:
        """The form of an element (which columns it makes, and their Python types when inferred)."""
        cls = v.__class__
        typed = self.schema is None
        if issubclass(cls, dict):
            return (_DICT, tuple(v), tuple(map(type, v.values())) if typed else None)
        if issubclass(cls, tuple):
            fields = getattr(cls, "_fields", None)
            if isinstance(fields, tuple):
                return (_NAMED, cls, tuple(map(type, v)) if typed else None)
            if len(v) != 2:
                self._bad_element(v)
            classes = (v[0].__class__, v[1].__class__)
            form: tuple[Any, ...] = (_PAIR, *classes) if typed else (_PAIR, None, None)
            if cls is tuple:
                self._pair_forms[classes] = form
            return form
        form = self._value_forms[cls] = (_VALUE, cls if typed else None)
        return form

    def _bad_element(self, v: Any) -> NoReturn:
        raise PipelineExecutionError(
            self.label,
            f"{self.fn_name} takes dicts, NamedTuples, (key, value) pairs or single values; got the "
            f"{len(v)}-tuple {describe_element(v)} (make it a dict or a NamedTuple to name its columns)",
        )

    # -- elements to a batch ----------------------------------------------------------------
    def _encode(self, form: tuple[Any, ...], values: list[Any], times: list[int]) -> pa.RecordBatch:
        kind = form[0]
        if kind is _VALUE:
            names, columns = list(_VALUE_NAMES), [values]
        elif kind is _PAIR:
            names, columns = list(_PAIR_NAMES), [[kv[0] for kv in values], [kv[1] for kv in values]]
        elif kind is _DICT:
            names = list(form[1])
            bad = [k for k in names if not isinstance(k, str)]
            if bad:
                raise PipelineExecutionError(
                    self.label,
                    f"{self.fn_name} needs dict elements with string keys (they name the columns); got the key "
                    f"{bad[0]!r} in {describe_element(values[0])}",
                )
            columns = [[d[k] for d in values] for k in names]
        else:
            names = list(form[1]._fields)
            columns = [[row[i] for row in values] for i in range(len(names))]
        schema = self.schema
        types: list[Any] = [None] * len(names)
        if schema is not None:
            if schema.names != names:
                raise PipelineExecutionError(
                    self.label,
                    f"batch_schema has the columns {schema.names} but elements like {describe_element(values[0])} "
                    f"make the columns {names}",
                )
            types = list(schema.types)
        arrays = []
        for name, column, type_ in zip(names, columns, types):
            try:
                arrays.append(pa.array(column, type=type_))
            except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
                raise PipelineExecutionError(
                    self.label,
                    f"cannot make the Arrow column {name!r} for {self.fn_name} from elements like "
                    f"{describe_element(values[0])}: {exc}",
                ) from exc
        if self.timestamp_column is not None:
            self._check_free(names, values[0])
            names.append(self.timestamp_column)
            arrays.append(pa.array(np.asarray(times, dtype=np.int64), type=TIMESTAMP_TYPE))
        if schema is not None:
            fields = list(schema)
            if self.timestamp_column is not None:
                fields.append(pa.field(self.timestamp_column, TIMESTAMP_TYPE))
            return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, metadata=schema.metadata))
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def _check_free(self, names: list[str], example: Any) -> None:
        if self.timestamp_column in names:
            raise PipelineExecutionError(
                self.label,
                f"batch_timestamp_column {self.timestamp_column!r} is also a column of the elements (like "
                f"{describe_element(example)}); pick another name for it",
            )

    def _run_rows(self, rows: ArrowRows, t: int, ws: Any, p: Any) -> None:
        """Rows that arrived as Arrow columns: (key, value) pairs or dicts, already typed."""
        batch = rows.batch
        if self.timestamp_column is not None:
            self._check_free(batch.schema.names, rows)
            batch = batch.append_column(
                pa.field(self.timestamp_column, TIMESTAMP_TYPE),
                pa.array(rows.timestamps_us, type=TIMESTAMP_TYPE),
            )
        if rows.kind == "dict":
            form: tuple[Any, ...] = (_DICT, tuple(rows.batch.schema.names), None)
        elif rows.kind == "value":
            form = (_VALUE, None)
        else:
            form = (_PAIR, None, None)
        self._run(batch, form, t, ws, p)

    # -- calling process_batch --------------------------------------------------------------
    def _run(self, batch: pa.RecordBatch, form: tuple[Any, ...], t: int, ws: Any, p: Any) -> None:
        invoker = self.invoker
        explode = self.explode
        try:
            for w in ws if explode else (None,):
                wtuple = (w,) if explode else ws
                if invoker.has_side_inputs:
                    args, kwargs = invoker._resolve_side_inputs(w)
                else:
                    args, kwargs = invoker.args, invoker.kwargs
                if self.params:
                    kwargs = dict(kwargs)
                    for name, param in self.params:
                        kind = param.kind
                        if kind == "WindowParam":
                            kwargs[name] = w
                        elif kind == "TimestampParam":
                            kwargs[name] = Timestamp.from_micros(t)
                        else:
                            kwargs[name] = p
                result = self.process_batch(batch, *args, **kwargs)
                self._emit(result, form, t, wtuple, p)
        except Exception as exc:
            invoker._fail(self.process_batch, exc, batch)

    def _emit(self, result: Any, form: tuple[Any, ...], t: int, ws: Any, p: Any) -> None:
        if result is None:
            return
        if isinstance(result, (pa.RecordBatch, pa.Table)):
            raise PipelineExecutionError(
                self.label,
                f"{self.fn_name} returned a single {type(result).__name__}; it must return an iterable of "
                "RecordBatches (or Tables): yield the batch, or return [batch]",
            )
        try:
            outputs: Iterable[Any] = iter(result)
        except TypeError:
            raise PipelineExecutionError(
                self.label,
                f"{self.fn_name} must return or yield pyarrow RecordBatches (or Tables); it returned "
                f"{type(result).__name__} {describe_element(result)}",
            ) from None
        main_tag = self.invoker.main_tag
        for out in outputs:
            tag = main_tag
            if out.__class__ is TaggedOutput:
                tag, out = out.tag, out.value
            if isinstance(out, pa.RecordBatch):
                batches: Iterable[pa.RecordBatch] = (out,)
            elif isinstance(out, pa.Table):
                batches = out.to_batches()
            else:
                raise PipelineExecutionError(
                    self.label,
                    f"{self.fn_name} must yield pyarrow RecordBatches (or Tables); it yielded "
                    f"{type(out).__name__} {describe_element(out)}",
                )
            target = self.invoker._output_list(tag)
            for b in batches:
                if b.num_rows:
                    self._decode(b, form, t, ws, p, target)

    # -- a batch back to elements -----------------------------------------------------------
    def _decode(self, batch: pa.RecordBatch, form: tuple[Any, ...], t: int, ws: Any, p: Any, target: list[Any]) -> None:
        names = batch.schema.names
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise PipelineExecutionError(
                self.label, f"{self.fn_name} yielded a batch with the column name {dup[0]!r} more than once: {names}"
            )
        stamps: list[int] | None = None
        if self.timestamp_column is not None:
            stamps = self._timestamps(batch, ws)
            batch = batch.drop_columns([self.timestamp_column])
            names = batch.schema.names
        rows = self._rows(batch, names, form)
        if stamps is None:
            target.extend([(r, t, ws, p) for r in rows])
        else:
            target.extend([(r, s, ws, p) for r, s in zip(rows, stamps)])

    def _rows(self, batch: pa.RecordBatch, names: list[str], form: tuple[Any, ...]) -> list[Any]:
        kind = form[0]
        if kind is _NAMED:
            cls = form[1]
            if names == list(cls._fields) and names:
                return [cls._make(r) for r in zip(*(c.to_pylist() for c in batch.columns))]
        elif kind is not _DICT:
            if names == _VALUE_NAMES:
                return batch.column(0).to_pylist()  # type: ignore[no-any-return]
            if names == _PAIR_NAMES:
                return list(zip(batch.column(0).to_pylist(), batch.column(1).to_pylist()))
        if not names:
            return [{} for _ in range(batch.num_rows)]
        return pa.StructArray.from_arrays(batch.columns, names).to_pylist()  # type: ignore[no-any-return]

    def _timestamps(self, batch: pa.RecordBatch, ws: Any) -> list[int]:
        """Each output row's timestamp (µs) from the timestamp column, checked against the windows."""
        column_name = self.timestamp_column
        index = batch.schema.get_field_index(column_name)
        if index < 0:
            raise PipelineExecutionError(
                self.label,
                f"{self.fn_name} yielded a batch without the timestamp column {column_name!r} (columns: "
                f"{batch.schema.names}); with batch_timestamp_column set, every output batch carries it",
            )
        column = batch.column(index)
        if not pa.types.is_timestamp(column.type):
            raise PipelineExecutionError(
                self.label,
                f"the timestamp column {column_name!r} of a batch from {self.fn_name} has the type "
                f"{column.type}; it must be an Arrow timestamp (such as {TIMESTAMP_TYPE})",
            )
        if column.null_count:
            raise PipelineExecutionError(
                self.label, f"the timestamp column {column_name!r} of a batch from {self.fn_name} has nulls"
            )
        micros = column.cast(pa.timestamp("us", tz=column.type.tz)).cast(pa.int64()).to_numpy()
        low, high = MIN_TIMESTAMP_US, None
        for w in ws:
            if isinstance(w, IntervalWindow):
                low = max(low, w[0])
            top = w.max_timestamp_us
            high = top if high is None else min(high, top)
        first, last = int(micros.min()), int(micros.max())
        if first < low or (high is not None and last > high):
            bad = first if first < low else last
            raise PipelineExecutionError(
                self.label,
                f"{self.fn_name} gave a row the timestamp {Timestamp.from_micros(bad)!r}, outside its batch's "
                f"window {ws[0] if len(ws) == 1 else ws!r}: output rows keep their batch's windows (re-window "
                "them after this step with WindowInto)",
            )
        return micros.tolist()  # type: ignore[no-any-return]
