"""The code's layout rules, read from the source with ``ast`` (nothing is imported):

* no import cycle among the ``ggik_core`` and ``pipeline`` modules, counting module-level and
  function-level imports alike;
* the library's layers import downwards only: robots -> data -> model -> solve -> api (and
  ``ggik_core`` never imports ``pipeline``);
* no module is longer than :data:`MAX_LINES` lines;
* no private name (``_x``) is imported from another module;
* the benchmarks are no stage's code: no stage module imports ``pipeline.bench``.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ggik_core", "pipeline")
MAX_LINES = 400

#: folders left out of the checks below (none)
NOT_YET_CHECKED: tuple[str, ...] = ()

#: the library's layers, lowest first: a module may import its own layer and the ones before it
LAYERS = ("ggik_core.errors", "ggik_core.runtime", "ggik_core.robots", "ggik_core.data", "ggik_core.model", "ggik_core.solve",
          "ggik_core.weights", "ggik_core.api")


def checked(path: Path) -> bool:
    rel = path.relative_to(REPO)
    return not any(rel == Path(p) or Path(p) in rel.parents for p in NOT_YET_CHECKED)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}
CHECKED = {name: path for name, path in MODULES.items() if checked(path)}


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))


def absolute(name: str, node: ast.ImportFrom) -> str:
    """The module an ``ImportFrom`` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(name: str) -> list[tuple[str, ast.AST]]:
    """First-party modules ``name`` imports anywhere (functions included), with the import node:
    ``from a import b`` names ``a.b`` when that is a module, else ``a``."""
    out = []
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names if a.name in MODULES]
        elif isinstance(node, ast.ImportFrom):
            mod = absolute(name, node)
            for a in node.names:
                if f"{mod}.{a.name}" in MODULES:
                    out.append((f"{mod}.{a.name}", node))
                elif mod in MODULES:
                    out.append((mod, node))
    return out


def graph() -> dict[str, set[str]]:
    return {name: {m for m, _ in imports(name) if m in CHECKED and m != name} for name in CHECKED}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of its modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_follows_function_level_imports() -> None:
    """The checker itself: a cycle closed by an import inside a function is found."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    fn_level = ast.parse("def f():\n    from pipeline.cli import app\n")
    assert any(isinstance(n, ast.ImportFrom) and n.module == "pipeline.cli" for n in ast.walk(fn_level))


def layer(name: str) -> int | None:
    for i, prefix in enumerate(LAYERS):
        if name == prefix or name.startswith(prefix + "."):
            return i
    return None


def test_library_layers_import_downwards_only() -> None:
    wrong = []
    for name in CHECKED:
        if not name.startswith("ggik_core.") or layer(name) is None:
            continue
        for m, node in imports(name):
            if m.startswith("pipeline") or (layer(m) is not None and layer(m) > layer(name) and m in CHECKED):
                wrong.append(f"{MODULES[name].relative_to(REPO)}:{node.lineno} imports {m}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(CHECKED))
def test_module_length(name: str) -> None:
    n = len(MODULES[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{MODULES[name].relative_to(REPO)} has {n} lines (at most {MAX_LINES})"


def test_no_private_name_is_imported_across_modules() -> None:
    found = []
    for name in CHECKED:
        for node in ast.walk(tree(name)):
            if isinstance(node, ast.ImportFrom) and absolute(name, node).split(".")[0] in PACKAGES:
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        found.append(f"{MODULES[name].relative_to(REPO)}:{node.lineno} imports {a.name} from {absolute(name, node)}")
    assert not found, "\n".join(found)


def test_no_stage_imports_the_benchmarks() -> None:
    wrong = [f"{name} imports {m}" for name in MODULES if name.startswith("pipeline.stages")
             for m, _ in imports(name) if m.startswith("pipeline.bench")]
    assert not wrong, "\n".join(wrong)


def test_every_module_is_seen() -> None:
    """The checks read every module of both packages (the TODO list aside)."""
    assert "pipeline.cli" in CHECKED and "ggik_core.api" in CHECKED and "pipeline.stages.train.loop" in CHECKED
    assert all(checked(p) for p in CHECKED.values())
    assert len(CHECKED) + sum(not checked(p) for p in MODULES.values()) == len(MODULES)


def test_test_files_have_unique_names() -> None:
    """pytest imports test files by their base name (no packages under tests/): two with one name
    break collection."""
    seen: dict[str, Path] = {}
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        assert path.name not in seen, f"{path.relative_to(REPO)} and {seen[path.name].relative_to(REPO)}"
        seen[path.name] = path
