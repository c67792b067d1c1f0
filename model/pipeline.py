"""Pipeline: builds the graph of applied transforms and hands it to a runner.

>>> import tidal as td
>>> with td.Pipeline() as p:
...     lengths = p | td.Create(["a", "bb"]) | td.Map(len)
...     td.testing.assert_that(lengths, td.testing.equal_to([1, 2]))
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Iterator

import attrs

from tidal.model import typehints
from tidal.model.errors import PipelineError
from tidal.model.options import PipelineOptions, StandardOptions, TypeOptions
from tidal.model.pvalue import AsSideInput, DoOutputsTuple, PBegin, PCollection
from tidal.model.ptransform import PrimitiveTransform, PTransform

if TYPE_CHECKING:
    from tidal.model.result import PipelineResult
    from tidal.runners.runner import Runner

__all__ = ["Pipeline", "AppliedTransform", "PipelineGraph", "PipelineError"]


class AppliedTransform:
    """One application of a transform: its full label, inputs, outputs and parts.

    Frozen once the pipeline runs; runners read primitives only.
    """

    def __init__(
        self,
        full_label: str,
        transform: PTransform | None,
        parent: "AppliedTransform | None",
        inputs: tuple[PCollection[Any], ...] = (),
        side_inputs: tuple[AsSideInput, ...] = (),
    ) -> None:
        self.full_label = full_label
        self.transform = transform
        self.parent = parent
        self.inputs = inputs
        self.side_inputs = side_inputs
        self.outputs: dict[str, PCollection[Any]] = {}
        self.parts: list[AppliedTransform] = []

    @property
    def is_primitive(self) -> bool:
        return isinstance(self.transform, PrimitiveTransform)

    @property
    def main_output(self) -> PCollection[Any]:
        return next(iter(self.outputs.values()))

    def __repr__(self) -> str:
        return f"<AppliedTransform {self.full_label!r}>"


@attrs.frozen
class PipelineGraph:
    """The immutable primitive graph a runner executes (application order is topological)."""

    primitives: tuple[AppliedTransform, ...]
    root: AppliedTransform

    def consumers(self) -> dict[PCollection[Any], list[AppliedTransform]]:
        """For each PCollection, the primitives that read it (as main or side input)."""
        out: dict[PCollection[Any], list[AppliedTransform]] = {}
        for node in self.primitives:
            for pc in node.inputs:
                out.setdefault(pc, []).append(node)
            for view in node.side_inputs:
                out.setdefault(view.pcoll, []).append(node)
        return out

    def pcollections(self) -> list[PCollection[Any]]:
        return [pc for node in self.primitives for pc in node.outputs.values()]


def _flatten_pvalues(result: Any) -> Iterator[PCollection[Any]]:
    if isinstance(result, PCollection):
        yield result
    elif isinstance(result, DoOutputsTuple):
        yield from result
    elif isinstance(result, (list, tuple)):
        for r in result:
            yield from _flatten_pvalues(r)
    elif isinstance(result, dict):
        for r in result.values():
            yield from _flatten_pvalues(r)


class Pipeline:
    """A graph of transforms, run by a runner when the ``with`` block ends or on ``run()``.

    ``runner`` is a registered name ("direct", "ray", "microbatch", or one of
    Beam's local runner names such as "DirectRunner") or a Runner instance.
    ``options`` is a :class:`~tidal.options.pipeline_options.PipelineOptions`
    (or a dict of option values); ``argv`` builds the options from flags when
    ``options`` is not given, as in Beam. Without ``runner``, the options'
    ``--runner`` decides, else the default (the one the ``tidal`` command line
    chose, the ``TIDAL_RUNNER`` environment variable, or "direct").

    >>> from tidal.options.pipeline_options import PipelineOptions
    >>> Pipeline(options=PipelineOptions(["--runner=DirectRunner"])).runner.name
    'direct'
    """

    def __init__(
        self,
        runner: "str | Runner | None" = None,
        options: "PipelineOptions | dict[str, Any] | None" = None,
        argv: list[str] | None = None,
        display_data: dict[str, Any] | None = None,
    ) -> None:
        if options is not None:
            if isinstance(options, PipelineOptions):
                self._options = copy.deepcopy(options)
            elif isinstance(options, dict):
                self._options = PipelineOptions([], **options)
            else:
                raise ValueError(f"Parameter options, if specified, must be of type PipelineOptions. Received : {options!r}")
        elif argv is not None:
            if not isinstance(argv, list):
                raise ValueError(f"Parameter argv, if specified, must be a list. Received : {argv!r}")
            self._options = PipelineOptions(argv)
        else:
            self._options = PipelineOptions([])
        if runner is None:
            runner = self._options.view_as(StandardOptions).runner
        if isinstance(runner, str):
            from tidal.runners.registry import canonical_runner_name, registered_runners, runner_list

            if canonical_runner_name(runner) not in registered_runners():
                raise ValueError(f"unknown runner {runner!r}; registered runners: {runner_list()}")
        self._runner_spec = runner
        self.display_data = dict(display_data or {})
        self._root = AppliedTransform("", None, None)
        self._stack: list[AppliedTransform] = [self._root]
        self._labels: dict[str, None] = {}  # an ordered set: a failed apply removes its labels
        self._primitives: list[AppliedTransform] = []
        self._result: PipelineResult | None = None

    @property
    def options(self) -> PipelineOptions:
        """The pipeline's options (view them as a subclass with ``options.view_as(...)``)."""
        return self._options

    # -- building ---------------------------------------------------------
    def apply(self, transform: PTransform, pvalueish: Any = None, label: str | None = None) -> Any:
        """Apply ``transform`` to ``pvalueish`` under ``label`` and return its output."""
        if not isinstance(transform, PTransform):
            raise TypeError(f"expected a PTransform, got {transform!r}")
        if pvalueish is None or pvalueish is self:
            pvalueish = PBegin(self)
        name = label or transform.label or transform.default_label()
        parent = self._stack[-1]
        full_label = f"{parent.full_label}/{name}" if parent.full_label else name
        if full_label in self._labels and self._options.view_as(StandardOptions).auto_unique_labels:
            n = 2
            while f"{full_label}_{n}" in self._labels:
                n += 1
            full_label = f"{full_label}_{n}"
        if full_label in self._labels:
            raise PipelineError(
                f"duplicate label {full_label!r}: every transform in a pipeline needs a unique "
                f"label; name this one with 'another label' >> {transform.default_label()}"
            )
        inputs = tuple(_flatten_pvalues(pvalueish))
        for pc in inputs:
            if pc.pipeline is not self:
                raise PipelineError(
                    f"step {full_label!r}: input {pc.name!r} belongs to a different pipeline; "
                    "a PCollection can only be used in the pipeline that created it"
                )
        side_inputs = tuple(getattr(transform, "side_inputs", ()))
        for view in side_inputs:
            if view.pcoll.pipeline is not self:
                raise PipelineError(
                    f"step {full_label!r}: side input {view.pcoll.name!r} belongs to a different "
                    "pipeline; a PCollection can only be used in the pipeline that created it"
                )
        labels_before, primitives_before = len(self._labels), len(self._primitives)
        self._labels[full_label] = None
        node = AppliedTransform(full_label, transform, parent, inputs, side_inputs)
        parent.parts.append(node)
        self._stack.append(node)
        try:
            if isinstance(transform, PrimitiveTransform):
                transform.validate_input(pvalueish, full_label)
            type_check = self._type_check_enabled()
            if type_check:
                typehints.check_input_types(transform, name, pvalueish)
            result = transform.expand(pvalueish)
            self._set_output_type(transform, name, pvalueish, result, type_check)
        except BaseException:
            # Leave the pipeline as it was, so the user can fix the transform and apply it again.
            for added in list(self._labels)[labels_before:]:
                del self._labels[added]
            del self._primitives[primitives_before:]
            parent.parts.remove(node)
            raise
        finally:
            self._stack.pop()
        if isinstance(transform, PrimitiveTransform):
            self._primitives.append(node)
        if not node.is_primitive:
            for i, pc in enumerate(_flatten_pvalues(result)):
                node.outputs[pc.tag or str(i)] = pc
        return result

    def _type_check_enabled(self) -> bool:
        flag = self._options._all_options.get("pipeline_type_check")
        if flag is None:
            flag = self._options.view_as(TypeOptions).pipeline_type_check
        return bool(flag)

    @staticmethod
    def _set_output_type(transform: PTransform, label: str, pvalueish: Any, result: Any, type_check: bool) -> None:
        """Give the main output its element type: declared, implied, or inferred from the input's."""
        if isinstance(result, DoOutputsTuple):
            result = result[result._main_tag] if result._main_tag is not None else None
        if not isinstance(result, PCollection):
            return
        declared = transform._declared_hints.main_output if transform._declared_hints is not None else None
        if declared is not None:
            if type_check and not isinstance(transform, PrimitiveTransform):
                typehints.check_output_types(transform, label, result)
            result.element_type = declared
            return
        lazy = transform.lazy_output_type()
        if lazy is not None:
            result.set_element_type_lazily(lazy)
        elif isinstance(transform, PrimitiveTransform):
            inputs = tuple(_flatten_pvalues(pvalueish))

            def infer() -> Any:
                if not transform._output_type_reads_input():
                    return transform.infer_output_type(typehints.ANY)
                return transform.infer_output_type(typehints.union_of(pc.element_type for pc in inputs))

            result.set_element_type_lazily(infer)

    def current_node(self) -> AppliedTransform:
        """The transform being expanded (primitives attach their outputs to it)."""
        return self._stack[-1]

    def _new_output(
        self, tag: str = "out", windowing: Any = None, is_bounded: bool = True
    ) -> PCollection[Any]:
        node = self.current_node()
        kwargs: dict[str, Any] = {"is_bounded": is_bounded}
        if windowing is not None:
            kwargs["windowing"] = windowing
        pc: PCollection[Any] = PCollection(self, node, tag, **kwargs)
        node.outputs[tag] = pc
        return pc

    def __or__(self, transform: PTransform) -> Any:
        return self.apply(transform, PBegin(self))

    # -- the graph ----------------------------------------------------------
    def graph(self) -> PipelineGraph:
        """The primitive graph as it stands now."""
        return PipelineGraph(tuple(self._primitives), self._root)

    def to_dot(self) -> str:
        """The pipeline as a Graphviz ``dot`` digraph."""
        from tidal.model.render import to_dot

        return to_dot(self.graph())

    def to_mermaid(self) -> str:
        """The pipeline as a Mermaid flowchart."""
        from tidal.model.render import to_mermaid

        return to_mermaid(self.graph())

    # -- running ------------------------------------------------------------
    @property
    def runner(self) -> "Runner":
        from tidal.runners.registry import resolve_runner

        return resolve_runner(self._runner_spec)

    def run(self) -> "PipelineResult":
        """Run the pipeline on its runner; returns the PipelineResult."""
        self._result = self.runner.run_pipeline(self)
        return self._result

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            result = self.run()
            if not self._options.view_as(StandardOptions).no_wait_until_finish:
                result.wait_until_finish()

    @property
    def result(self) -> "PipelineResult | None":
        """The result of the last run (also set by the ``with`` block)."""
        return self._result

