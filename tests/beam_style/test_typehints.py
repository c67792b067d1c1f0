"""Declared type hints are checked when a transform is applied, in Beam's words (checked against Beam)."""

from __future__ import annotations

import subprocess
import textwrap
import typing
from pathlib import Path

import pytest
from beam_support import NO_BEAM, beam_python

import tidal as beam
from tidal import typehints
from tidal.options.pipeline_options import PipelineOptions
from tidal.typehints import TypeCheckError

# Each case builds a pipeline that Beam refuses when it is built; the message is Beam's, verbatim
# (as Apache Beam 2.77 words it; the live comparison below runs the same script under Beam).
CASES = textwrap.dedent('''\
    import typing
    import apache_beam as beam
    from apache_beam import typehints

    def annotated(x: int) -> int:
        return x

    @typehints.with_input_types(int)
    def plus1(x):
        return x + 1

    @typehints.with_input_types(str)
    @typehints.with_output_types(int)
    class Len(beam.DoFn):
        def process(self, e):
            yield len(e)

    CASES = {
        "map_str_on_int": lambda p: p | beam.Create([1, 2]) | "M" >> beam.Map(lambda x: x).with_input_types(str),
        "tuple": lambda p: p | beam.Create([("a", 1)]) | "M" >> beam.Map(lambda x: x).with_input_types(typehints.Tuple[str, str]),
        "labels": lambda p: p | "Src" >> beam.Create([1]) | "Lab" >> beam.Map(lambda x: x).with_input_types(str),
        "declared_output": lambda p: p | beam.Create(["a"]) | "A" >> beam.Map(len).with_output_types(int) | "B" >> beam.Map(str.upper).with_input_types(str),
        "group_by_key": lambda p: p | beam.Create([1]) | beam.GroupByKey(),
        "union": lambda p: p | beam.Create([1, "a"]) | "M" >> beam.Map(lambda x: x).with_input_types(float),
        "native_list": lambda p: p | beam.Create([[1]]) | "M" >> beam.Map(lambda x: x).with_input_types(list[str]),
        "int_is_a_float": lambda p: p | beam.Create([1]) | "M" >> beam.Map(lambda x: x).with_input_types(float),
        "combine_per_key": lambda p: p | beam.Create([1]) | "Outer" >> beam.Map(lambda x: x).with_output_types(int) | "Comp" >> beam.CombinePerKey(sum),
        "dofn_decorators": lambda p: p | beam.Create([1]) | beam.ParDo(Len()),
        "function_decorator": lambda p: p | beam.Create(["a"]) | beam.Map(plus1),
        "annotations": lambda p: p | beam.Create(["a"]) | beam.Map(annotated),
        "filter": lambda p: p | beam.Create(["a"]) | "F" >> beam.Filter(lambda x: x).with_input_types(int),
        "flatmap": lambda p: p | beam.Create(["a"]) | "F" >> beam.FlatMap(lambda x: [x]).with_input_types(int),
        "kv": lambda p: p | beam.Create([("a", "b")]) | beam.CombinePerKey(sum).with_input_types(typehints.KV[str, int]),
        "optional_ok": lambda p: p | beam.Create([1, None]) | "M" >> beam.Map(lambda x: x).with_input_types(typing.Optional[int]),
        "iterable": lambda p: p | beam.Create([[1, 2]]) | "M" >> beam.Map(lambda x: x).with_input_types(typing.Iterable[str]),
    }

    def outcome(name):
        p = beam.Pipeline()
        try:
            CASES[name](p)
        except typehints.TypeCheckError as e:
            return str(e)
        return "OK"

    if __name__ == "__main__":
        for name in CASES:
            print(name + "\\t" + outcome(name))
    ''')

