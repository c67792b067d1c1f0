"""The pipeline model: applying transforms, labels, composites, the graph and running."""

from __future__ import annotations

from typing import Any

import pytest

import tidal as td
from tidal.model.primitives import GroupByKey, ParDo, Read
from tidal.model.pvalue import DoOutputsTuple
from tidal.runners.direct import DirectRunner
from tidal.runners.runner import Runner
from tidal.testing import assert_that, equal_to, is_empty


def double(x: int) -> int:
    return 2 * x


class SquareThenSum(td.PTransform):
    """A composite: square every element, then sum them globally."""

    def expand(self, pcoll: td.PCollection[int]) -> td.PCollection[int]:
        return pcoll | "Square" >> td.Map(lambda x: x * x) | "Sum" >> td.CombineGlobally(sum)


def labels(p: td.Pipeline) -> list[str]:
    return [node.full_label for node in p.graph().primitives]


# -- applying transforms ------------------------------------------------------------
def test_pipe_applies_transforms_in_order() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([1, 2, 3]) | td.Map(double) | td.Map(lambda x: x + 1)
        assert isinstance(out, td.PCollection)
        assert_that(out, equal_to([3, 5, 7]))


def test_label_rshift_names_the_step() -> None:
    p = td.Pipeline()
    nums = p | "Numbers" >> td.Create([1, 2])
    doubled = nums | "Double" >> td.Map(double)
    assert nums.producer is not None and nums.producer.full_label == "Numbers/Read(Create)"
    assert doubled.producer is not None and doubled.producer.full_label == "Double"
    assert labels(p) == ["Numbers/Read(Create)", "Double"]


def test_default_labels_come_from_the_function_name() -> None:
    p = td.Pipeline()
    _ = p | td.Create([1]) | td.Map(double) | td.FlatMap(str.split) | td.Filter(bool)
    assert labels(p) == ["Create/Read(Create)", "Map(double)", "FlatMap(split)", "Filter(bool)"]


def test_lambdas_on_different_lines_get_different_default_labels() -> None:
    p = td.Pipeline()
    nums = p | td.Create([1])
    nums | td.Map(lambda x: x)
    nums | td.Map(lambda x: x + 1)
    first, second = labels(p)[1:]
    assert first != second
    assert first.startswith("Map(<lambda") and second.startswith("Map(<lambda")


def test_chained_transforms_apply_as_one_composite() -> None:
    with td.Pipeline() as p:
        both = td.Map(double) | td.Map(lambda x: x + 1)
        out = p | td.Create([1, 2]) | "Both" >> both
        assert_that(out, equal_to([3, 5]))
    assert "Both/Map(double)" in labels(p)


def test_composite_transform_expands_into_primitives_under_its_label() -> None:
    p = td.Pipeline()
    out = p | td.Create([1, 2, 3]) | "SquareSum" >> SquareThenSum()
    assert_that(out, equal_to([14]))
    graph_labels = labels(p)
    assert "SquareSum/Square" in graph_labels
    assert "SquareSum/Sum/KeyWithVoid" in graph_labels
    assert "SquareSum/Sum/CombinePerKey" in graph_labels
    # The composite itself is not a primitive, but it is in the tree of applied transforms.
    composite = next(n for n in p.graph().root.parts if n.full_label == "SquareSum")
    assert not composite.is_primitive
    assert {part.full_label for part in composite.parts} == {"SquareSum/Square", "SquareSum/Sum"}
    assert p.run().state is td.PipelineState.DONE


def test_composite_default_label_is_the_class_name() -> None:
    p = td.Pipeline()
    _ = p | td.Create([1]) | SquareThenSum()
    assert "SquareThenSum/Square" in labels(p)


def test_ptransform_fn_builds_a_composite() -> None:
    @td.ptransform_fn
    def AddN(pcoll: Any, n: int) -> Any:
        return pcoll | "Add" >> td.Map(lambda x: x + n)

    with td.Pipeline() as p:
        assert_that(p | td.Create([1, 2]) | AddN(10), equal_to([11, 12]))
    assert "AddN/Add" in labels(p)


def test_same_transform_object_can_be_applied_twice_under_different_labels() -> None:
    mapper = td.Map(double)
    with td.Pipeline() as p:
        nums = p | td.Create([1])
        assert_that(nums | "A" >> mapper, equal_to([2]), label="check A")
        assert_that(nums | "B" >> mapper, equal_to([2]), label="check B")


# -- labels must be unique ----------------------------------------------------------
def test_duplicate_label_is_a_pipeline_error_naming_the_label() -> None:
    p = td.Pipeline()
    nums = p | td.Create([1])
    nums | "Twice" >> td.Map(double)
    with pytest.raises(td.PipelineError, match=r"duplicate label 'Twice'"):
        nums | "Twice" >> td.Map(double)


