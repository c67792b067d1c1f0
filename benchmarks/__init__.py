"""Benchmarks: workloads measured on the runners, and the harness that compares them.

Each module runs as a script, e.g. ``python -m tidal.benchmarks.direct_wordcount``
(``--help`` lists its options). Benchmarks measure; the test suite never times anything.
"""
