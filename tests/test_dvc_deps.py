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


# --------------------------------------------------------------------------- params


def section_classes() -> dict[type, str]:
    """Each params.yaml section's dataclass and its name (the fields of the whole-file view)."""
    import typing

    from pipeline.stages.params import Params

    return {cls: name for name, cls in typing.get_type_hints(Params).items()}


def command_function(command: str) -> ast.FunctionDef:
    tree = ast.parse(module_file("pipeline.stages.cli").read_text())
    for fn in (s for s in tree.body if isinstance(s, ast.FunctionDef)):
        for dec in fn.decorator_list:
            if isinstance(dec, ast.Call) and (dec.args[0].value if dec.args else fn.name.replace("_", "-")) == command:
                return fn
    raise AssertionError(f"no stage command {command!r}")


def body_imports(fn: ast.FunctionDef) -> dict[str, tuple[str, str]]:
    """``local name -> (module, name)`` for the ``from m import n [as x]`` in a command's body."""
    return {a.asname or a.name: (n.module, a.name) for n in ast.walk(fn) if isinstance(n, ast.ImportFrom) for a in n.names}


def fields(cls: type) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(cls)}


def attribute_reads(tree: ast.AST, cls_by_name: dict[str, type]) -> set[str]:
    """Attribute names read in ``tree``, and the fields that ``pick(Cls, x, prefix=...)`` reads by name."""
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "pick"):
        prefix = next((k.value.value for k in call.keywords if k.arg == "prefix"), "")
        cls = cls_by_name.get(getattr(call.args[0], "id", ""))
        names |= {prefix + f for f in fields(cls)} if cls is not None else set()
    return names


def params_read(stage: str) -> set[str]:
    """The ``section.field`` keys a stage's code reads, or ``section`` where it reads the whole section.

    The command's ``load_*_params`` loader names the sections (its return type: one section's
    dataclass, or one with a field per section). One section: the fields the command takes from
    the loaded object, or, when it hands the object on, the fields read by attribute (or by
    ``pick``) in the module that receives it. Several sections: in the stage's own code
    (``pipeline/``), ``<x>.<section>.<field>`` reads that field; ``<x>.<section>`` used any other
    way (kept, passed on, ``asdict``) reads the whole section.
    """
    import importlib
    import typing

    sections = section_classes()
    fn = command_function(STAGES[stage]["cmd"].split()[3])
    imports = body_imports(fn)
    call = next(n for n in ast.walk(fn) if isinstance(n, ast.Call) and getattr(n.func, "id", "").startswith("load_"))
    loader = getattr(importlib.import_module(imports[call.func.id][0]), imports[call.func.id][1])
    cls = typing.get_type_hints(loader)["return"]
    if cls in sections:
        taken = [n.attr for n in ast.walk(fn) if isinstance(n, ast.Attribute) and n.value is call]
        if taken:
            return {f"{sections[cls]}.{f}" for f in taken}
        module = importlib.import_module(imports["run"][0])
        read = attribute_reads(ast.parse(Path(module.__file__).read_text()),
                               {k: v for k, v in vars(module).items() if isinstance(v, type)})
        return {f"{sections[cls]}.{f}" for f in fields(cls) & read}
    parts = {name: sub for name, sub in typing.get_type_hints(cls).items() if sub in sections}
    out: set[str] = set()
    files = [f for f in command_files(STAGES[stage]["cmd"].split()[3]) if (REPO / "pipeline") in f.parents]
    for tree in (ast.parse(f.read_text()) for f in files):
        inner = {id(n.value) for n in ast.walk(tree)
                 if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr in parts
                 and n.attr in fields(parts[n.value.attr])}
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and n.attr in parts and id(n) not in inner:
                out.add(n.attr)
            elif id(getattr(n, "value", None)) in inner:
                out.add(f"{n.value.attr}.{n.attr}")
    return out


def listed(key: str, params: list) -> bool:
    names = [p if isinstance(p, str) else next(iter(p)) for p in params]
    return any(key == n or key.startswith(n + ".") for n in names)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_params_cover_the_keys_its_code_reads(stage: str) -> None:
    read = params_read(stage) if "--params" in STAGES[stage]["cmd"] else set()
    missing = sorted(k for k in read if not listed(k, STAGES[stage].get("params", [])))
    assert not missing, f"stage {stage}: params miss {missing}"


def test_params_reader_finds_each_stages_keys() -> None:
    """The checker itself: the train stage reads data.robots only of the data section."""
    train = params_read("train")
    assert "data.robots" in train and {"model", "train"} <= train and "data" not in train and "data.seed" not in train
    assert params_read("build_graphs") == {"data.shard_size"}
    assert {"data.seed", "data.p_skew", "data.robots"} <= params_read("generate") and "data.shard_size" not in params_read("generate")
    assert {"eval.seed", "eval.refine_pos_tol", "eval.distinct_tol"} <= params_read("evaluate")
