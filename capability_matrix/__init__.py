"""The capability matrix: conformance cases run on every runner, and the report built from their outcomes.

* :mod:`~tidal.capability_matrix.rows` — the matrix rows, grouped as Apache Beam groups them;
* :mod:`~tidal.capability_matrix.case` — a case (a small pipeline, its exact expected
  outcome, its row) and the registry the :mod:`~tidal.capability_matrix.cases` modules fill;
* :mod:`~tidal.capability_matrix.execute` — running one case on one runner under a time limit;
* :mod:`~tidal.capability_matrix.limitations` — what a runner declares it cannot do;
* :mod:`~tidal.capability_matrix.suite`, :mod:`~tidal.capability_matrix.report`,
  :mod:`~tidal.capability_matrix.render` — every case on every runner, the JSON document
  (checked against ``schema.json``), its Markdown and HTML renderings;
* :mod:`~tidal.capability_matrix.cli` — ``python -m tidal matrix``.

>>> from tidal.capability_matrix import all_cases, run_case
>>> result = run_case(next(c for c in all_cases() if c.id == "gbk.basic"), "direct")
>>> result.outcome
'pass'
"""

from tidal.capability_matrix.case import Case, CaseContext, CaseFailure, ExpectedError, all_cases, case
from tidal.capability_matrix.execute import CaseResult, run_case
from tidal.capability_matrix.limitations import declared_limitations
from tidal.capability_matrix.render import write_matrix
from tidal.capability_matrix.report import build_document, validate_document
from tidal.capability_matrix.suite import run_suite

__all__ = [
    "Case", "CaseContext", "CaseFailure", "CaseResult", "ExpectedError", "all_cases", "build_document", "case",
    "declared_limitations", "run_case", "run_suite", "validate_document", "write_matrix",
]
