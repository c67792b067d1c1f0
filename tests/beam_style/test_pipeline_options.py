"""PipelineOptions as Beam defines it: flags, views, unknown flags, and the runner a Pipeline gets."""

from __future__ import annotations

import copy
import pickle

import pytest

import tidal as td
from tidal.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TypeOptions,
)
from tidal.options.value_provider import RuntimeValueProvider, StaticValueProvider


class JobOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--input", default="in.txt")
        parser.add_argument("--limit", type=int, default=10)
        parser.add_value_provider_argument("--table", default="t0")


def test_flags_are_parsed_by_every_options_class_and_views_share_values() -> None:
    options = PipelineOptions(["--input=a.txt", "--limit", "3", "--runner", "ray", "--streaming"])
    job = options.view_as(JobOptions)
    assert (job.input, job.limit) == ("a.txt", 3)
    standard = options.view_as(StandardOptions)
    assert (standard.runner, standard.streaming) == ("ray", True)
    job.limit = 7  # a value set through one view is seen through every other
    assert options.view_as(JobOptions).limit == 7
    assert options.get_all_options()["limit"] == 7


def test_unknown_flags_are_kept_as_beam_keeps_them() -> None:
    options = PipelineOptions(["--project", "p1", "--temp_location=gs://b/t", "--dry_run", "--input=x"])
    everything = options.get_all_options(retain_unknown_options=True)
    assert (everything["project"], everything["temp_location"], everything["dry_run"]) == ("p1", "gs://b/t", True)
    assert "project" not in options.get_all_options()
    assert options.view_as(JobOptions).input == "x"


def test_two_options_classes_may_define_the_same_flag() -> None:
    class OtherJobOptions(PipelineOptions):
        @classmethod
        def _add_argparse_args(cls, parser):  # type: ignore[no-untyped-def]
            parser.add_argument("--input", default="other.txt")
            parser.add_argument("--other_required", required=True)

    # Another job's options class (with a flag it requires) lives in the same process.
    options = PipelineOptions(["--input=x.txt", "--project=p"])
    assert options.view_as(JobOptions).input == "x.txt"
    everything = options.get_all_options(retain_unknown_options=True)
    assert (everything["input"], everything["project"], everything["other_required"]) == ("x.txt", "p", None)
    assert PipelineOptions(["--input=y", "--other_required=1"]).view_as(OtherJobOptions).input == "y"


def test_kwargs_from_dictionary_and_drop_default() -> None:
    options = PipelineOptions([], limit=5)
    assert options.view_as(JobOptions).limit == 5
    from_dict = PipelineOptions.from_dictionary({"runner": "microbatch", "streaming": True, "limit": 2})
    assert from_dict.view_as(StandardOptions).runner == "microbatch"
    assert from_dict.view_as(JobOptions).limit == 2
    changed = PipelineOptions(["--limit=4"]).get_all_options(drop_default=True)
    assert changed["limit"] == 4
    assert sorted(changed) == ["limit", "table"]  # as in Beam, a templated option is never dropped


def test_value_providers() -> None:
    given = PipelineOptions(["--table=t9"]).view_as(JobOptions).table
    assert isinstance(given, StaticValueProvider) and given.get() == "t9"
    default = PipelineOptions([]).view_as(JobOptions).table
    assert isinstance(default, RuntimeValueProvider) and default.get() == "t0"


def test_options_beam_defines_for_its_services_are_accepted() -> None:
    options = PipelineOptions([
        "--save_main_session", "--requirements_file=r.txt", "--direct_num_workers=4",
        "--direct_running_mode=multi_processing", "--experiments=a,b=2", "--no_pipeline_type_check",
    ])
    assert options.view_as(SetupOptions).save_main_session is True
    assert options.view_as(SetupOptions).requirements_file == "r.txt"
    assert options.view_as(DirectOptions).direct_num_workers == 4
    assert options.view_as(DebugOptions).lookup_experiment("b") == "2"
    assert options.view_as(TypeOptions).pipeline_type_check is False


def test_options_copy_and_pickle_with_their_values() -> None:
    options = PipelineOptions(["--runner=ray"])
    options.view_as(JobOptions).limit = 1
    for clone in (copy.deepcopy(options), pickle.loads(pickle.dumps(options))):
        assert clone.view_as(StandardOptions).runner == "ray"
        assert clone.view_as(JobOptions).limit == 1


def test_bad_arguments_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="Flags must be an iterable of strings, not a single string."):
        PipelineOptions("--runner=direct")  # type: ignore[arg-type]
    with pytest.raises(AttributeError, match="'StandardOptions' object has no attribute 'nope'"):
        PipelineOptions([]).view_as(StandardOptions).nope  # noqa: B018
    with pytest.raises(TypeError, match="view_as needs a PipelineOptions subclass"):
        PipelineOptions([]).view_as(dict)  # type: ignore[type-var]


@pytest.mark.parametrize("name", ["direct", "DirectRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner",
                                  "tidal.runners.direct.direct_runner.DirectRunner", "microbatch", "MicroBatchRunner"])
def test_the_pipeline_takes_its_runner_from_the_options(name: str) -> None:
    p = td.Pipeline(options=PipelineOptions([f"--runner={name}"]))
    assert p.runner.name == ("microbatch" if "icro" in name else "direct")
    assert td.Pipeline(argv=[f"--runner={name}"]).runner.name == p.runner.name


def test_an_explicit_runner_wins_over_the_options_and_the_options_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDAL_RUNNER", "microbatch")
    assert td.Pipeline().runner.name == "microbatch"
    assert td.Pipeline(options=PipelineOptions(["--runner=direct"])).runner.name == "direct"
    assert td.Pipeline(runner="microbatch", options=PipelineOptions(["--runner=direct"])).runner.name == "microbatch"


def test_an_unknown_runner_is_an_error_listing_the_runners() -> None:
    with pytest.raises(ValueError) as err:
        td.Pipeline(options=PipelineOptions(["--runner=DataflowRunner"]))
    assert str(err.value).startswith(
        "unknown runner 'DataflowRunner'; registered runners: direct (also DirectRunner, BundleBasedDirectRunner, "
        "SwitchingDirectRunner"
    )
    assert "microbatch (also MicroBatchRunner); ray (also RayRunner)" in str(err.value)


def test_a_dict_of_options_and_argv() -> None:
    p = td.Pipeline(options={"runner": "microbatch", "limit": 3})
    assert p.runner.name == "microbatch"
    assert p.options.view_as(JobOptions).limit == 3
    with pytest.raises(ValueError, match="must be of type PipelineOptions"):
        td.Pipeline(options=["--runner=direct"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Parameter argv, if specified, must be a list"):
        td.Pipeline(argv="--runner=direct")  # type: ignore[arg-type]


def test_auto_unique_labels_and_no_wait() -> None:
    with pytest.raises(td.PipelineError, match="duplicate label 'Double'"):
        p = td.Pipeline()
        nums = p | td.Create([1])
        nums | "Double" >> td.Map(lambda x: 2 * x)
        nums | "Double" >> td.Map(lambda x: 2 * x)
    p = td.Pipeline(options=PipelineOptions(["--auto_unique_labels"]))
    nums = p | td.Create([1])
    a = nums | "Double" >> td.Map(lambda x: 2 * x)
    b = nums | "Double" >> td.Map(lambda x: 3 * x)
    assert (a.producer.full_label, b.producer.full_label) == ("Double", "Double_2")
    with td.Pipeline(options=PipelineOptions(["--no_wait_until_finish"])) as p2:
        p2 | td.Create([1])
    assert p2.result is not None
