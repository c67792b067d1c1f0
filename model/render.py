"""Render a pipeline graph as Graphviz ``dot`` or a Mermaid flowchart.

Nodes are the primitive transforms (labelled with their full label),
composite transforms become clusters (``dot``) or subgraphs (Mermaid) around
their parts, and edges are PCollections, labelled with the PCollection's
name; an edge that feeds a side input is dashed.

>>> import tidal as td
>>> p = td.Pipeline()
>>> lines = p | "Lines" >> td.Create(["to be", "or not"])
>>> words = lines | "Split" >> td.FlatMap(str.split)
>>> print(p.to_dot())
digraph "pipeline" {
  rankdir=TB;
  graph [fontname="Helvetica"];
  node [shape=box, style=rounded, fontname="Helvetica"];
  edge [fontname="Helvetica", fontsize=10];
  subgraph "cluster_0" {
    label="Lines";
    "n0" [label="Lines/Read(Create)"];
  }
  "n1" [label="Split"];
  "n0" -> "n1" [label="Lines/Read(Create)"];
}
>>> print(p.to_mermaid())
flowchart TD
  subgraph s0["Lines"]
    n0["Lines/Read(Create)"]
  end
  n1["Split"]
  n0 -->|"Lines/Read(Create)"| n1
"""

from __future__ import annotations

from typing import Any, Iterator

from tidal.model.pipeline import AppliedTransform, PipelineGraph
from tidal.model.pvalue import PCollection

__all__ = ["to_dot", "to_mermaid"]


class _Edge:
    """One PCollection flowing from the node that produces it to one node that reads it."""

    __slots__ = ("source", "target", "label", "side")

    def __init__(self, source: str, target: str, label: str, side: bool) -> None:
        self.source = source
        self.target = target
        self.label = label
        self.side = side


class _Layout:
    """Node ids, the composite tree around the primitives, and the edges of one graph."""

    def __init__(self, graph: PipelineGraph) -> None:
        self.graph = graph
        self.ids: dict[AppliedTransform, str] = {
            node: f"n{i}" for i, node in enumerate(graph.primitives)
        }
        # PCollections whose producer is not a primitive of this graph (a composite
        # that returned its input, say) get a node of their own, so no edge is lost.
        self.orphans: dict[PCollection[Any], str] = {}
        self.edges: list[_Edge] = []
        for node in graph.primitives:
            target = self.ids[node]
            for pc in node.inputs:
                self.edges.append(_Edge(self._source(pc), target, pc.name, side=False))
            for view in node.side_inputs:
                self.edges.append(_Edge(self._source(view.pcoll), target, view.pcoll.name, side=True))

    def _source(self, pc: PCollection[Any]) -> str:
        producer = pc.producer
        if producer is not None and producer in self.ids:
            return self.ids[producer]
        if pc not in self.orphans:
            self.orphans[pc] = f"p{len(self.orphans)}"
        return self.orphans[pc]

    def _contains_primitive(self, node: AppliedTransform) -> bool:
        return node in self.ids or any(self._contains_primitive(part) for part in node.parts)

    def walk(self) -> Iterator[tuple[str, AppliedTransform | None, int]]:
        """``("node" | "open" | "close", transform, depth)`` in a depth-first walk of the tree.

        A composite without a primitive under it is left out; a primitive of the
        graph that the tree does not reach is listed at the top level at the end.
        """
        seen: set[AppliedTransform] = set()

        def visit(node: AppliedTransform, depth: int) -> Iterator[tuple[str, AppliedTransform | None, int]]:
            if node in self.ids:
                seen.add(node)
                yield "node", node, depth
                return
            if not self._contains_primitive(node):
                return
            yield "open", node, depth
            for part in node.parts:
                yield from visit(part, depth + 1)
            yield "close", node, depth

        for part in self.graph.root.parts:
            yield from visit(part, 0)
        for node in self.graph.primitives:
            if node not in seen:
                yield "node", node, 0


# -- Graphviz ------------------------------------------------------------------------
def _dot_string(text: str) -> str:
    """A double-quoted dot string: backslashes and quotes escaped, newlines kept as ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "")
    return f'"{escaped}"'


def to_dot(graph: PipelineGraph, name: str = "pipeline") -> str:
    """The pipeline graph as a Graphviz ``digraph`` (render with ``dot -Tsvg``)."""
    lines = [
        f"digraph {_dot_string(name)} {{",
        "  rankdir=TB;",
        '  graph [fontname="Helvetica"];',
        '  node [shape=box, style=rounded, fontname="Helvetica"];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    layout = _Layout(graph)
    clusters = 0
    for kind, node, depth in layout.walk():
        pad = "  " * (depth + 1)
        assert node is not None
        if kind == "open":
            lines.append(f"{pad}subgraph {_dot_string(f'cluster_{clusters}')} {{")
            lines.append(f"{pad}  label={_dot_string(node.full_label)};")
            clusters += 1
        elif kind == "close":
            lines.append(f"{pad}}}")
        else:
            lines.append(f"{pad}{_dot_string(layout.ids[node])} [label={_dot_string(node.full_label)}];")
    for pc, orphan in layout.orphans.items():
        lines.append(f"  {_dot_string(orphan)} [label={_dot_string(pc.name)}, shape=ellipse];")
    for e in layout.edges:
        style = ", style=dashed" if e.side else ""
        lines.append(f"  {_dot_string(e.source)} -> {_dot_string(e.target)} [label={_dot_string(e.label)}{style}];")
    lines.append("}")
    return "\n".join(lines)


# -- Mermaid -------------------------------------------------------------------------
# Mermaid reads quotes, angle brackets, pipes and '#' in labels as syntax; its entity
# codes stand for them.
_MERMAID_ESCAPES = str.maketrans({
    "#": "#35;",
    '"': "#quot;",
    "<": "#lt;",
    ">": "#gt;",
    "|": "#124;",
    "\n": " ",
    "\r": "",
})


def _mermaid_string(text: str) -> str:
    return '"' + text.translate(_MERMAID_ESCAPES) + '"'


def to_mermaid(graph: PipelineGraph) -> str:
    """The pipeline graph as a Mermaid ``flowchart`` (paste it into a Markdown ```` ```mermaid ```` block)."""
    lines = ["flowchart TD"]
    layout = _Layout(graph)
    subgraphs = 0
    for kind, node, depth in layout.walk():
        pad = "  " * (depth + 1)
        assert node is not None
        if kind == "open":
            lines.append(f"{pad}subgraph s{subgraphs}[{_mermaid_string(node.full_label)}]")
            subgraphs += 1
        elif kind == "close":
            lines.append(f"{pad}end")
        else:
            lines.append(f"{pad}{layout.ids[node]}[{_mermaid_string(node.full_label)}]")
    for pc, orphan in layout.orphans.items():
        lines.append(f"  {orphan}([{_mermaid_string(pc.name)}])")
    for e in layout.edges:
        arrow = "-.->" if e.side else "-->"
        lines.append(f"  {e.source} {arrow}|{_mermaid_string(e.label)}| {e.target}")
    return "\n".join(lines)

