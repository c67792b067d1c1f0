"""The execution plan: the primitive graph cut into fused stages.

Consecutive element-wise primitives (stateless ParDo, WindowInto) fuse into
the stage of their producer; a stage starts at a source, a keyed exchange
(GroupByKey, CombinePerKey, stateful ParDo) or a Flatten fan-in. A
CombinePerKey is *lifted* when its windowing allows it: a partial combine
runs at the end of the producing stage, before the exchange.

>>> import tidal as td
>>> p = td.Pipeline()
>>> _ = p | td.Create([("a", 1)]) | td.Map(tuple) | td.CombinePerKey(sum)
>>> [s.describe() for s in build_plan(p.graph()).stages]
['stage 0: Create -> Map(tuple) -> [partial CombinePerKey(sum)]', 'stage 1: CombinePerKey(sum)']
"""

from __future__ import annotations

from typing import Any

import attrs

from tidal.model.pipeline import AppliedTransform, PipelineGraph
from tidal.model.primitives import CombinePerKey, Flatten, GroupByKey, ParDo, WindowInto
from tidal.model.pvalue import PCollection
from tidal.model.strategy import WindowingStrategy
from tidal.runners.core.invoker import DoFnSignature
from tidal.runners.core.policy import lift_blocker
from tidal.runners.core.statebackend import StateBackendSpec

__all__ = ["Stage", "ExecutionPlan", "build_plan", "can_lift", "is_stateful_pardo"]


@attrs.define
class Stage:
    """A fused chain of primitives that runs without an exchange inside it."""

    id: int
    nodes: list[AppliedTransform]
    #: How the stage's root reads its main inputs: "keyed" (by key), "union" (Flatten),
    #: "forward" (a ParDo with side inputs), "source" (no input).
    input_kind: str
    #: CombinePerKey nodes whose partial combine runs at the end of this stage.
    precombines: list[AppliedTransform] = attrs.field(factory=list)
    #: Why the stage's root, a CombinePerKey, is not lifted (when lifting is on): said in ``describe``.
    not_lifted: str | None = None

    @property
    def root(self) -> AppliedTransform:
        return self.nodes[0]

    def describe(self) -> str:
        parts = [_short(n.full_label) for n in self.nodes]
        parts += [f"[partial {_short(n.full_label)}]" for n in self.precombines]
        note = f" (not lifted: {self.not_lifted})" if self.not_lifted else ""
        return f"stage {self.id}: " + " -> ".join(parts) + note


def _short(label: str) -> str:
    return label.split("/")[0] if "/" in label and label.split("/")[0] == "Create" else label


@attrs.define
class ExecutionPlan:
    """Stages in topological order, and where each primitive landed."""

    graph: PipelineGraph
    stages: list[Stage]
    stage_of: dict[AppliedTransform, Stage]
    lifted: set[AppliedTransform]
    #: Where keyed state lives (None: in memory); see :mod:`tidal.runners.core.statebackend`.
    state_backend: StateBackendSpec | None = None

    def describe(self) -> str:
        return "\n".join(s.describe() for s in self.stages)


def is_stateful_pardo(node: AppliedTransform) -> bool:
    t = node.transform
    return isinstance(t, ParDo) and DoFnSignature(t.fn).is_stateful


def can_lift(windowing: WindowingStrategy) -> bool:
    """Partial combining is exact for non-merging event-time windows under the default trigger, without an evictor.

    :func:`~tidal.runners.core.policy.lift_blocker` says why not.
    """
    return lift_blocker(windowing) is None


def _is_policy_or_evicting(windowing: WindowingStrategy) -> bool:
    from tidal.model.policy import PolicyWindowFn

    return windowing.evictor is not None or isinstance(windowing.windowfn, PolicyWindowFn)


def build_plan(graph: PipelineGraph, lift_combiners: bool = True, state_backend: StateBackendSpec | None = None) -> ExecutionPlan:
    """Cut ``graph`` into fused stages (application order is already topological).

    ``state_backend``: where the executors keep keyed state (None: in memory).
    """
    stages: list[Stage] = []
    stage_of: dict[AppliedTransform, Stage] = {}
    producer: dict[PCollection[Any], AppliedTransform] = {}
    lifted: set[AppliedTransform] = set()
    for node in graph.primitives:
        t = node.transform
        # A ParDo with side inputs starts a stage: a parallel runner must then
        # broadcast every side input to it, even one produced beside its input.
        fusible = isinstance(t, WindowInto) or (
            isinstance(t, ParDo) and not is_stateful_pardo(node) and not node.side_inputs
        )
        if fusible and node.inputs and node.inputs[0] in producer:
            stage = stage_of[producer[node.inputs[0]]]
            stage.nodes.append(node)
        else:
            if isinstance(t, (GroupByKey, CombinePerKey)) or is_stateful_pardo(node):
                kind = "keyed"
            elif isinstance(t, Flatten):
                kind = "union"
            elif node.inputs:
                kind = "forward"
            else:
                kind = "source"
            stage = Stage(len(stages), [node], kind)
            stages.append(stage)
        stage_of[node] = stage
        for pc in node.outputs.values():
            producer[pc] = node
        if isinstance(t, CombinePerKey) and lift_combiners and node.inputs:
            src = node.inputs[0]
            blocker = lift_blocker(src.windowing)
            if blocker is None and src in producer:
                lifted.add(node)
                stage_of[producer[src]].precombines.append(node)
            elif blocker is not None and _is_policy_or_evicting(src.windowing):
                stage.not_lifted = blocker
    return ExecutionPlan(graph, stages, stage_of, lifted, state_backend)
