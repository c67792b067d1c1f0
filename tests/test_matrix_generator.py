"""The matrix generator: cells computed from outcomes, declared limitations, the JSON schema,
the Markdown and HTML renderings (the HTML checked in headless Chromium), progress and the CLI."""

from __future__ import annotations

import copy
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import attrs
import pytest

import tidal as td
from tidal import trigger as tr
from tidal import window
from tidal.__main__ import main
from tidal.capability_matrix import beam_programs
from tidal.capability_matrix.case import CaseContext, CaseRegistry, CaseSkipped, ExpectedError, all_cases, case
from tidal.capability_matrix.execute import run_case
from tidal.capability_matrix.render import to_html, to_markdown, write_matrix
from tidal.capability_matrix.report import SchemaError, cell_status, validate_document
from tidal.capability_matrix.rows import ROWS
from tidal.capability_matrix.suite import run_suite
from tidal.model.strategy import WindowingStrategy
from tidal.model.trigger import DefaultTrigger, is_default_trigger
from tidal.model.window import TimestampedValue
from tidal.runners.direct import DirectRunner
from tidal.runners.microbatch import MicroBatchRunner
from tidal.runners.runner import Runner
from tidal.testing import TestStream

jsonschema = pytest.importorskip("jsonschema")


# -- deliberately limited runners ------------------------------------------------------------
class _AlteringRunner(Runner):
    """Runs on the direct runner after rewriting every PCollection's windowing strategy."""

    def alter(self, windowing: WindowingStrategy) -> WindowingStrategy:
        return windowing  # subclasses change it

    def run_pipeline(self, pipeline: td.Pipeline) -> Any:
        for pc in pipeline.graph().pcollections():
            pc.windowing = self.alter(pc.windowing)
        return DirectRunner().run_pipeline(pipeline)


class IgnoresTriggers(_AlteringRunner):
    """Every trigger is replaced by the default trigger."""

    name = "ignores-triggers"

    def alter(self, windowing: WindowingStrategy) -> WindowingStrategy:
        return attrs.evolve(windowing, trigger=DefaultTrigger())


class DropsLateData(_AlteringRunner):
    """Allowed lateness is ignored: every late element is dropped."""

    name = "drops-late-data"

    def alter(self, windowing: WindowingStrategy) -> WindowingStrategy:
        return attrs.evolve(windowing, allowed_lateness_us=0)


