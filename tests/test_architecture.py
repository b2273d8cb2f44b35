"""
The shape of the package: no runtime import cycles among relaycall's modules.

``python -m tests.test_architecture`` prints the cycles (strongly connected
components of the runtime import graph) and the package's line count.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "relaycall"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(
    tree: ast.AST, here: str, is_package: bool, modules: set[str] | dict[str, Path]
) -> Iterator[str]:
    """Every module a file imports when it runs (anywhere but under ``if TYPE_CHECKING:``)."""

    def walk(node: ast.AST) -> Iterator[ast.AST]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from (n for s in child.orelse for n in [s, *walk(s)])
                continue
            yield child
            yield from walk(child)

    package = here if is_package else here.rpartition(".")[0]
    for node in walk(tree):
        if isinstance(node, ast.Import):
            # ``import pkg.mod`` runs pkg's __init__ too, but the edge is to pkg.mod.
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            if node.level:
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            assert source is not None
            names = [f"{source}.{alias.name}" for alias in node.names]
            # ``from pkg import mod`` is an edge to the submodule, as ``import pkg.mod``
            # is: a package's __init__ runs first either way, which is not a cycle of
            # the code's own making (else every module would cycle through relaycall).
            submodules = [n for n in names if n in modules]
            yield from submodules
            if len(submodules) < len(names):
                yield source


def import_graph() -> dict[str, set[str]]:
    """Module -> the relaycall modules it imports at runtime (parent packages are no edge)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        graph[name] = {
            target
            for target in _runtime_imports(tree, name, is_package, files)
            if target in files and target != name
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(1000, 10 * len(graph)))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_runtime_import_cycles() -> None:
    """relaycall's modules import each other without cycles (TYPE_CHECKING imports aside)."""
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The finder itself: a two-module and a three-module cycle are reported, a chain is not."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(cycles(graph)) == [["a", "b"], ["c", "d", "e"]]


def foreign_private_attributes(source: str) -> set[str]:
    """
    The ``x._name`` attributes a module reads off objects it does not define.

    ``self._name`` is the object's own (inherited or not). On any other
    object, an attribute is the module's own when one of its classes sets it
    on ``self``, lists it in ``__slots__``, or defines it as a method; anything
    else starting with one ``_`` belongs to another module's object.
    """
    tree = ast.parse(source)
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id == "self":
                own.add(node.attr)
        elif isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__slots__":
            own.update(ast.literal_eval(node.value))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and node.attr not in own
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    }


def test_the_receiver_reaches_into_no_other_module_s_objects() -> None:
    """
    The receiver routes through the session's Router (relaycall/_routing.py) alone.

    It reads no private attribute of the session or the handles (it read
    ``relay._calls``, ``call._ops``, ``op._generation``... before).
    """
    source = (PACKAGE / "_receiver.py").read_text(encoding="utf-8")
    assert foreign_private_attributes(source) == set()


def test_the_private_attribute_finder_finds_one() -> None:
    """The finder itself: another object's ``_calls`` and ``_apply`` are reported, own ones not."""
    source = (
        "class R:\n"
        "    __slots__ = ('_a',)\n"
        "    def __init__(self, relay): self._relay = relay; self._a = 1\n"
        "    def _own(self): return self._relay._calls.get(self._a)\n"
        "    def route(self, op): op._apply(self._own())\n"
    )
    assert foreign_private_attributes(source) == {"_calls", "_apply"}


if __name__ == "__main__":
    for component in cycles(import_graph()):
        print(f"cycle of {len(component)}: {' '.join(component)}")
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py"))
    print(f"relaycall/: {lines} lines in {len(list(PACKAGE.rglob('*.py')))} files")
