"""Every bad input gets a clear error that names the step; no failure hangs the run."""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

import pytest

import tidal as td
from tidal.runners.direct import DirectRunner
from tidal.testing import BeamAssertException, assert_that, equal_to, is_empty

LOCK = threading.Lock()

#: A failing pipeline must fail promptly; a run still going after this is a hang.
DEADLINE_S = 30.0


def run_expecting(p: td.Pipeline, error: type[BaseException]) -> BaseException:
    """Run ``p`` on a thread; return the error it raised (failing the test if it hangs)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            p.run().wait_until_finish()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), f"the pipeline did not finish within {DEADLINE_S} s"
    [raised] = outcome
    assert raised is not None, f"expected {error.__name__}, but the pipeline succeeded"
    assert isinstance(raised, error), f"expected {error.__name__}, got {raised!r}"
    return raised


def pipeline(build: Callable[[td.Pipeline], Any], runner: Any = None) -> td.Pipeline:
    p = td.Pipeline(runner=runner)
    build(p)
    return p


# -- GroupByKey input ---------------------------------------------------------------
def test_group_by_key_of_non_pairs_names_the_step_and_the_element() -> None:
    # Through an untyped Map, so only the run can tell (Create's own type is checked when built).
    p = pipeline(lambda p: p | td.Create([1, 2]) | td.Map(lambda x: x) | "GroupThem" >> td.GroupByKey())
    err = run_expecting(p, td.PipelineExecutionError)
    message = str(err)
    assert message.startswith("step 'GroupThem': GroupByKey and CombinePerKey need (key, value) pairs; got 1.")
    assert "Map(lambda x: (key_of(x), x))" in message
    assert err.step == "GroupThem"  # type: ignore[attr-defined]


def test_group_by_key_of_triples_shows_the_element() -> None:
    p = pipeline(lambda p: p | td.Create([("a", 1, "extra")]) | td.Map(lambda x: x) | "GroupTriples" >> td.GroupByKey())
    err = run_expecting(p, td.PipelineExecutionError)
    assert str(err).startswith("step 'GroupTriples': GroupByKey and CombinePerKey need (key, value) pairs; got ('a', 1, 'extra').")


def test_group_by_key_with_an_unhashable_key_names_the_step_and_the_key() -> None:
    p = pipeline(lambda p: p | td.Create([(["a"], 1)]) | "GroupLists" >> td.GroupByKey())
    err = run_expecting(p, td.PipelineExecutionError)
    assert str(err) == (
        "step 'GroupLists': the key ['a'] is not hashable (list); "
        "keys must be hashable values such as str, int or tuple"
    )


@pytest.mark.parametrize("lift", [True, False], ids=["lifted", "unlifted"])
def test_combine_per_key_of_non_pairs_names_the_step(lift: bool) -> None:
    p = pipeline(lambda p: p | td.Create([7]) | td.Map(lambda x: x) | "SumThem" >> td.CombinePerKey(sum), DirectRunner(lift_combiners=lift))
    err = run_expecting(p, td.PipelineExecutionError)
    message = str(err)
    assert message.startswith("step 'SumThem")
    assert "(key, value) pairs" in message
    assert "got 7" in message


@pytest.mark.parametrize("lift", [True, False], ids=["lifted", "unlifted"])
def test_combine_per_key_with_an_unhashable_key_names_the_step(lift: bool) -> None:
    p = pipeline(lambda p: p | td.Create([({"a": 1}, 1)]) | "SumDicts" >> td.CombinePerKey(sum), DirectRunner(lift_combiners=lift))
    err = run_expecting(p, td.PipelineExecutionError)
    message = str(err)
    assert message.startswith("step 'SumDicts")
    assert "hashable" in message
    assert "{'a': 1}" in message


def test_group_by_key_of_an_unbounded_global_window_is_rejected_at_apply_time() -> None:
    p = td.Pipeline()
    stream = p | td.testing.TestStream().add_elements([("k", 1)]).advance_watermark_to_infinity()
    with pytest.raises(td.PipelineError, match=r"step 'Forever': GroupByKey of an unbounded PCollection in the global window"):
        stream | "Forever" >> td.GroupByKey()


# -- exceptions in user code ----------------------------------------------------------
def test_exception_in_a_lambda_names_step_function_and_element() -> None:
    p = pipeline(lambda p: p | td.Create([1, 0]) | "Invert" >> td.Map(lambda x: 1 / x))
    err = run_expecting(p, td.UserCodeError)
    assert str(err) == "step 'Invert': <lambda> raised ZeroDivisionError: division by zero on element 0"
    assert isinstance(err.__cause__, ZeroDivisionError)
    assert err.step == "Invert"  # type: ignore[attr-defined]
    assert err.element == 0  # type: ignore[attr-defined]
    assert err.fn_name == "<lambda>"  # type: ignore[attr-defined]
    assert err.original is err.__cause__  # type: ignore[attr-defined]


def test_exception_in_a_named_function() -> None:
    def parse(s: str) -> int:
        return int(s)

    p = pipeline(lambda p: p | td.Create(["1", "x2"]) | "Parse" >> td.Map(parse))
    err = run_expecting(p, td.UserCodeError)
    assert str(err) == "step 'Parse': parse raised ValueError: invalid literal for int() with base 10: 'x2' on element 'x2'"
    assert isinstance(err.__cause__, ValueError)


def test_exception_in_a_dofn_names_step_method_and_element() -> None:
    class Explode(td.DoFn):
        def process(self, x: dict[str, int]) -> Iterable[int]:
            yield x["missing"]

    p = pipeline(lambda p: p | td.Create([{"present": 1}]) | "Explode" >> td.ParDo(Explode()))
    err = run_expecting(p, td.UserCodeError)
    assert str(err) == "step 'Explode': process raised KeyError: 'missing' on element {'present': 1}"
    assert isinstance(err.__cause__, KeyError)


@pytest.mark.parametrize(
    "make, element",
    [
        (lambda: td.FlatMap(lambda x: [1 / x]), 0),
        (lambda: td.FlatMap(lambda x: (1 / x for _ in range(1))), 0),
        (lambda: td.Filter(lambda x: 1 / x), 0),
        (lambda: td.MapTuple(lambda a, b: a / b), (1, 0)),
        (lambda: td.FlatMapTuple(lambda a, b: [a / b]), (1, 0)),
        (lambda: td.Map(lambda x, d: x / d, 0), 5),
    ],
    ids=["flatmap", "flatmap-generator", "filter", "maptuple", "flatmaptuple", "map-extra-arg"],
)
def test_exception_in_every_kind_of_element_wise_function(make: Any, element: Any) -> None:
    p = pipeline(lambda p: p | td.Create([element]) | "Step" >> make())
    err = run_expecting(p, td.UserCodeError)
    message = str(err)
    assert message.startswith("step 'Step': ")
    assert "raised ZeroDivisionError: division by zero" in message
    assert message.endswith(f"on element {element!r}")
    assert isinstance(err.__cause__, ZeroDivisionError)


def test_exception_in_a_filter_points_at_the_failing_element() -> None:
    p = pipeline(lambda p: p | td.Create([1, 2, 3, 0, 5]) | "Keep" >> td.Filter(lambda x: 10 / x > 3))
    err = run_expecting(p, td.UserCodeError)
    assert str(err).endswith("on element 0")


def test_map_tuple_of_the_wrong_arity() -> None:
    p = pipeline(lambda p: p | td.Create([(1, 2, 3)]) | "Pairs" >> td.MapTuple(lambda k, v: k))
    err = run_expecting(p, td.UserCodeError)
    assert str(err).startswith("step 'Pairs': <lambda> raised TypeError:")
    assert str(err).endswith("on element (1, 2, 3)")


def test_exception_in_a_combine_fn_names_the_step() -> None:
    class Fragile(td.CombineFn):
        def create_accumulator(self) -> int:
            return 0

        def add_input(self, acc: int, x: int) -> int:
            if x < 0:
                raise ArithmeticError("negative input")
            return acc + x

        def merge_accumulators(self, accs: Iterable[int]) -> int:
            return sum(accs)

    for lift in (True, False):
        p = pipeline(
            lambda p: p | td.Create([("k", 1), ("k", -1)]) | "Fragile" >> td.CombinePerKey(Fragile()),
            DirectRunner(lift_combiners=lift),
        )
        err = run_expecting(p, td.UserCodeError)
        message = str(err)
        assert message.startswith("step 'Fragile")
        assert "raised ArithmeticError: negative input on element ('k', -1)" in message
        assert isinstance(err.__cause__, ArithmeticError)


def test_exception_in_extract_output_names_the_step() -> None:
    class BadOutput(td.CombineFn):
        def create_accumulator(self) -> int:
            return 0

        def add_input(self, acc: int, x: int) -> int:
            return acc + x

        def merge_accumulators(self, accs: Iterable[int]) -> int:
            return sum(accs)

        def extract_output(self, acc: int) -> int:
            if acc == 2:
                raise LookupError("no output")
            return acc

    # Panes are built a window at a time: the error still names the key whose output failed.
    p = pipeline(lambda p: p | td.Create([("a", 1), ("b", 2), ("c", 3)]) | "BadOutput" >> td.CombinePerKey(BadOutput()))
    err = run_expecting(p, td.UserCodeError)
    assert str(err).startswith("step 'BadOutput': ")
    assert "raised LookupError: no output on element 'b'" in str(err)
    assert isinstance(err.__cause__, LookupError)


def test_exception_in_a_source_names_the_step() -> None:
    class Broken(td.BoundedSource):
        def read(self) -> Iterable[int]:
            yield 1
            raise ConnectionError("source went away")

    p = pipeline(lambda p: p | "ReadBroken" >> td.Read(Broken()))
    err = run_expecting(p, td.UserCodeError)
    assert str(err).startswith("step 'ReadBroken': ")
    assert "raised ConnectionError: source went away" in str(err)


def test_exception_in_finish_bundle_names_the_step() -> None:
    class BadFinish(td.DoFn):
        def process(self, x: int) -> Iterable[int]:
            yield x

        def finish_bundle(self) -> None:
            raise RuntimeError("flush failed")

    p = pipeline(lambda p: p | td.Create([1]) | "Flush" >> td.ParDo(BadFinish()))
    err = run_expecting(p, td.UserCodeError)
    assert str(err) == "step 'Flush': finish_bundle raised RuntimeError: flush failed"


def test_partition_index_out_of_range() -> None:
    p = pipeline(lambda p: p | td.Create([5]) | "Split" >> td.Partition(lambda x, n: x, 3))
    err = run_expecting(p, td.UserCodeError)
    message = str(err)
    assert message.startswith("step 'Split/ParDo': ")
    assert "the partition function returned 5; it must return an int in [0, 3)" in message
    assert message.endswith("on element 5")


# -- unpicklable user code: rejected when applied ---------------------------------------
def test_lambda_capturing_a_lock_is_rejected_at_apply_time() -> None:
    p = td.Pipeline()
    nums = p | td.Create([1])
    with pytest.raises(td.PipelineError) as info:
        nums | "UsesLock" >> td.Map(lambda x: (x, LOCK))
    message = str(info.value)
    assert message.startswith("step 'UsesLock': the function")
    assert "cannot be pickled" in message
    assert "_thread.lock" in message
    assert "DoFn.setup()" in message


def test_local_lambda_capturing_a_lock_is_rejected_at_apply_time() -> None:
    lock = threading.Lock()
    p = td.Pipeline()
    with pytest.raises(td.PipelineError, match=r"step 'Locked': the function .* cannot be pickled \(TypeError: cannot pickle '_thread.lock' object\)"):
        p | td.Create([1]) | "Locked" >> td.Map(lambda x: lock.locked())


def test_dofn_holding_a_lock_is_rejected_at_apply_time() -> None:
    class Guarded(td.DoFn):
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def process(self, x: int) -> Iterable[int]:
            with self.lock:
                yield x

    p = td.Pipeline()
    with pytest.raises(td.PipelineError, match=r"step 'Guarded': the DoFn .* cannot be pickled") as info:
        p | td.Create([1]) | "Guarded" >> td.ParDo(Guarded())
    assert isinstance(info.value.__cause__, TypeError)
    # Nothing was added to the graph: the label is still free.
    assert "Guarded" not in [n.full_label for n in p.graph().primitives]


def test_dofn_creating_its_lock_in_setup_is_fine() -> None:
    class Guarded(td.DoFn):
        def setup(self) -> None:
            self.lock = threading.Lock()

        def process(self, x: int) -> Iterable[int]:
            with self.lock:
                yield x

    with td.Pipeline() as p:
        assert_that(p | td.Create([1, 2]) | td.ParDo(Guarded()), equal_to([1, 2]))


def test_unpicklable_extra_argument_is_rejected_at_apply_time() -> None:
    p = td.Pipeline()
    with pytest.raises(td.PipelineError, match=r"step 'WithLock': the extra argument .* cannot be pickled"):
        p | td.Create([1]) | "WithLock" >> td.Map(lambda x, lock: x, LOCK)


def test_unpicklable_combine_fn_is_rejected_at_apply_time() -> None:
    class Locked(td.CombineFn):
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def create_accumulator(self) -> int:
            return 0

        def add_input(self, acc: int, x: int) -> int:
            return acc + x

        def merge_accumulators(self, accs: Iterable[int]) -> int:
            return sum(accs)

    p = td.Pipeline()
    pairs = p | td.Create([("k", 1)])
    with pytest.raises(td.PipelineError, match=r"step 'LockedSum': the CombineFn .* cannot be pickled"):
        pairs | "LockedSum" >> td.CombinePerKey(Locked())
    with pytest.raises(td.PipelineError, match=r"step 'LockedGlobal/CombinePerKey': the CombineFn .* cannot be pickled"):
        pairs | "LockedGlobal" >> td.CombineGlobally(Locked())


def test_unpicklable_callable_combiner_is_rejected_at_apply_time() -> None:
    p = td.Pipeline()
    with pytest.raises(td.PipelineError, match=r"step 'LockedLambda': the CombineFn .* cannot be pickled"):
        p | td.Create([("k", 1)]) | "LockedLambda" >> td.CombinePerKey(lambda vs: (sum(vs), LOCK)[0])


def test_unpicklable_create_element_is_rejected_at_apply_time() -> None:
    p = td.Pipeline()
    with pytest.raises(td.PipelineError, match=r"step 'Locks/Read\(Create\)': the source .* cannot be pickled"):
        p | "Locks" >> td.Create([1, LOCK])


def test_unpicklable_output_is_caught_in_strict_mode_only() -> None:
    p = pipeline(lambda p: p | td.Create([1]) | "MakeLock" >> td.Map(lambda x: threading.Lock()))
    err = run_expecting(p, td.PipelineExecutionError)
    message = str(err)
    assert message.startswith("step 'MakeLock': output to 'out' <unlocked _thread.lock object at")
    assert "cannot be pickled" in message
    relaxed = td.Pipeline(runner=DirectRunner(strict=False))
    _ = relaxed | td.Create([1]) | "MakeLock" >> td.Map(lambda x: threading.Lock()) | td.Map(lambda lock: lock.locked())
    assert relaxed.run().state is td.PipelineState.DONE


# -- pipeline construction errors -------------------------------------------------------
def test_duplicate_label() -> None:
    p = td.Pipeline()
    p | "Same" >> td.Create([1])
    with pytest.raises(td.PipelineError, match=r"^duplicate label 'Same': every transform in a pipeline needs a unique label"):
        p | "Same" >> td.Create([2])


def test_duplicate_assert_that_label() -> None:
    p = td.Pipeline()
    nums = p | td.Create([1])
    assert_that(nums, equal_to([1]), label="Check")
    with pytest.raises(td.PipelineError, match=r"duplicate label 'Check'.*'another label' >> assert_that"):
        assert_that(nums, equal_to([1]), label="Check")


def test_pcollection_of_another_pipeline() -> None:
    p1, p2 = td.Pipeline(), td.Pipeline()
    nums = p1 | "Nums" >> td.Create([1])
    with pytest.raises(td.PipelineError) as info:
        p2.apply(td.GroupByKey(), nums, label="GroupElsewhere")
    assert str(info.value) == (
        "step 'GroupElsewhere': input 'Nums/Read(Create)' belongs to a different pipeline; "
        "a PCollection can only be used in the pipeline that created it"
    )


def test_window_into_with_a_trigger_needs_an_accumulation_mode() -> None:
    p = td.Pipeline()
    with pytest.raises(td.PipelineError, match=r"step 'Early': the trigger .* needs an accumulation mode"):
        p | td.Create([1]) | "Early" >> td.WindowInto(td.window.GlobalWindows(), trigger=td.trigger.AfterCount(1))


def test_root_transform_applied_to_a_pcollection() -> None:
    p = td.Pipeline()
    nums = p | td.Create([1])
    with pytest.raises(td.PipelineError, match=r"step 'Again': Impulse is a root transform"):
        nums | "Again" >> td.Impulse()
    with pytest.raises(TypeError, match=r"Create is a root transform; apply it to a pipeline"):
        nums | "Again2" >> td.Create([1])


# -- side inputs ------------------------------------------------------------------------
def test_as_singleton_over_several_elements() -> None:
    def build(p: td.Pipeline) -> None:
        side = p | "Several" >> td.Create([1, 2])
        p | "Main" >> td.Create([0]) | "NeedsOne" >> td.Map(lambda x, s: x + s, td.AsSingleton(side))

    err = run_expecting(pipeline(build), td.PipelineExecutionError)
    assert str(err) == (
        "step 'NeedsOne': AsSingleton(Several/Read(Create)) has 2 elements (1, 2); a singleton side "
        "input needs exactly one element: combine it first, or use AsList / AsIter"
    )


# -- strict mode: mutation of inputs ------------------------------------------------------
class AppendsToInput(td.DoFn):
    def process(self, x: list[int]) -> Iterable[int]:
        x.append(99)
        yield len(x)


def test_dofn_mutating_its_input_is_detected_in_strict_mode() -> None:
    p = pipeline(lambda p: p | td.Create([[1, 2]]) | "Mutates" >> td.ParDo(AppendsToInput()))
    err = run_expecting(p, td.PipelineExecutionError)
    message = str(err)
    assert message.startswith("step 'Mutates': the DoFn mutated its input element [1, 2] (it became [1, 2, 99]);")
    assert "must not modify their inputs" in message


def test_lambda_mutating_its_input_is_detected_in_strict_mode() -> None:
    p = pipeline(lambda p: p | td.Create([{"a": 1}]) | "Pops" >> td.Map(lambda d: d.pop("a")))
    err = run_expecting(p, td.PipelineExecutionError)
    assert str(err).startswith("step 'Pops': the DoFn mutated its input element {'a': 1} (it became {});")


def test_mutation_is_not_checked_when_strict_is_off() -> None:
    with td.Pipeline(runner=DirectRunner(strict=False)) as p:
        assert_that(p | td.Create([[1, 2]]) | td.ParDo(AppendsToInput()), equal_to([3]))


def test_a_dofn_that_copies_its_input_passes_strict_mode() -> None:
    with td.Pipeline() as p:
        out = p | td.Create([[1, 2]]) | td.Map(lambda x: x + [3])
        assert_that(out, equal_to([[1, 2, 3]]))


# -- assert_that ------------------------------------------------------------------------
def test_failed_assert_that_is_an_assertion_error_naming_the_label() -> None:
    p = td.Pipeline()
    assert_that(p | td.Create([1, 2]), equal_to([1, 3]), label="CheckNumbers")
    err = run_expecting(p, AssertionError)
    message = str(err)
    assert "CheckNumbers" in message
    assert "Failed assert: [1, 2] == [1, 3]" in message
    assert "unexpected elements [2]" in message
    assert "missing elements [3]" in message
    assert isinstance(err.__cause__, BeamAssertException)


def test_failed_is_empty_is_an_assertion_error() -> None:
    p = td.Pipeline()
    assert_that(p | td.Create([5]), is_empty(), label="ShouldBeEmpty")
    err = run_expecting(p, AssertionError)
    assert "ShouldBeEmpty" in str(err)
    assert "Failed assert: [5] is not empty" in str(err)


def test_assert_that_with_unhashable_and_unorderable_elements() -> None:
    with td.Pipeline() as p:
        assert_that(p | td.Create([{"a": 1}, [2], None]), equal_to([None, [2], {"a": 1}]))
    p = td.Pipeline()
    assert_that(p | td.Create([{"a": 1}, None]), equal_to([{"a": 2}, None]), label="Dicts")
    err = run_expecting(p, AssertionError)
    assert "unexpected elements [{'a': 1}]" in str(err)
    assert "missing elements [{'a': 2}]" in str(err)


def test_plain_assert_in_a_dofn_stays_an_assertion_error() -> None:
    def check(x: int) -> int:
        if x != 2:
            raise AssertionError("x must be 2")
        return x

    p = pipeline(lambda p: p | td.Create([1]) | "Asserts" >> td.Map(check))
    err = run_expecting(p, AssertionError)
    assert str(err) == "step 'Asserts': x must be 2"


def test_assert_that_per_window_checks_each_window() -> None:
    def windowed(p: td.Pipeline) -> Any:
        stamped = [td.TimestampedValue(1, 1), td.TimestampedValue(2, 2), td.TimestampedValue(3, 15)]
        return p | td.Create(stamped) | td.WindowInto(td.window.FixedWindows(10))

    with td.Pipeline() as p:
        per_window_sums = windowed(p) | td.CombineGlobally(sum).without_defaults()
        assert_that(per_window_sums, equal_to([3]), use_global_window=False)  # 1 + 2, and 3
        assert_that(per_window_sums, equal_to([3, 3]), label="all windows at once")
    p = td.Pipeline()
    assert_that(windowed(p), equal_to([1, 2]), label="PerWindow", use_global_window=False)
    err = run_expecting(p, AssertionError)
    message = str(err)
    assert message.startswith("step 'PerWindow/Match': in window IntervalWindow(10, 20): Failed assert: [3] == [1, 2]")


def test_assert_that_needs_a_pcollection() -> None:
    with pytest.raises(TypeError, match="assert_that needs a PCollection"):
        assert_that([1], equal_to([1]))  # type: ignore[arg-type]


# -- an error in one branch does not hang the others ----------------------------------------
def test_error_in_one_branch_with_side_inputs_and_groups_does_not_hang() -> None:
    def build(p: td.Pipeline) -> None:
        nums = p | td.Create(range(100))
        total = nums | td.CombineGlobally(sum)
        _ = nums | "Fine" >> td.Map(lambda x, t: x / t, td.AsSingleton(total))
        grouped = nums | td.Map(lambda x: (x % 3, x)) | td.GroupByKey()
        _ = grouped | "Breaks" >> td.MapTuple(lambda k, vs: 1 / k)

    err = run_expecting(pipeline(build), td.UserCodeError)
    assert str(err).startswith("step 'Breaks': <lambda> raised ZeroDivisionError")


def test_combine_globally_with_defaults_in_non_global_windows_names_the_step() -> None:
    p = td.Pipeline()
    windowed = p | td.Create([1]) | td.WindowInto(td.window.FixedWindows(10))
    with pytest.raises(td.PipelineError) as info:
        windowed | "Total" >> td.CombineGlobally(sum)
    assert str(info.value) == (
        "step 'Total': CombineGlobally in a non-global window has no sensible default for empty "
        "windows; use CombineGlobally(...).without_defaults()"
    )
    # Nothing of the failed transform is left in the graph.
    assert not any(n.full_label.startswith("Total") for n in p.graph().primitives)
    windowed | "Total" >> td.CombineGlobally(sum).without_defaults()
