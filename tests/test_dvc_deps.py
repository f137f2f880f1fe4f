"""Every DVC stage's deps cover the code it runs: the modules its command imports, transitively."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ggik_core", "pipeline")


def module_file(name: str) -> Path | None:
    """The file of a first-party module (package ``__init__`` or ``.py``), or None if it is not ours."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.exists():
            return path
    return None


def imported_modules(tree: ast.AST) -> set[str]:
    """First-party modules imported anywhere in ``tree`` (function-local imports included).
    ``from a.b import c`` counts ``a.b``, ``a.b.c`` when that is a module, and every parent package."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    out = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            if module_file(".".join(parts[:i])) is not None:
                out.add(".".join(parts[:i]))
    return out


def command_files(command: str) -> set[Path]:
    """The files the command ``command`` runs: its module and the closure of its imports."""
    module, names = command_imports(command)
    return closure(names) | {module_file(module)}


def closure(start: set[str]) -> set[Path]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is not None:
            todo.extend(imported_modules(ast.parse(path.read_text())) - seen)
    return {module_file(n) for n in seen if module_file(n) is not None}


#: the modules that define Typer commands; pipeline/cli.py only assembles them into one app
COMMAND_MODULES = ("pipeline.stages.cli", "pipeline.commands.cli", "pipeline.bench.cli")


def command_imports(command: str) -> tuple[str, set[str]]:
    """The module that defines the Typer command ``command``, and the modules imported at that
    module's top and in the command's body (its other commands' bodies are not followed)."""
    for module in COMMAND_MODULES:
        tree = ast.parse(module_file(module).read_text())
        top = {n for stmt in tree.body if isinstance(stmt, (ast.Import, ast.ImportFrom)) for n in imported_modules(stmt)}
        for fn in (s for s in tree.body if isinstance(s, ast.FunctionDef)):
            for dec in fn.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "attr", None) == "command":
                    name = dec.args[0].value if dec.args else fn.name.replace("_", "-")
                    if name == command:
                        return module, top | imported_modules(fn)
    raise AssertionError(f"no Typer command {command!r} in {', '.join(COMMAND_MODULES)}")


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(REPO)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_imported_code(stage: str) -> None:
    spec = STAGES[stage]
    words = spec["cmd"].split()
    assert words[:3] == ["python", "-m", "pipeline"], spec["cmd"]
    files = command_files(words[3])
    # the packages' own __init__ files hold only a docstring and the version string
    files -= {REPO / "pipeline" / "__init__.py", REPO / "ggik_core" / "__init__.py"}
    assert not [f for f in files if (REPO / "pipeline" / "bench") in f.parents], f"stage {stage} runs benchmark code"
    missing = sorted(str(f.relative_to(REPO)) for f in files if not covered(f, spec["deps"]))
    assert not missing, f"stage {stage}: deps miss {missing}"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_list_only_code_it_runs(stage: str) -> None:
    """No code dep is listed that the stage does not run (it would rerun the stage for nothing)."""
    spec = STAGES[stage]
    files = command_files(spec["cmd"].split()[3])
    code = [d for d in spec["deps"] if d.split("/")[0] in PACKAGES]
    unused = [d for d in code if not any(covered(f, [d]) for f in files)]
    assert not unused, f"stage {stage}: deps list code it does not run: {unused}"


def test_closure_finds_nested_library_imports() -> None:
    """The checker itself: the train command reaches the graph builder through the batcher."""
    files = command_files("train")
    assert REPO / "ggik_core" / "data" / "graph.py" in files
    assert REPO / "ggik_core" / "model" / "layers" / "egnn.py" in files
    assert not covered(REPO / "ggik_core" / "data" / "graph.py", ["ggik_core/model", "pipeline/stages/train"])
    assert covered(REPO / "pipeline" / "stages" / "train" / "loop.py", ["pipeline/stages/train"])


def test_no_stage_lists_the_benchmarks() -> None:
    for stage, spec in STAGES.items():
        assert not [d for d in spec["deps"] if d.startswith("pipeline/bench")], stage


@pytest.mark.parametrize("stage", ["generate", "build_graphs"])
def test_data_stages_need_neither_the_model_nor_the_solver(stage: str) -> None:
    files = command_files(STAGES[stage]["cmd"].split()[3])
    assert not [f for f in files if {REPO / "ggik_core" / "model", REPO / "ggik_core" / "solve"} & set(f.parents)], stage
