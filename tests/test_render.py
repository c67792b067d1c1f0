"""Pipelines render as Graphviz dot and Mermaid: nodes, clusters, edges, escaping."""

from __future__ import annotations

from typing import Any

import tidal as td
from tidal.model.render import to_dot, to_mermaid


class CountWords(td.PTransform):
    def expand(self, lines: Any) -> Any:
        return (
            lines
            | "Split" >> td.FlatMap(str.split)
            | "PairWithOne" >> td.Map(lambda w: (w, 1))
            | "Sum" >> td.CombinePerKey(sum)
        )


def small_pipeline() -> td.Pipeline:
    p = td.Pipeline()
    lines = p | "Lines" >> td.Create(["a b", "b"])
    stop = p | "Stop" >> td.Create(["a"])
    counts = lines | "Count" >> CountWords()
    _ = counts | "Drop" >> td.Filter(lambda kv, stop: kv[0] not in stop, td.AsList(stop))
    return p


def test_dot_nodes_clusters_and_edges() -> None:
    assert to_dot(small_pipeline().graph()) == """\
digraph "pipeline" {
  rankdir=TB;
  graph [fontname="Helvetica"];
  node [shape=box, style=rounded, fontname="Helvetica"];
  edge [fontname="Helvetica", fontsize=10];
  subgraph "cluster_0" {
    label="Lines";
    "n0" [label="Lines/Read(Create)"];
  }
  subgraph "cluster_1" {
    label="Stop";
    "n1" [label="Stop/Read(Create)"];
  }
  subgraph "cluster_2" {
    label="Count";
    "n2" [label="Count/Split"];
    "n3" [label="Count/PairWithOne"];
    "n4" [label="Count/Sum"];
  }
  "n5" [label="Drop"];
  "n0" -> "n2" [label="Lines/Read(Create)"];
  "n2" -> "n3" [label="Count/Split"];
  "n3" -> "n4" [label="Count/PairWithOne"];
  "n4" -> "n5" [label="Count/Sum"];
  "n1" -> "n5" [label="Stop/Read(Create)", style=dashed];
}"""


def test_mermaid_nodes_subgraphs_and_edges() -> None:
    assert to_mermaid(small_pipeline().graph()) == """\
flowchart TD
  subgraph s0["Lines"]
    n0["Lines/Read(Create)"]
  end
  subgraph s1["Stop"]
    n1["Stop/Read(Create)"]
  end
  subgraph s2["Count"]
    n2["Count/Split"]
    n3["Count/PairWithOne"]
    n4["Count/Sum"]
  end
  n5["Drop"]
  n0 -->|"Lines/Read(Create)"| n2
  n2 -->|"Count/Split"| n3
  n3 -->|"Count/PairWithOne"| n4
  n4 -->|"Count/Sum"| n5
  n1 -.->|"Stop/Read(Create)"| n5"""


def test_pipeline_methods_render_the_same() -> None:
    p = small_pipeline()
    assert p.to_dot() == to_dot(p.graph())
    assert p.to_mermaid() == to_mermaid(p.graph())


def test_nested_composites_become_nested_clusters() -> None:
    class Outer(td.PTransform):
        def expand(self, pcoll: Any) -> Any:
            return pcoll | "Inner" >> CountWords()

    p = td.Pipeline()
    _ = p | "Lines" >> td.Create(["a"]) | "Outer" >> Outer()
    dot = p.to_dot()
    assert '  subgraph "cluster_1" {\n    label="Outer";\n    subgraph "cluster_2" {\n      label="Outer/Inner";\n' in dot
    assert '      "n1" [label="Outer/Inner/Split"];' in dot
    mermaid = p.to_mermaid()
    assert '  subgraph s1["Outer"]\n    subgraph s2["Outer/Inner"]\n      n1["Outer/Inner/Split"]' in mermaid
    assert mermaid.endswith('    end\n  end\n  n0 -->|"Lines/Read(Create)"| n1\n'
                            '  n1 -->|"Outer/Inner/Split"| n2\n  n2 -->|"Outer/Inner/PairWithOne"| n3')


def test_quotes_and_special_characters_are_escaped() -> None:
    p = td.Pipeline()
    _ = p | 'Say "hi" <now> | #1 \\ x' >> td.Create([1]) | 'Then "more"' >> td.Map(str)
    dot = p.to_dot()
    assert 'label="Say \\"hi\\" <now> | #1 \\\\ x";' in dot
    assert '"n1" [label="Then \\"more\\""];' in dot
    mermaid = p.to_mermaid()
    assert 's0["Say #quot;hi#quot; #lt;now#gt; #124; #35;1 \\ x"]' in mermaid
    assert 'n1["Then #quot;more#quot;"]' in mermaid
    assert '-->|"Say #quot;hi#quot; #lt;now#gt; #124; #35;1 \\ x/Read(Create)"| n1' in mermaid


def test_tagged_outputs_name_their_edges() -> None:
    class Split(td.DoFn):
        def process(self, x: int) -> Any:
            yield x if x % 2 else td.TaggedOutput("even", x)

    p = td.Pipeline()
    outs = p | "Nums" >> td.Create([1, 2]) | "Split" >> td.ParDo(Split()).with_outputs("even", main="odd")
    _ = outs.even | "Even" >> td.Map(str)
    _ = outs.odd | "Odd" >> td.Map(str)
    dot = p.to_dot()
    assert '"n1" -> "n2" [label="Split.even"];' in dot
    assert '"n1" -> "n3" [label="Split.odd"];' in dot


def test_empty_pipeline() -> None:
    p = td.Pipeline()
    assert p.to_mermaid() == "flowchart TD"
    assert p.to_dot().endswith('fontsize=10];\n}')
