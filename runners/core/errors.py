"""Errors raised while a pipeline runs: they name the step, the function and the element."""

from __future__ import annotations

from typing import Any

__all__ = ["PipelineExecutionError", "PipelineAssertionError", "UserCodeError", "describe_element"]


def describe_element(element: Any, limit: int = 200) -> str:
    """A short, safe repr of an element for an error message."""
    try:
        text = repr(element)
    except Exception as exc:  # a broken __repr__ must not hide the real error
        text = f"<{type(element).__name__} with failing repr: {exc}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PipelineExecutionError(RuntimeError):
    """A pipeline failed while running; ``step`` is the label of the failing transform."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"step {step!r}: {message}")
        self.step = step

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.step, self.args[0], self.__dict__))


def _rebuild(cls: type, step: str, message: str, state: dict[str, Any]) -> Any:
    err: Any = Exception.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    original = state.get("original")
    if isinstance(original, BaseException):
        err.__cause__ = original  # the chain survives the trip from a worker process
    return err


class UserCodeError(PipelineExecutionError):
    """User code (a DoFn, CombineFn or lambda) raised while processing an element.

    The original exception is chained (``__cause__``); ``element`` is the
    input that was being processed, when there is one.
    """

    def __init__(self, step: str, fn: Any, exc: BaseException, element: Any = None, has_element: bool = True) -> None:
        fn_name = getattr(fn, "__name__", None) or type(fn).__name__
        where = f" on element {describe_element(element)}" if has_element else ""
        super().__init__(step, f"{fn_name} raised {type(exc).__name__}: {exc}{where}")
        self.fn_name = fn_name
        self.element = element
        self.original = exc


class PipelineAssertionError(PipelineExecutionError, AssertionError):
    """An assertion in the pipeline (``assert_that``) failed; it stays an AssertionError."""
