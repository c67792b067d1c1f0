"""Cases for the state layer: keyed state on the disk backend, and incremental checkpoints."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterable

import tidal as td
from tidal import window
from tidal.capability_matrix.case import CHECKPOINT_RESTORE, W, CaseContext, case, on_time
from tidal.capability_matrix.cases.beyond import _stepped_input, _ValueAtLeast
from tidal.model.options import StateOptions
from tidal.model.window import TimestampedValue as TV

#: Keys of the state-larger-than-memory cases; the cache holds two, so nearly all state is on disk.
_KEYS = 40


def _on_disk(p: td.Pipeline, ctx: CaseContext, cache_entries: int = 2) -> None:
    """Keep the pipeline's keyed state in the disk backend, with a cache of ``cache_entries`` per step."""
    options = p.options.view_as(StateOptions)
    options.state_backend = "disk"
    options.state_dir = str(ctx.workdir / "state")
    options.state_cache_entries = cache_entries


class _Tally(td.DoFn):
    """Counts each key's elements in value state and keeps them in bag state; at the third, their sum."""

    COUNT = td.ReadModifyWriteStateSpec("count")
    SEEN = td.BagStateSpec("seen")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT), seen: Any = td.DoFn.StateParam(SEEN)) -> Iterable[Any]:
        n = (count.read() or 0) + 1
        count.write(n)
        seen.add(kv[1])
        yield kv[0], n, sum(seen.read()) if n == 3 else None


def _tallies() -> list[Any]:
    out: list[Any] = []
    for k in range(_KEYS):
        out += [(f"k{k}", 1, None), (f"k{k}", 2, None), (f"k{k}", 3, k + (k + _KEYS) + (k + 2 * _KEYS))]
    return out


@case("state.disk_backend_stateful_dofn", "State larger than memory", expected=_tallies())
def disk_stateful(p: td.Pipeline, ctx: CaseContext) -> Any:
    """With state_backend=disk and a cache of two entries, a stateful DoFn over 40 keys keeps value and
    bag state on disk: every key counts its three elements and sums them exactly."""
    _on_disk(p, ctx)
    return p | td.Create([(f"k{i % _KEYS}", i) for i in range(3 * _KEYS)]) | td.ParDo(_Tally())


def _window_sums() -> list[Any]:
    sums: dict[tuple[str, int], int] = {}
    for i in range(3 * _KEYS):
        key = (f"k{i % _KEYS}", (i // _KEYS) * 10)
        sums[key] = sums.get(key, 0) + i
    return [((k, total), W(start, start + 10), on_time(0, last=True)) for (k, start), total in sums.items()]


@case("state.disk_backend_windows", "State larger than memory", observe=("value", "window", "pane"), expected=_window_sums())
def disk_windows(p: td.Pipeline, ctx: CaseContext) -> Any:
    """With state_backend=disk and a cache of two entries, the window accumulators of CombinePerKey over
    40 keys and three windows live on disk: every pane is exact, on time and the only one."""
    _on_disk(p, ctx)
    events = p | td.Create([TV((f"k{i % _KEYS}", i), (i // _KEYS) * 10 + 1) for i in range(3 * _KEYS)])
    return events | td.WindowInto(window.FixedWindows(10)) | td.CombinePerKey(sum)


class _NumberPerKey(td.DoFn):
    """Numbers each key's elements; each takes a moment, so a runner checkpointing by time (Ray: each
    second) takes several checkpoints per attempt and the later ones are incremental."""

    COUNT = td.ReadModifyWriteStateSpec("count")

    def process(self, kv: Any, count: Any = td.DoFn.StateParam(COUNT)) -> Iterable[Any]:
        time.sleep(0.15)
        n = (count.read() or 0) + 1
        count.write(n)
        yield kv[0], n, kv[1]


def _incremental_seen(ctx: CaseContext) -> bool:
    """Whether a checkpoint now in the case's folder is incremental (a part names the ones it needs)."""
    for path in ctx.checkpoint_dir.glob("**/chk-*/MANIFEST.json"):
        try:
            manifest = json.loads(path.read_bytes())
        except (OSError, ValueError):  # removed by retention, or being replaced, while read
            continue
        if any(isinstance(entry, dict) and entry.get("needs") for entry in manifest.get("parts", {}).values()):
            return True
    return False


def _drive_incremental(p: td.Pipeline, ctx: CaseContext) -> Any:
    """Run the attempt while watching the checkpoints (retention removes old ones); the last attempt
    reports a problem when no attempt ever had an incremental checkpoint."""
    seen = ctx.workdir / "incremental-checkpoint-seen"
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set() and not seen.exists():
            if _incremental_seen(ctx):
                seen.touch()
            stop.wait(0.02)

    watcher = threading.Thread(target=watch, name="tidal-case-watch", daemon=True)
    watcher.start()
    try:
        result = p.run()
        result.wait_until_finish(120)
    finally:
        stop.set()
        watcher.join()
    if not seen.exists() and not _incremental_seen(ctx):
        ctx.report_problem("no checkpoint the job took was incremental (none named the earlier ones it needs)")
    return result


@case("state.incremental_checkpoints_restore", "Incremental checkpoints",
      expected=[(f"k{v % 2}", v // 2 + 1, v) for v in range(24)], requires=(CHECKPOINT_RESTORE,),
      idempotent_key=lambda r: (r[0], r[1]), drive=_drive_incremental)
def incremental_restore(p: td.Pipeline, ctx: CaseContext) -> Any:
    """On the disk backend each checkpoint after a full one holds only the keys that changed and names the
    checkpoints it builds on; a crash after a checkpoint restores by folding that chain, and each key
    numbers its elements 1, 2, 3... with no gap or repeat."""
    _on_disk(p, ctx)
    crash = ctx.fail_after_checkpoint(_ValueAtLeast(9))
    return _stepped_input(p, ctx) | "Crash" >> td.ParDo(crash) | td.ParDo(_NumberPerKey())
