"""Porting a Beam program: the rewrite of its imports, and what in it tidal lacks.

The porting contract: replacing every ``apache_beam`` with ``tidal`` in a Beam
program that uses what tidal supports gives a tidal program that runs and
produces Beam's output. :func:`rewrite` is that textual replacement, and
:func:`unsupported` reads the original program (without running it) and
lists every ``apache_beam`` name it uses that tidal does not have, and every
keyword argument a tidal transform does not take, each with its line, so a
user knows before running what will not port.

>>> source = "import apache_beam as beam\\nfrom apache_beam.io.gcp.bigquery import WriteToBigQuery\\n"
>>> print(rewrite(source), end="")
import tidal as beam
from tidal.io.gcp.bigquery import WriteToBigQuery
>>> [str(u) for u in unsupported(source)]
['line 2: apache_beam.io.gcp.bigquery (tidal has no module tidal.io.gcp)']
"""

from __future__ import annotations

import ast
import importlib
import inspect
from typing import Any, Iterator

import attrs

__all__ = ["Unsupported", "rewrite", "unsupported", "BEAM", "TIDAL"]

BEAM = "apache_beam"
TIDAL = "tidal"


def rewrite(source: str) -> str:
    """The program with every ``apache_beam`` replaced by ``tidal`` (a plain textual rewrite)."""
    return source.replace(BEAM, TIDAL)


@attrs.frozen(order=True)
class Unsupported:
    """A name (or a keyword argument) the Beam program uses that tidal lacks."""

    line: int
    name: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.name} ({self.reason})"


_MISSING = object()


def _tidal_path(beam_path: str) -> str:
    return TIDAL + beam_path[len(BEAM):]


def _resolve(beam_path: str) -> tuple[Any, str | None]:
    """The tidal object at ``beam_path`` (rewritten), or _MISSING with why."""
    parts = _tidal_path(beam_path).split(".")
    obj: Any = importlib.import_module(TIDAL)
    where = TIDAL
    for i, part in enumerate(parts[1:], start=1):
        last = i == len(parts) - 1
        if hasattr(obj, part):
            obj = getattr(obj, part)
        elif inspect.ismodule(obj):
            name = f"{where}.{part}"
            try:
                obj = importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:
                    raise  # tidal itself failed to import something: not the program's fault
                return _MISSING, f"{where} has no {part}" if last else f"tidal has no module {name}"
        else:
            return _MISSING, f"tidal's {where} has no attribute {part}"
        where = f"{where}.{part}"
    return obj, None


class _Finder(ast.NodeVisitor):
    """Finds the Beam names a module uses and checks each against tidal."""

    def __init__(self) -> None:
        self.bindings: dict[str, str] = {}  # local name -> Beam dotted path
        self.found: list[Unsupported] = []
        self._seen: set[tuple[int, str]] = set()

    def _report(self, line: int, name: str, reason: str) -> None:
        if (line, name) not in self._seen:
            self._seen.add((line, name))
            self.found.append(Unsupported(line, name, reason))

    def _check(self, line: int, beam_path: str) -> Any:
        obj, why = _resolve(beam_path)
        if obj is _MISSING:
            self._report(line, beam_path, why or "missing")
        return obj

    # -- imports ------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name != BEAM and not alias.name.startswith(BEAM + "."):
                continue
            self._check(node.lineno, alias.name)
            if alias.asname:
                self.bindings[alias.asname] = alias.name
            else:
                self.bindings[alias.name.split(".")[0]] = BEAM

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        if node.level or (module != BEAM and not module.startswith(BEAM + ".")):
            return
        if self._check(node.lineno, module) is _MISSING:
            return
        for alias in node.names:
            if alias.name == "*":
                continue
            path = f"{module}.{alias.name}"
            if self._check(node.lineno, path) is not _MISSING:
                self.bindings[alias.asname or alias.name] = path

    # -- scopes: a parameter or local variable hides a module alias of the same name ------------
    def _visit_scope(self, node: ast.AST, local_names: set[str]) -> None:
        hidden = {name: self.bindings.pop(name) for name in local_names if name in self.bindings}
        try:
            self.generic_visit(node)
        finally:
            self.bindings.update(hidden)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        for default in [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]:
            self.visit(default)
        body = ast.Module(body=node.body, type_ignores=[])
        self._visit_scope(body, _parameters(node.args) | _assigned_names(node.body))

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for default in [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]:
            self.visit(default)
        self._visit_scope(ast.Expression(body=node.body), _parameters(node.args))

    def _visit_comprehension(self, node: ast.AST) -> None:
        targets: set[str] = set()
        for generator in getattr(node, "generators", []):
            targets |= {n.id for n in ast.walk(generator.target) if isinstance(n, ast.Name)}
        self._visit_scope(node, targets)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _visit_comprehension

    # -- uses -----------------------------------------------------------------------------
    def _dotted(self, node: ast.AST) -> tuple[str, list[str]] | None:
        """For ``a.b.c`` with ``a`` bound to a Beam path: (that path, ["b", "c"])."""
        attrs_: list[str] = []
        while isinstance(node, ast.Attribute):
            attrs_.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.bindings:
            return self.bindings[node.id], list(reversed(attrs_))
        return None

    def _check_chain(self, node: ast.AST) -> Any:
        dotted = self._dotted(node)
        if dotted is None:
            return _MISSING
        path, rest = dotted
        obj: Any = _resolve(path)[0]
        for part in rest:
            if obj is _MISSING:
                return _MISSING
            if not (inspect.ismodule(obj) or inspect.isclass(obj)):
                return _MISSING  # an attribute of a value: not a name tidal must have
            path = f"{path}.{part}"
            obj = self._check(getattr(node, "lineno", 0), path)
        return obj

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self._dotted(node) is not None:
            self._check_chain(node)
            return  # the inner attributes are part of this chain
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        target = self._check_chain(node.func) if self._dotted(node.func) is not None else _MISSING
        if target is not _MISSING and callable(target):
            self._check_keywords(node, target)
        self.generic_visit(node)

    def _check_keywords(self, node: ast.Call, target: Any) -> None:
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):
            return
        params = signature.parameters
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return
        dotted = self._dotted(node.func)
        name = ".".join([dotted[0], *dotted[1]]) if dotted else "?"
        for kw in node.keywords:
            if kw.arg is not None and kw.arg not in params:
                self._report(node.lineno, f"{name}({kw.arg}=...)", f"tidal's {name.rsplit('.', 1)[-1]} takes no argument {kw.arg!r}")


def _parameters(args: ast.arguments) -> set[str]:
    names = {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
    if args.vararg is not None:
        names.add(args.vararg.arg)
    if args.kwarg is not None:
        names.add(args.kwarg.arg)
    return names


def _assigned_names(body: list[ast.stmt]) -> set[str]:
    """Names a function body binds (assignments, loops, with, imports), not looking into nested functions."""
    names: set[str] = set()
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        stack.extend(ast.iter_child_nodes(node))
    return names


def unsupported(source: str, filename: str = "<program>") -> list[Unsupported]:
    """What the Beam program ``source`` uses that tidal lacks, in line order."""
    tree = ast.parse(source, filename=filename)
    finder = _Finder()
    # Imports first, so names bound anywhere in the file are known where they are used.
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            finder.visit_Import(node)
        elif isinstance(node, ast.ImportFrom):
            finder.visit_ImportFrom(node)
    for node in _non_import_statements(tree):
        finder.visit(node)
    return sorted(set(finder.found))


def _non_import_statements(tree: ast.AST) -> Iterator[ast.AST]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        yield node