def test_duplicate_default_label_is_an_error_that_suggests_a_name() -> None:
    p = td.Pipeline()
    nums = p | td.Create([1])
    nums | td.Map(double)
    with pytest.raises(td.PipelineError) as info:
        nums | td.Map(double)
    assert "'Map(double)'" in str(info.value)
    assert "'another label' >> Map(double)" in str(info.value)


def test_same_label_in_different_composites_is_fine() -> None:
    with td.Pipeline() as p:
        a = p | "A" >> td.Create([1]) | "X" >> SquareThenSum()
        b = p | "B" >> td.Create([2]) | "Y" >> SquareThenSum()
        assert_that(a, equal_to([1]), label="check a")
        assert_that(b, equal_to([4]), label="check b")
    assert "X/Square" in labels(p) and "Y/Square" in labels(p)


def test_a_failed_apply_leaves_the_pipeline_unchanged() -> None:
    import threading

    lock = threading.Lock()

    class HalfBuilt(td.PTransform):
        def expand(self, pcoll: Any) -> Any:
            doubled = pcoll | "Double" >> td.Map(double)
            return doubled | "Locked" >> td.Map(lambda x: (x, lock))

    p = td.Pipeline()
    nums = p | "Nums" >> td.Create([1, 2])
    before = labels(p)
    with pytest.raises(td.PipelineError, match="step 'Step/Locked'"):
        nums | "Step" >> HalfBuilt()
    assert labels(p) == before
    assert [n.full_label for n in p.graph().root.parts] == ["Nums"]
    # The label is free again: the fixed transform applies under it.
    assert_that(nums | "Step" >> SquareThenSum(), equal_to([5]))
    assert p.run().state is td.PipelineState.DONE


# -- PCollections belong to one pipeline --------------------------------------------
def test_pcollection_of_another_pipeline_in_apply_names_the_step() -> None:
    p1, p2 = td.Pipeline(), td.Pipeline()
    nums = p1 | "Nums" >> td.Create([1])
    with pytest.raises(td.PipelineError) as info:
        p2.apply(td.Map(double), nums, label="Foreign")
    message = str(info.value)
    assert "step 'Foreign'" in message
    assert "'Nums/Read(Create)'" in message
    assert "different pipeline" in message


def test_pcollection_of_another_pipeline_in_flatten_names_the_step() -> None:
    p1, p2 = td.Pipeline(), td.Pipeline()
    a = p1 | "A" >> td.Create([1])
    b = p2 | "B" >> td.Create([2])
    with pytest.raises(td.PipelineError, match=r"step 'Merge': input 'B/Read\(Create\)' belongs to a different pipeline"):
        (a, b) | "Merge" >> td.Flatten()


def test_side_input_of_another_pipeline_names_the_step() -> None:
    p1, p2 = td.Pipeline(), td.Pipeline()
    side = p1 | "Side" >> td.Create([1])
    main = p2 | "Main" >> td.Create([1])
    with pytest.raises(td.PipelineError, match=r"step 'UseSide': side input 'Side/Read\(Create\)' belongs to a different pipeline"):
        main | "UseSide" >> td.Map(lambda x, s: x, td.AsList(side))


def test_pcollection_cannot_be_pickled_into_a_function() -> None:
    p = td.Pipeline()
    nums = p | "Nums" >> td.Create([1])
    with pytest.raises(td.PipelineError, match=r"step 'Capture'.*PCollection 'Nums/Read\(Create\)' cannot be pickled"):
        nums | "Capture" >> td.Map(lambda x: (x, nums))


# -- running ------------------------------------------------------------------------
def test_context_manager_runs_the_pipeline_on_exit() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([1, 2]) | td.Map(double), equal_to([2, 4]))
        assert p.result is None
    assert p.result is not None
    assert p.result.state is td.PipelineState.DONE


def test_context_manager_does_not_run_when_the_block_raises() -> None:
    with pytest.raises(KeyError):
        with td.Pipeline() as p:
            assert_that(p | td.Create([1]), equal_to([999]))  # would fail if it ran
            raise KeyError("stop")
    assert p.result is None


def test_run_returns_a_done_result() -> None:
    p = td.Pipeline()
    assert_that(p | td.Create(["a"]), equal_to(["a"]))
    result = p.run()
    assert isinstance(result, td.PipelineResult)
    assert result.state == td.PipelineState.DONE
    assert result.state.is_terminal
    assert result.wait_until_finish() is td.PipelineState.DONE
    assert p.result is result