EXPECTED = {
    "map_str_on_int": "The transform 'M' requires PCollections of type '<class 'str'>' but was applied to a PCollection of type '<class 'int'>' (produced by the transform 'Create'). ",
    "tuple": "The transform 'M' requires PCollections of type 'Tuple[<class 'str'>, <class 'str'>]' but was applied to a PCollection of type 'Tuple[<class 'str'>, <class 'int'>]' (produced by the transform 'Create'). ",
    "labels": "The transform 'Lab' requires PCollections of type '<class 'str'>' but was applied to a PCollection of type '<class 'int'>' (produced by the transform 'Src'). ",
    "declared_output": "The transform 'B' requires PCollections of type '<class 'str'>' but was applied to a PCollection of type '<class 'int'>' (produced by the transform 'A'). ",
    "group_by_key": "Input type hint violation at GroupByKey: expected Tuple[TypeVariable[K], TypeVariable[V]], got <class 'int'>",
    "union": "The transform 'M' requires PCollections of type '<class 'float'>' but was applied to a PCollection of type 'Union[<class 'int'>, <class 'str'>]' (produced by the transform 'Create'). ",
    "native_list": "The transform 'M' requires PCollections of type 'List[<class 'str'>]' but was applied to a PCollection of type 'List[<class 'int'>]' (produced by the transform 'Create'). ",
    "int_is_a_float": "OK",
    "combine_per_key": "The transform 'Comp' requires PCollections of type 'Tuple[TypeVariable[K], Any]' but was applied to a PCollection of type '<class 'int'>' (produced by the transform 'Outer'). ",
    "dofn_decorators": "The transform 'ParDo(Len)' requires PCollections of type '<class 'str'>' but was applied to a PCollection of type '<class 'int'>' (produced by the transform 'Create'). ",
    "function_decorator": "The transform 'Map(plus1)' requires PCollections of type '<class 'int'>' but was applied to a PCollection of type '<class 'str'>' (produced by the transform 'Create'). ",
    "annotations": "The transform 'Map(annotated)' requires PCollections of type '<class 'int'>' but was applied to a PCollection of type '<class 'str'>' (produced by the transform 'Create'). ",
    "filter": "The transform 'F' requires PCollections of type '<class 'int'>' but was applied to a PCollection of type '<class 'str'>' (produced by the transform 'Create'). ",
    "flatmap": "The transform 'F' requires PCollections of type '<class 'int'>' but was applied to a PCollection of type '<class 'str'>' (produced by the transform 'Create'). ",
    "kv": "The transform 'CombinePerKey(sum)' requires PCollections of type 'Tuple[<class 'str'>, <class 'int'>]' but was applied to a PCollection of type 'Tuple[<class 'str'>, <class 'str'>]' (produced by the transform 'Create'). ",
    "optional_ok": "OK",
    "iterable": "The transform 'M' requires PCollections of type 'Iterable[<class 'str'>]' but was applied to a PCollection of type 'List[<class 'int'>]' (produced by the transform 'Create'). ",
}


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> typing.Any:
    folder = tmp_path_factory.mktemp("typehint-cases")
    (folder / "cases.py").write_text(CASES.replace("apache_beam", "tidal"))
    namespace: dict[str, typing.Any] = {}
    exec(compile(CASES.replace("apache_beam", "tidal"), str(folder / "cases.py"), "exec"), namespace)
    return namespace


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_message_is_beams(name: str, cases: typing.Any) -> None:
    assert cases["outcome"](name) == EXPECTED[name]


