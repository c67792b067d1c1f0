"""Queryable state: read a running job's per-user counters from outside it, then its checkpoint.

A paced stream of page views (user, page) runs on the micro-batch runner,
which commits its state after every batch to a commit log. A stateful DoFn
keeps, per user, the number of views (a value state) and the pages seen (a
set state). While the stream runs, this script asks the job for a few users'
counters with ``result.query_state``; the job answers between batches, so
each answer is a value the state really held, and a user's count never goes
back. After the job has finished, ``tidal.state.read_checkpoint`` reads the
same state from the last commit as a table (``python -m tidal state DIR``
does it from the shell).

    python examples/queryable_state.py [--runner microbatch|direct]
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from typing import Any, Iterable, Iterator

import tidal as td
from tidal.runners.microbatch import MicroBatchRunner
from tidal.state import JobFinishedError, read_checkpoint

USERS = ["ana", "bo", "cy", "di"]
PAGES = ["home", "docs", "pricing", "blog", "jobs"]
VIEWS = 400


#: Of every ten views, ana has four, bo three, cy two and di one.
WHO = [0, 1, 2, 3, 0, 1, 2, 0, 1, 0]


def page_views() -> Iterator[tuple[str, str]]:
    """VIEWS (user, page) views, a few milliseconds apart; user u visits pages u .. u + 1 + u % 3."""
    for i in range(VIEWS):
        if i % 20 == 0:
            time.sleep(0.02)
        u = WHO[i % 10]
        yield USERS[u], PAGES[(u + (i // 10) % (2 + u % 3)) % len(PAGES)]


class CountViews(td.DoFn):
    """Per user: how many views (value state) and which pages (set state)."""

    VIEWS = td.ReadModifyWriteStateSpec("views")
    PAGES = td.SetStateSpec("pages")

    def process(self, view: tuple[str, str], views: Any = td.DoFn.StateParam(VIEWS),
                pages: Any = td.DoFn.StateParam(PAGES)) -> Iterable[tuple[str, int]]:
        user, page = view
        n = (views.read() or 0) + 1
        views.write(n)
        pages.add(page)
        yield user, n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runner", choices=["microbatch", "direct"], default="microbatch")
    args = parser.parse_args(argv)
    commits = tempfile.mkdtemp(prefix="tidal-queryable-")
    runner: Any = MicroBatchRunner(batch_interval=0.05, commit_log=commits) if args.runner == "microbatch" else "direct"
    p = td.Pipeline(runner=runner)
    _ = p | "Views" >> td.Read(td.GeneratorSource(page_views)) | "CountViews" >> td.ParDo(CountViews())
    result = p.run()
    print(f"While the job runs ({args.runner} runner), the views per user it holds:")
    seen: dict[str, list[int]] = {user: [] for user in USERS}
    while result.state is td.PipelineState.RUNNING:
        try:
            counts = {user: result.query_state("CountViews", "views", user) or 0 for user in USERS}
        except JobFinishedError:
            break  # it finished between the check and the query
        for user, n in counts.items():
            seen[user].append(n)
        if counts["ana"] < VIEWS * 4 // 10:
            print("  " + ", ".join(f"{user} {n}" for user, n in counts.items()))
        time.sleep(0.1)
    result.wait_until_finish()
    never_back = all(a <= b for reads in seen.values() for a, b in zip(reads, reads[1:]))
    print(f"queries answered: {sum(map(len, seen.values()))}; every user's count only went up: {'yes' if never_back else 'NO'}")
    if args.runner == "microbatch":
        table = read_checkpoint(commits, step="CountViews")
        print(f"\nAfter the job, its last commit (python -m tidal state {commits} --step CountViews):")
        values = [pickle.loads(v) for v in table.column("value_pickle").to_pylist()]
        rows = sorted(zip(table.column("key").to_pylist(), table.column("state").to_pylist(), values))
        for key, state, value in rows:
            print(f"  {key:<4} {state:<6} {sorted(value) if isinstance(value, set) else value}")


if __name__ == "__main__":
    main()