def test_run_twice_runs_twice() -> None:
    counted = td.Metrics.counter("model", "seen")

    def see(x: int) -> int:
        counted.inc()
        return x

    p = td.Pipeline()
    _ = p | td.Create([1, 2, 3]) | td.Map(see)
    first = p.run()
    second = p.run()
    for result in (first, second):
        [c] = result.metrics().query(td.MetricsFilter().with_name("seen"))["counters"]
        assert c.committed == 3


def test_graph_lists_the_primitives_in_topological_order() -> None:
    p = td.Pipeline()
    pairs = p | "Pairs" >> td.Create([("a", 1)])
    grouped = pairs | "Group" >> td.GroupByKey()
    _ = grouped | "Show" >> td.Map(str)
    graph = p.graph()
    assert [n.full_label for n in graph.primitives] == ["Pairs/Read(Create)", "Group", "Show"]
    assert [type(n.transform) for n in graph.primitives] == [Read, GroupByKey, ParDo]
    assert all(n.is_primitive for n in graph.primitives)
    consumers = graph.consumers()
    assert [n.full_label for n in consumers[pairs]] == ["Group"]
    assert [n.full_label for n in consumers[grouped]] == ["Show"]
    assert graph.primitives[1].inputs == (pairs,)
    assert graph.primitives[1].main_output is grouped


def test_graph_records_side_inputs_as_consumers() -> None:
    p = td.Pipeline()
    side = p | "Side" >> td.Create([1])
    _ = p | "Main" >> td.Create([2]) | "Use" >> td.Map(lambda x, s: x, td.AsList(side))
    use = next(n for n in p.graph().primitives if n.full_label == "Use")
    assert [v.pcoll for v in use.side_inputs] == [side]
    assert use in p.graph().consumers()[side]


def test_runner_by_name() -> None:
    p = td.Pipeline(runner="direct")
    assert isinstance(p.runner, DirectRunner)
    assert_that(p | td.Create([1]), equal_to([1]))
    assert p.run().state is td.PipelineState.DONE


def test_runner_by_class_style_name() -> None:
    assert isinstance(td.Pipeline(runner="DirectRunner").runner, DirectRunner)


def test_runner_instance() -> None:
    runner = DirectRunner(bundle_size=1)
    p = td.Pipeline(runner=runner)
    assert p.runner is runner
    assert_that(p | td.Create([1, 2, 3]) | td.Map(double), equal_to([2, 4, 6]))
    assert p.run().state is td.PipelineState.DONE


def test_custom_runner_instance_is_used() -> None:
    class Recording(Runner):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def run_pipeline(self, pipeline: td.Pipeline) -> td.PipelineResult:
            self.seen = [n.full_label for n in pipeline.graph().primitives]
            return DirectRunner().run_pipeline(pipeline)

    runner = Recording()
    with td.Pipeline(runner=runner) as p:
        _ = p | "Only" >> td.Create([1])
    assert runner.seen == ["Only/Read(Create)"]


def test_unknown_runner_name_lists_the_registered_runners() -> None:
    # As in Beam, the name is checked when the pipeline is created, not when it runs.
    with pytest.raises(ValueError) as err:
        td.Pipeline(runner="nosuchrunner")
    assert str(err.value) == (
        "unknown runner 'nosuchrunner'; registered runners: direct (also DirectRunner, BundleBasedDirectRunner, "
        "SwitchingDirectRunner, TestDirectRunner, FnApiRunner, PrismRunner); microbatch (also MicroBatchRunner); "
        "ray (also RayRunner)"
    )


def test_runner_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="runner must be a name or a Runner instance"):
        td.Pipeline(runner=42).run()  # type: ignore[arg-type]


def test_empty_pipeline_runs() -> None:
    assert td.Pipeline().run().state is td.PipelineState.DONE


def test_apply_something_that_is_not_a_transform() -> None:
    p = td.Pipeline()
    with pytest.raises(TypeError, match="expected a PTransform"):
        p.apply(lambda x: x)  # type: ignore[arg-type]


def test_pipe_into_something_that_is_not_a_pipeline() -> None:
    with pytest.raises(TypeError, match=r"the left side of \| must be a Pipeline"):
        [1, 2] | td.Map(double)


def test_with_outputs_result_is_a_do_outputs_tuple() -> None:
    class Split(td.DoFn):
        def process(self, x: int) -> Any:
            yield td.TaggedOutput("odd" if x % 2 else "even", x)

    with td.Pipeline() as p:
        outs = p | td.Create([1, 2, 3]) | td.ParDo(Split()).with_outputs("odd", "even")
        assert isinstance(outs, DoOutputsTuple)
        assert len(outs) == 3
        assert_that(outs.odd, equal_to([1, 3]), label="odd")
        assert_that(outs.even, equal_to([2]), label="even")
        assert_that(outs[None], is_empty(), label="main")
