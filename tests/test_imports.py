"""The house's shape, read from the source: no import cycles between project modules, and data flowing one way
(space ← train ← evaluators ← search). Imports inside functions count (a cycle deferred to call time is still a
cycle); imports under ``if TYPE_CHECKING:`` do not (they never run)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("space", "train", "evaluators", "search")
LAYER = {name: i for i, name in enumerate(PACKAGES)}
HEAVY = ("optuna", "ray")  # only search/ may import these


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(name: str) -> set[str]:
    """Absolute names of everything module ``name`` imports (project or not)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return found


GRAPH = {m: {i for i in imports_of(m) if i in MODULES and i != m} for m in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for m in sorted(GRAPH):
        if m not in index:
            visit(m)
    return out


def _is_package_init_of(pkg: str, mod: str) -> bool:
    return mod.startswith(pkg + ".")


def test_no_import_cycles():
    # A package's __init__ re-exporting its own submodules is not a cycle unless a submodule imports the
    # package back; both directions are edges here, so any such loop is reported.
    assert _cycles() == []


def test_the_cycle_finder_finds_a_cycle():
    """The detector itself, on a graph with a known loop a → b → c → a and a tail d → a."""
    global GRAPH
    saved = GRAPH
    GRAPH = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    try:
        assert _cycles() == [["a", "b", "c"]]
    finally:
        GRAPH = saved


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layers_point_down(module):
    """space ← train ← evaluators ← search: a module imports only its own package and those below it."""
    own = LAYER[module.split(".")[0]]
    up = sorted(i for i in GRAPH[module] if LAYER[i.split(".")[0]] > own)
    assert up == [], f"{module} imports from a package above it: {up}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("search")))
def test_only_search_imports_optuna_or_ray(module):
    heavy = sorted(i for i in imports_of(module) if i.split(".")[0] in HEAVY)
    assert heavy == [], f"{module} imports {heavy}; only search/ may"
