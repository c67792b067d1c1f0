"""Shared by the tests that drive reducers directly: a plain sum as a CombineFn."""

from __future__ import annotations

from typing import Any

from tidal.model.combinefn import CombineFn

__all__ = ["SumFn"]


class SumFn(CombineFn):
    """``sum`` written out as a CombineFn (the runner cannot tell it is a sum, so it is not fused)."""

    def create_accumulator(self) -> int:
        return 0

    def add_input(self, acc: int, x: int) -> int:
        return acc + x

    def merge_accumulators(self, accs: Any) -> int:
        return sum(accs)

    def extract_output(self, acc: int) -> int:
        return acc
