"""``python -m tidal port``: the textual rewrite, and the exact list of what a program uses that tidal lacks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tidal.__main__ import main
from tidal.capability_matrix.beam_programs import PROGRAMS
from tidal.porting import Unsupported, rewrite, unsupported

BIGQUERY_PROGRAM = textwrap.dedent('''\
    import argparse

    import apache_beam as beam
    from apache_beam.io.gcp.bigquery import ReadFromBigQuery, WriteToBigQuery
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
    from apache_beam.transforms import window


    def run(argv=None):
        parser = argparse.ArgumentParser()
        parser.add_argument("--table")
        known, rest = parser.parse_known_args(argv)
        options = PipelineOptions(rest)
        options.view_as(GoogleCloudOptions).project = "my-project"
        with beam.Pipeline(options=options) as p:
            rows = p | ReadFromBigQuery(query="SELECT 1", use_standard_sql=True)
            (rows
             | beam.Map(lambda row: row["x"])
             | beam.WindowInto(window.FixedWindows(60))
             | beam.io.WriteToPubSub(topic="projects/p/topics/t")
             | beam.io.WriteToText("out", validate=False))
            rows | beam.transforms.util.BatchElements(min_batch_size=10)
    ''')


def test_the_not_supported_list_is_exact_for_a_bigquery_program() -> None:
    assert unsupported(BIGQUERY_PROGRAM) == [
        Unsupported(4, "apache_beam.io.gcp.bigquery", "tidal has no module tidal.io.gcp"),
        Unsupported(5, "apache_beam.options.pipeline_options.GoogleCloudOptions",
                    "tidal.options.pipeline_options has no GoogleCloudOptions"),
        Unsupported(20, "apache_beam.io.WriteToPubSub", "tidal.io has no WriteToPubSub"),
        Unsupported(21, "apache_beam.io.WriteToText(validate=...)", "tidal's WriteToText takes no argument 'validate'"),
        Unsupported(22, "apache_beam.transforms.util.BatchElements", "tidal.transforms.util has no BatchElements"),
    ]


def test_a_local_name_that_hides_a_module_alias_is_not_reported() -> None:
    source = textwrap.dedent('''\
        import apache_beam as beam
        from apache_beam.transforms import window

        class Fmt(beam.DoFn):
            def process(self, kv, window=beam.DoFn.WindowParam):
                yield window.start.to_rfc3339(), [beam.missing for beam in kv]
        ''')
    assert unsupported(source) == []


def test_the_cli_prints_the_rewrite_and_lists_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    program = tmp_path / "bq.py"
    program.write_text(BIGQUERY_PROGRAM)
    assert main(["port", str(program)]) == 1
    out, err = capsys.readouterr()
    assert out == BIGQUERY_PROGRAM.replace("apache_beam", "tidal")
    assert err.splitlines() == [
        f"tidal port: {program} uses 5 thing(s) tidal lacks:",
        f"  {program}:4: apache_beam.io.gcp.bigquery (tidal has no module tidal.io.gcp)",
        f"  {program}:5: apache_beam.options.pipeline_options.GoogleCloudOptions (tidal.options.pipeline_options has no GoogleCloudOptions)",
        f"  {program}:20: apache_beam.io.WriteToPubSub (tidal.io has no WriteToPubSub)",
        f"  {program}:21: apache_beam.io.WriteToText(validate=...) (tidal's WriteToText takes no argument 'validate')",
        f"  {program}:22: apache_beam.transforms.util.BatchElements (tidal.transforms.util has no BatchElements)",
    ]
    assert program.read_text() == BIGQUERY_PROGRAM  # without --write the file is left alone


def test_write_replaces_the_file_with_its_rewrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    program = tmp_path / "wordcount.py"
    source = PROGRAMS["wordcount"].source()
    program.write_text(source)
    assert main(["port", "--write", str(program)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"tidal port: {program}: every apache_beam name it uses exists in tidal\n"
    assert program.read_text() == source.replace("apache_beam", "tidal") == rewrite(source)


def test_the_ported_file_runs(tmp_path: Path) -> None:
    program = tmp_path / "wordcount.py"
    program.write_text(PROGRAMS["wordcount"].source())
    assert main(["port", "--write", "--quiet", str(program)]) == 0
    (tmp_path / "in.txt").write_text("b a b\n")
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import wordcount; wordcount.run(['--input', 'in.txt', '--output', 'out'])"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = sorted(line for p in tmp_path.glob("out.counts*") if p.is_file() for line in p.read_text().splitlines())
    assert lines == ["a: 1", "b: 2"]


def test_bad_files_get_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["port", str(tmp_path / "nope.py")]) == 2
    assert capsys.readouterr().err.startswith(f"tidal port: error: cannot read {tmp_path / 'nope.py'}: No such file")
    broken = tmp_path / "broken.py"
    broken.write_text("import apache_beam as beam\ndef f(:\n")
    assert main(["port", str(broken)]) == 2
    assert capsys.readouterr().err == f"tidal port: error: {broken} is not valid Python: line 2: invalid syntax\n"
