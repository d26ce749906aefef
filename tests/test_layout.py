"""The layout stays true: the import-linter contracts in pyproject.toml hold, no module of the library takes part
in an import cycle (function-level imports included), nothing imports the package root from inside, and no
module grows past ~500 lines without saying why in its docstring."""

from __future__ import annotations

import ast
import contextlib
import io
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "structgen"
LONG_MODULE_LINES = 500
LONG_MODULE_NOTE = "Why it is long:"   # what a module over the limit must explain in its docstring


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("structgen", cache_dir=None)


def test_the_import_contracts_in_pyproject_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True)
    assert code == 0, out.getvalue()


def _strongly_connected(nodes: set[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the components of more than one module (each one holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def test_strongly_connected_finds_a_planted_cycle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _strongly_connected(set(edges), edges) == [["a", "b", "c"]]
    assert _strongly_connected({"a", "b"}, {"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules(graph: grimp.ImportGraph) -> None:
    modules = {m for m in graph.modules if m == "structgen" or m.startswith("structgen.")}
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i in modules} for m in modules}
    cycles = _strongly_connected(modules, edges)
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_imports_the_package_root(graph: grimp.ImportGraph) -> None:
    # `from structgen import x` inside the library would import everything, whatever the layer.
    importers = sorted(graph.find_modules_that_directly_import("structgen"))
    assert importers == [], importers


def test_long_modules_say_why() -> None:
    unexplained = []
    for path in sorted(LIBRARY.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.count("\n")
        if lines > LONG_MODULE_LINES and LONG_MODULE_NOTE not in (ast.get_docstring(ast.parse(source)) or ""):
            unexplained.append(f"{path.relative_to(REPO)} ({lines} lines)")
    assert not unexplained, f"over {LONG_MODULE_LINES} lines with no '{LONG_MODULE_NOTE}' in the docstring: {unexplained}"


def test_every_library_module_has_a_docstring() -> None:
    missing = [str(p.relative_to(REPO)) for p in sorted(LIBRARY.rglob("*.py"))
               if p.stat().st_size and not ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))]
    assert not missing, missing