def test_the_messages_equal_beams_when_run_under_beam(tmp_path: Path) -> None:
    python = beam_python()
    if python is None:
        pytest.skip(NO_BEAM)
    (tmp_path / "cases.py").write_text(CASES)
    proc = subprocess.run([str(python), "cases.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    beam_says = dict(line.split("\t", 1) for line in proc.stdout.splitlines() if "\t" in line)
    assert beam_says == EXPECTED


def test_the_check_can_be_switched_off() -> None:
    p = beam.Pipeline(options=PipelineOptions(["--no_pipeline_type_check"]))
    p | beam.Create([1]) | beam.Map(str.upper).with_input_types(str)  # accepted, as Beam accepts it


def test_a_composite_is_checked_against_its_declared_output() -> None:
    class Lengths(beam.PTransform):
        def expand(self, pcoll):  # type: ignore[no-untyped-def]
            return pcoll | beam.Map(len).with_output_types(int)

    p = beam.Pipeline()
    with pytest.raises(TypeCheckError, match=r"^Output type hint violation at Lengths: expected <class 'str'>, got <class 'int'>$"):
        p | beam.Create(["a"]) | Lengths().with_output_types(str)


def test_a_flatmap_function_must_declare_an_iterable() -> None:
    @typehints.with_output_types(int)
    def f(x: typing.Any) -> typing.Any:
        return [x]

    with pytest.raises(TypeCheckError, match=r"^Return value not iterable: f: <class 'int'> is not iterable$"):
        beam.Pipeline() | beam.Create([1]) | beam.FlatMap(f)


def test_types_flow_through_grouping_windowing_and_flatten() -> None:
    p = beam.Pipeline()
    pairs = p | beam.Create([("a", 1)])
    grouped = pairs | beam.WindowInto(beam.window.FixedWindows(10)) | beam.GroupByKey()
    assert typehints.is_consistent_with(grouped.element_type, typing.Tuple[str, typing.Iterable[int]])
    with pytest.raises(TypeCheckError, match=r"requires PCollections of type '<class 'int'>' but was applied to a PCollection of type 'Tuple\[<class 'str'>, Iterable\[<class 'int'>\]\]'"):
        grouped | "Bad" >> beam.Map(lambda x: x).with_input_types(int)
    both = (pairs, p | "More" >> beam.Create([("b", 2.5)])) | beam.Flatten()
    assert typehints.is_consistent_with(both.element_type, typing.Tuple[str, float])
    assert not typehints.is_consistent_with(both.element_type, typing.Tuple[str, int])


def test_consistency_rules() -> None:
    ok = typehints.is_consistent_with
    assert ok(int, float) and ok(bool, int) and not ok(float, int)
    assert ok(typing.List[int], typing.Iterable[int]) and not ok(str, typing.Iterable[str])
    assert ok(typing.Tuple[int, int], typing.Tuple[int, ...]) and not ok(typing.Tuple[int, ...], typing.Tuple[int, int])
    assert ok(typing.Union[int, bool], int) and not ok(typing.Union[int, str], int)
    assert ok(typing.Any, str) and ok(str, typing.Any) and ok(int, typing.TypeVar("T"))
    assert ok(typehints.KV[str, int], typing.Tuple[str, float])


def test_a_creates_values_are_scanned_only_when_a_type_downstream_reads_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # Inferring a Create's type scans every value; a Map without hints has an output type of
    # Any whatever its input, so the keyed step after it needs no scan. A Filter keeps its input's
    # type, so a hinted Map after one does.
    from tidal.model import typehints as model_typehints

    scans: list[int] = []
    real = model_typehints.union_of_instances

    def counted(values: typing.Any) -> typing.Any:
        scans.append(len(values))
        return real(values)

    monkeypatch.setattr(model_typehints, "union_of_instances", counted)
    p = beam.Pipeline()
    totals = p | beam.Create([("a", 1), ("b", 2)]) | beam.Map(lambda kv: kv) | beam.CombinePerKey(sum)
    assert scans == []
    assert typehints.is_consistent_with(totals.element_type, typing.Tuple[typing.Any, typing.Any])
    kept = p | "Kept" >> beam.Create([1, 2, 3]) | beam.Filter(lambda x: x > 1)
    with pytest.raises(TypeCheckError, match=r"requires PCollections of type '<class 'str'>' but was applied to a PCollection of type '<class 'int'>'"):
        kept | "Bad" >> beam.Map(lambda x: x).with_input_types(str)
    assert scans == [3]
