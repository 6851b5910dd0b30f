"""The import graph of ``protocols/``: no cycles, and nothing that does I/O.

The graph is read from the source with ``ast`` (not by importing), so an import hidden inside
a function to dodge a cycle at load time still counts as the edge it is. Imports under
``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "protocols"

IMPURE = ("twisted", "sqlite3", "socket", "asyncio", "subprocess", "gateway")
"""Top-level modules a pure protocol layer has no business importing."""


def module_name(path: Path) -> str:
    """``protocols/z3950/codec.py`` -> ``protocols.z3950.codec`` (packages by their folder)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except under ``if TYPE_CHECKING:``."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _type_checking_only(node):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules C{name} imports: project modules by full name, others by top-level name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = package.split(".")
            base = base[:len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        for alias in node.names:
            candidate = f"{source}.{alias.name}"
            out.add(candidate if candidate in known else source)
    return {target if target in known else target.split(".")[0] for target in out}


@cache
def graph() -> dict[str, set[str]]:
    """Module -> what it imports, for every module of protocols/ (read once)."""
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work.append((root, iter(sorted(edges[root] & edges.keys()))))
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child] & edges.keys()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in edges[node]:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_cycles() -> None:
    """The checker itself: a two-module cycle and a self-import are found, a chain is not."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"a"}}) == [["a"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_sees_lazy_imports(tmp_path: Path) -> None:
    """An import inside a function is an edge; one under TYPE_CHECKING is not."""
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from .b import B\n"
                      "def f():\n    from .c import C\n    return C\n")
    known = {"p.m": source, "p.b": source, "p.c": source}
    assert imported("p.m", source, known) == {"typing", "p.c"}


def test_no_import_cycles_in_protocols() -> None:
    """No module of protocols/ reaches itself through its imports (lazy ones included)."""
    edges = graph()
    assert "protocols.z3950.codec" in edges and "protocols.z3950.fastber" in edges
    assert cycles(edges) == []


def test_fastber_never_imports_codec() -> None:
    """The fast path and the pyasn1 codec meet in pdus, not in each other."""
    edges = graph()
    assert "protocols.z3950.codec" not in edges["protocols.z3950.fastber"]
    assert "protocols.z3950.pdus" in edges["protocols.z3950.fastber"]
    assert "protocols.z3950.client" not in edges["protocols.z3950.codec"]


@pytest.mark.parametrize("name", sorted(modules()))
def test_protocols_do_no_io(name: str) -> None:
    """protocols/ is pure: no Twisted, no sockets, no SQLite, nothing from the gateway."""
    assert not graph()[name] & set(IMPURE)