class _RecordingDirectRunner(DirectRunner):
    """The direct runner, keeping every pipeline it runs (a ported Beam program builds its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.pipelines: list[td.Pipeline] = []

    def run_pipeline(self, pipeline: td.Pipeline) -> td.PipelineResult:
        self.pipelines.append(pipeline)
        return super().run_pipeline(pipeline)


def _case_pipelines(c: Any) -> list[td.Pipeline]:
    if c.id.startswith("beam_source."):
        recorder = _RecordingDirectRunner()
        beam_programs.run_program(c.id.split(".", 1)[1], Path(tempfile.mkdtemp(prefix="tidal-inspect-")), runner=recorder)
        return recorder.pipelines
    p = td.Pipeline(runner="direct")
    try:
        c.build_pipeline(p, CaseContext(tempfile.mkdtemp(prefix="tidal-inspect-"), "inspect"))
    except Exception:  # bad-input cases are refused while being built
        return []
    return [p]


class RerunsFromScratch(MicroBatchRunner):
    """Takes checkpoints (a commit log) but never restores them: every run starts from the beginning."""

    name = "reruns-from-scratch"

    def run_pipeline(self, pipeline: td.Pipeline) -> Any:
        if self.commit_log is not None:
            shutil.rmtree(self.commit_log, ignore_errors=True)
        return super().run_pipeline(pipeline)


#: The rows whose cases need checkpoint/restore: a runner without it (direct) is No there.
RECOVERY_ROWS = {"Exactly-once after failure", "Incremental checkpoints"}


def _rows_whose_cases_use(uses: Callable[[WindowingStrategy], bool]) -> set[str]:
    """Rows with at least one case whose pipeline(s) have a PCollection with such a windowing."""
    rows = set()
    for c in all_cases():
        if any(uses(pc.windowing) for p in _case_pipelines(c) for pc in p.graph().pcollections()):
            rows.add(c.row)
    return rows


def _not_yes(doc: dict[str, Any], runner: str) -> dict[str, str]:
    return {c["row"]: c["status"] for c in doc["cells"] if c["runner"] == runner and c["status"] != "Yes"}


@pytest.fixture(scope="module")
def trigger_blind_doc() -> dict[str, Any]:
    return run_suite([IgnoresTriggers()], quiet=True, compare=False)


def test_a_runner_that_ignores_triggers_fails_exactly_the_trigger_rows(trigger_blind_doc: dict[str, Any]) -> None:
    expected = _rows_whose_cases_use(lambda w: not is_default_trigger(w.trigger)) | RECOVERY_ROWS
    assert {"Count triggers", "Composite triggers", "Processing-time triggers", "Accumulating"} <= expected
    not_yes = _not_yes(trigger_blind_doc, "ignores-triggers")
    assert set(not_yes) == expected
    assert set(not_yes.values()) <= {"Partially", "No"}
    assert not_yes["Composite triggers"] == "No" and not_yes["Processing-time triggers"] == "No"
    assert all(not_yes[row] == "No" for row in RECOVERY_ROWS)  # declared by its missing checkpoint support


def test_a_runner_that_drops_late_data_fails_only_rows_that_use_lateness() -> None:
    doc = run_suite([DropsLateData()], quiet=True, compare=False)
    uses_lateness = _rows_whose_cases_use(lambda w: w.allowed_lateness_us > 0)
    not_yes = set(_not_yes(doc, "drops-late-data")) - RECOVERY_ROWS
    assert "Allowed lateness" in not_yes and {"Discarding", "Accumulating", "Event-time triggers"} <= not_yes
    assert not_yes <= uses_lateness
    assert all(c["status"] == "Partially" for c in doc["cells"] if c["row"] in not_yes)


def test_the_direct_runner_passes_every_case_except_the_declared_row() -> None:
    doc = run_suite(["direct"], quiet=True, compare=False)
    assert _not_yes(doc, "direct") == {row: "No" for row in RECOVERY_ROWS}
    failing = [r for r in doc["results"] if r["outcome"] != "pass"]
    row_of = {c.id: c.row for c in all_cases()}
    assert failing and all(
        r["declared_limitation"] == {"scope": "row", "note": DirectRunner.declared_limitations[row_of[r["case"]]]} for r in failing
    )


# -- cells from outcomes, on a registry written for the test -----------------------------------
def _tiny_registry() -> CaseRegistry:
    registry = CaseRegistry()

    def grouped(stream: TestStream, trigger: Any) -> Callable[[td.Pipeline], Any]:
        def build(p: td.Pipeline) -> Any:
            windowed = p | stream | td.WindowInto(window.GlobalWindows(), trigger=trigger, accumulation_mode=tr.AccumulationMode.DISCARDING)
            return windowed | td.GroupByKey() | td.MapTuple(lambda k, vs: (k, sorted(vs)))

        build.__doc__ = "A grouped stream."
        return build

    two_steps = TestStream().add_elements([("k", 1)]).add_elements([("k", 2)]).advance_watermark_to_infinity()
    one_step = TestStream().add_elements([("k", 1), ("k", 2)]).advance_watermark_to_infinity()
    # ParDo: no trigger at all -> Yes for both runners.
    case("tiny.map", "ParDo", expected=[2], registry=registry)(_documented(lambda p: p | td.Create([1]) | td.Map(lambda x: 2 * x)))
    case("tiny.filter", "ParDo", expected=[1], registry=registry)(_documented(lambda p: p | td.Create([1, 2]) | td.Filter(lambda x: x < 2)))
    # Count triggers: one case the trigger changes, one it does not -> Partially when triggers are ignored.
    case("tiny.count_two_panes", "Count triggers", expected=[("k", [1]), ("k", [2])], registry=registry)(
        grouped(two_steps, tr.Repeatedly(tr.AfterCount(1))))
    case("tiny.count_one_pane", "Count triggers", expected=[("k", [1, 2])], registry=registry)(
        grouped(one_step, tr.Repeatedly(tr.AfterCount(1))))
    # Composite triggers: every case depends on the trigger -> No.
    case("tiny.after_any", "Composite triggers", expected=[("k", [1]), ("k", [2])], registry=registry)(
        grouped(two_steps, tr.Repeatedly(tr.AfterAny(tr.AfterCount(1), tr.AfterProcessingTime(60)))))
    # Bad input: an expected error.
    case("tiny.no_accumulation_mode", "Bad input rejected with a clear error", registry=registry,
         error=ExpectedError(td.PipelineError, "accumulation mode"))(
        _documented(lambda p: p | td.Create([1]) | td.WindowInto(window.FixedWindows(1), trigger=tr.AfterCount(1))))
    return registry


def _documented(fn: Callable[[td.Pipeline], Any]) -> Callable[[td.Pipeline], Any]:
    fn.__doc__ = "A tiny case."
    return fn


def test_cells_are_yes_partially_no_from_the_outcomes() -> None:
    cases = list(_tiny_registry())
    doc = run_suite(["direct", IgnoresTriggers()], cases=cases, quiet=True, compare=False)
    cells = {(c["runner"], c["row"]): (c["status"], c["passed"], c["total"]) for c in doc["cells"]}
    assert cells == {
        ("direct", "ParDo"): ("Yes", 2, 2),
        ("direct", "Count triggers"): ("Yes", 2, 2),
        ("direct", "Composite triggers"): ("Yes", 1, 1),
        ("direct", "Bad input rejected with a clear error"): ("Yes", 1, 1),
        ("ignores-triggers", "ParDo"): ("Yes", 2, 2),
        ("ignores-triggers", "Count triggers"): ("Partially", 1, 2),
        ("ignores-triggers", "Composite triggers"): ("No", 0, 1),
        ("ignores-triggers", "Bad input rejected with a clear error"): ("Yes", 1, 1),
    }
    failure = next(r for r in doc["results"] if r["runner"] == "ignores-triggers" and r["case"] == "tiny.count_two_panes")
    assert failure["outcome"] == "fail" and "missing" in failure["message"]
    assert doc["rows"][0]["cases"] == ["tiny.map", "tiny.filter"]  # every cell traceable to its cases
    validate_document(doc)


def test_cell_status_ignores_skipped_cases() -> None:
    assert cell_status(["pass", "skipped"]) == "Yes"
    assert cell_status(["fail", "error"]) == "No"
    assert cell_status([]) == "n/a"


# -- declared limitations -----------------------------------------------------------------------
class _Declares(IgnoresTriggers):
    name = "declares"

    def __init__(self, declared: dict[str, str]) -> None:
        self.declared_limitations = declared


def test_a_declared_limitation_is_the_note_but_never_a_pass() -> None:
    cases = list(_tiny_registry())
    runner = _Declares({"tiny.count_two_panes": "fires only at the end", "composite TRIGGERS": "not supported yet"})
    doc = run_suite([runner], cases=cases, quiet=True, compare=False)
    cells = {c["row"]: c for c in doc["cells"]}
    assert cells["Count triggers"]["status"] == "Partially"
    assert "tiny.count_two_panes: fires only at the end" in cells["Count triggers"]["note"]
    assert cells["Composite triggers"]["status"] == "No" and "not supported yet" in cells["Composite triggers"]["note"]
    result = next(r for r in doc["results"] if r["case"] == "tiny.after_any")
    assert result["outcome"] == "fail" and result["declared_limitation"] == {"scope": "row", "note": "not supported yet"}
    assert doc["stale_limitations"] == []


def test_a_declared_case_that_passes_is_reported_as_stale() -> None:
    cases = list(_tiny_registry())
    runner = _Declares({"tiny.map": "maps are broken", "ParDo": "slow", "no such thing": "?"})
    doc = run_suite([runner], cases=cases, quiet=True, compare=False)
    stale = {(s["key"], s["scope"]) for s in doc["stale_limitations"]}
    assert stale == {("tiny.map", "case"), ("ParDo", "row"), ("no such thing", "unknown")}
    assert next(c for c in doc["cells"] if c["row"] == "ParDo")["status"] == "Yes"  # the declaration changes nothing


def test_an_undeclared_failure_is_named_in_the_cell_note() -> None:
    doc = run_suite([IgnoresTriggers()], cases=list(_tiny_registry()), quiet=True, compare=False)
    note = next(c for c in doc["cells"] if c["row"] == "Count triggers")["note"]
    assert "undeclared failure: tiny.count_two_panes" in note


# -- running one case ----------------------------------------------------------------------------
def test_a_case_that_hangs_is_an_error_after_its_timeout() -> None:
    registry = CaseRegistry()

    class Sleepy(td.DoFn):
        def process(self, x: Any) -> Iterable[Any]:
            import time

            time.sleep(3)
            yield x

    @case("tiny.sleepy", "ParDo", expected=[1], registry=registry)
    def sleepy(p: td.Pipeline) -> Any:
        """Sleeps."""
        return p | td.Create([1]) | td.ParDo(Sleepy())

    result = run_case(registry.get("tiny.sleepy"), "direct", timeout_s=0.3)
    assert result.outcome == "error" and result.message == "timed out after 0.3 s"


def test_an_unexpected_error_and_a_missing_error_are_reported() -> None:
    registry = CaseRegistry()

    @case("tiny.boom", "ParDo", expected=[1], registry=registry)
    def boom(p: td.Pipeline) -> Any:
        """Raises."""
        return p | td.Create([0]) | "Boom" >> td.Map(lambda x: 1 // x)

    @case("tiny.no_error", "Bad input rejected with a clear error", error=ExpectedError(ValueError, "nope"), registry=registry)
    def no_error(p: td.Pipeline) -> Any:
        """Does not raise."""
        return p | td.Create([1])

    boom_result = run_case(registry.get("tiny.boom"), "direct")
    assert boom_result.outcome == "error" and "step 'Boom'" in boom_result.message
    missing = run_case(registry.get("tiny.no_error"), "direct")
    assert missing.outcome == "fail" and "ran without error" in missing.message


def test_a_case_that_needs_a_missing_service_is_skipped_with_its_reason() -> None:
    registry = CaseRegistry()

    @case("tiny.needs_a_broker", "ParDo", expected=[1], registry=registry)
    def needs_a_broker(p: td.Pipeline) -> Any:
        """Needs a service that is not here."""
        raise CaseSkipped("no broker here: install it with apt-get install broker")

    result = run_case(registry.get("tiny.needs_a_broker"), "direct")
    assert (result.outcome, result.message) == ("skipped", "no broker here: install it with apt-get install broker")


def test_the_redis_cases_are_skipped_where_no_redis_server_can_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import tidal.testing.redis_server as redis_server

    def unavailable() -> str:
        raise redis_server.RedisServerUnavailable("no redis-server binary is installed (install it with: apt-get install redis-server)")

    monkeypatch.setattr(redis_server, "shared_redis_url", unavailable)
    redis_cases = [c for c in all_cases() if c.row == "Redis Streams"]
    assert len(redis_cases) >= 4
    for c in redis_cases:
        result = run_case(c, "direct")
        assert result.outcome == "skipped", (c.id, result)
        assert "apt-get install redis-server" in result.message and "TIDAL_REDIS_URL" in result.message
    assert cell_status(["skipped"] * len(redis_cases)) == "n/a"  # the row shows no verdict, not a failure


def test_a_recovery_case_needs_checkpoint_restore_and_passes_with_it() -> None:
    recovery = [c for c in all_cases() if c.kind == "recovery"]
    assert len(recovery) >= 3
    lacking = run_case(recovery[0], "direct")
    assert lacking.outcome == "fail" and "checkpoint/restore" in lacking.message
    # The micro-batch runner resumes from its commit log (every case on every runner: test_conformance.py).
    for c in (c for c in recovery if c.id in ("exactly_once.keyed_state_stream", "exactly_once.timers_stream")):
        result = run_case(c, "microbatch")
        assert result.outcome == "pass", (c.id, result.message)
        match = re.fullmatch(r"1 restart\(s\), from checkpoint (\d+): the last attempt read (\d+) of the (\d+) input elements", result.message)
        assert match is not None, (c.id, result.message)
        assert 0 < int(match.group(2)) < int(match.group(3)), (c.id, result.message)


def test_a_runner_that_reruns_from_scratch_is_no_on_the_recovery_row() -> None:
    """It checkpoints and its output after the rerun is exact where duplicates fold away, but every
    recovery case sees it read its whole input again from the start."""
    recovery = [c for c in all_cases() if c.kind == "recovery"]
    doc = run_suite([RerunsFromScratch()], cases=recovery, quiet=True, compare=False)
    assert sorted((cell["row"], cell["status"], cell["passed"]) for cell in doc["cells"]) == [(row, "No", 0) for row in sorted(RECOVERY_ROWS)]
    for r in doc["results"]:
        assert r["outcome"] == "fail", r
        assert "after the failure the job restarted from the start, not from a checkpoint" in r["message"], r


# -- the document, its schema and its renderings ---------------------------------------------
@pytest.fixture(scope="module")
def direct_doc() -> dict[str, Any]:
    return run_suite(["direct"], quiet=True, compare=False)


def test_the_json_validates_against_its_schema(direct_doc: dict[str, Any], tmp_path: Path) -> None:
    paths = write_matrix(direct_doc, tmp_path)
    with open(paths["json"], encoding="utf-8") as f:
        loaded = json.load(f)
    validate_document(loaded)
    with open(Path(__file__).resolve().parent.parent / "capability_matrix" / "schema.json", encoding="utf-8") as f:
        jsonschema.Draft202012Validator.check_schema(json.load(f))
    assert {r["case"] for r in loaded["results"]} == {c.id for c in all_cases()}
    assert all(set(r) >= {"case", "runner", "outcome", "message", "duration_s"} for r in loaded["results"])
    assert loaded["tidal_version"] == td.__version__


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d["results"][0].update(outcome="passed"),
        lambda d: d["cells"][0].update(status="Maybe"),
        lambda d: d.pop("generated_at"),
        lambda d: d["runners"][0].pop("guarantee"),
    ],
)
def test_a_damaged_document_does_not_validate(direct_doc: dict[str, Any], damage: Callable[[dict[str, Any]], Any]) -> None:
    doc = copy.deepcopy(direct_doc)
    damage(doc)
    with pytest.raises(SchemaError):
        validate_document(doc)


def _exactly_once_cases() -> int:
    """How many cases the exactly-once row has (the direct runner fails them all: it has no checkpoints)."""
    from tidal.capability_matrix.case import all_cases

    return sum(1 for c in all_cases() if c.row == "Exactly-once after failure")


def test_the_markdown_has_every_row_and_the_comparison(direct_doc: dict[str, Any]) -> None:
    text = to_markdown(direct_doc)
    for row in ROWS:
        assert f"| {row.name} |" in text
    assert f"✕ No (0/{_exactly_once_cases()})" in text and "✓ Yes" in text
    assert "## System comparison" in text and DirectRunner.execution_model in text
    assert f"tidal {td.__version__}" in text


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def test_the_html_opens_in_headless_chromium_and_shows_the_rows(direct_doc: dict[str, Any], tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian package 'chromium'; make test installs it)")
    page = write_matrix(direct_doc, tmp_path / "out")["html"]
    proc = subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", Path(page).resolve().as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert '<table id="matrix">' in dom and '<table id="comparison">' in dom
    for row in ROWS:
        assert f">{row.name}</th>" in dom.replace("&amp;", "&"), row.name
    assert dom.count('class="yes"') == len(ROWS) - len(RECOVERY_ROWS) and dom.count('class="no"') == len(RECOVERY_ROWS)
    assert "exactly_once.windowed_sums_stream" in dom and f"tidal {td.__version__}" in dom


def test_the_html_is_self_contained(direct_doc: dict[str, Any]) -> None:
    page = to_html(direct_doc)
    assert "<script" not in page and "http://" not in page and "<link" not in page
    assert "<details>" in page and "title=" in page


# -- progress and the command line -----------------------------------------------------------
def test_the_progress_bar_finishes_full_and_one_switch_silences_it(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = list(_tiny_registry())
    monkeypatch.delenv("TIDAL_NO_PROGRESS", raising=False)
    stream = io.StringIO()
    run_suite(["direct"], cases=cases, stream=stream, compare=False)
    last = stream.getvalue().split("\r")[-1]
    assert f"{len(cases) + 1}/{len(cases) + 1}" in last and "100%" in last
    quiet = io.StringIO()
    run_suite(["direct"], cases=cases, stream=quiet, quiet=True, compare=False)
    monkeypatch.setenv("TIDAL_NO_PROGRESS", "1")
    run_suite(["direct"], cases=cases, stream=quiet, compare=False)
    assert quiet.getvalue() == ""


def test_the_matrix_command_writes_the_three_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "matrix"
    code = main(["matrix", "--runners", "direct", "--out", str(out), "--quiet", "--no-comparison", "--cases", "pardo,exactly_once"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "direct" in printed and f"✕ Exactly-once after failure (0/{_exactly_once_cases()})" in printed and str(out) in printed
    assert sorted(os.listdir(out)) == ["capability_matrix.html", "capability_matrix.json", "capability_matrix.md"]
    doc = json.loads((out / "capability_matrix.json").read_text(encoding="utf-8"))
    assert {c["row"] for c in doc["cells"]} == {"ParDo", "Exactly-once after failure"}


def test_the_matrix_command_refuses_an_unknown_runner(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", "--runners", "direct,warp", "--quiet"]) == 2
    assert "unknown runner(s) warp" in capsys.readouterr().err


def test_strict_fails_on_an_undeclared_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tidal.runners import registry

    monkeypatch.setattr(registry, "_FACTORIES", {**registry._FACTORIES, "blind": IgnoresTriggers})
    args = ["matrix", "--runners", "blind", "--out", str(tmp_path), "--quiet", "--no-comparison", "--cases", "count"]
    assert main(args) == 0
    assert main([*args, "--strict"]) == 1


def test_timestamps_of_stream_elements_survive_in_the_matrix_cases() -> None:
    # A sanity check of the recording sink: what it records is what the pipeline emitted.
    registry = CaseRegistry()

    @case("tiny.stamped", "TestStream", observe=("value", "timestamp"), expected=[("a", td.Timestamp(1.5))], registry=registry)
    def stamped(p: td.Pipeline) -> Any:
        """A stamped element."""
        return p | TestStream().add_elements([TimestampedValue("a", 1.5)]).advance_watermark_to_infinity()

    assert run_case(registry.get("tiny.stamped"), "direct").passed
