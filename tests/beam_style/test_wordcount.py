"""The ported word count, tested as Beam tests its wordcount example: temp files in, files out."""

from __future__ import annotations

import collections
import glob
import re
from pathlib import Path

from tidal.capability_matrix.beam_programs import load_ported
from tidal.testing.test_pipeline import TestPipeline

wordcount = load_ported("wordcount")

SAMPLE_TEXT = "a cat, a dog\nthe dog's bone\n\nxyz a\n"


def read_results(prefix: str) -> dict[str, int]:
    results = {}
    for path in glob.glob(prefix + "*"):
        for line in Path(path).read_text().splitlines():
            word, count = line.rsplit(": ", 1)
            results[word] = int(count)
    return results


def test_basics(tmp_path: Path, runner: str) -> None:
    source = tmp_path / "input.txt"
    source.write_text(SAMPLE_TEXT)
    output = str(tmp_path / "result")
    test_pipeline = TestPipeline(argv=[])
    extra = test_pipeline.get_full_options_as_args(input=str(source), output=output)
    wordcount.run(extra, save_main_session=False)
    # The expected counts, computed here with plain Python.
    expected = collections.Counter(re.findall(r"[\w\']+", SAMPLE_TEXT, re.UNICODE))
    assert read_results(output + ".counts") == dict(expected) == {"a": 3, "cat": 1, "dog": 1, "the": 1, "dog's": 1, "bone": 1, "xyz": 1}


def test_runs_on_the_runner_of_the_options(tmp_path: Path, runner: str) -> None:
    source = tmp_path / "input.txt"
    source.write_text("one two two\n")
    output = str(tmp_path / "result")
    result = wordcount.run([f"--input={source}", f"--output={output}", f"--runner={runner}"], save_main_session=False)
    assert read_results(output + ".counts") == {"one": 1, "two": 2}
    assert type(result).__module__.split(".")[2] == runner  # tidal.runners.<runner>....
