"""The command line, run as a user runs it: `python -m pipeline ...` in a subprocess.

User errors must come out as exactly one line ``ggik: error: ...`` on stderr, a non-zero exit
code and no traceback.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ggik_core.data.shards import MANIFEST

REPO = Path(__file__).resolve().parents[2]

TINY_PARAMS = """\
data:
  seed: 1
  n_problems: 60
  dofs: [6, 7]
  geometry: noncoplanar
  shard_size: 20
model:
  layer: egnn
  hidden: 8
  layers: 1
  latent: 2
  components: 2
  message: 8
train:
  epochs: 1
  batch_size: 16
"""


def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["COLUMNS"] = "200"
    env["OMP_NUM_THREADS"] = "1"  # tiny problems: avoid thread-pool contention on a busy 2-core machine
    return env


def start_cli(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args], cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen, timeout: float = 180) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()  # only the process this test started
        out, err = proc.communicate()
        err += f"\n[test harness: killed after {timeout} s]"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return finish(start_cli(cwd, *args))


def assert_one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert res.returncode != 0, f"exit code 0; stderr: {res.stderr}"
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{res.stderr}"
    assert lines[0].startswith("ggik: error:"), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


BAD_PARAMS = {
    "malformed": ("data:\n  n_problems: [1, 2\n  dofs: {\n", "YAML"),
    "unknown_key": ("data:\n  n_problems: 10\n  bananas: 3\n", "bananas"),
    "bad_geometry": ('data:\n  geometry: "banana"\n', "banana"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Every CLI run of this file, started together (each pays the interpreter and torch start-up).

    Independent commands run in the background while the dependent chain
    generate -> build-graphs -> (corrupt a shard) -> train runs in the foreground.
    """
    base = tmp_path_factory.mktemp("cli")
    background: dict[str, tuple[Path, subprocess.Popen]] = {}
    d = base / "robots"
    d.mkdir()
    background["robots"] = (d, start_cli(d, "robots"))
    for case, (text, _) in BAD_PARAMS.items():
        d = base / case
        d.mkdir()
        (d / "params.yaml").write_text(text)
        background[case] = (d, start_cli(d, "generate"))
    out: dict[str, tuple[Path, subprocess.CompletedProcess]] = {}
    try:
        built = base / "built"
        built.mkdir()
        (built / "params.yaml").write_text(TINY_PARAMS)
        out["generate"] = (built, run_cli(built, "generate"))
        out["build-graphs"] = (built, run_cli(built, "build-graphs"))
        corrupt = base / "corrupt"
        corrupt.mkdir()
        if (built / "data" / "graphs" / MANIFEST).exists():
            shutil.copytree(built / "data", corrupt / "data")
            shutil.copy(built / "params.yaml", corrupt / "params.yaml")
            manifest = json.loads((corrupt / "data" / "graphs" / MANIFEST).read_text())
            shard = corrupt / "data" / "graphs" / manifest["shards"][-1]["file"]
            data = bytearray(shard.read_bytes())
            data[len(data) // 3] ^= 0x40
            shard.write_bytes(bytes(data))
            out["corrupt_shard"] = (shard, None)
            out["train"] = (corrupt, run_cli(corrupt, "train"))
    finally:
        for name, (d, proc) in background.items():
            out[name] = (d, finish(proc))
    return out


def test_robots_lists_the_catalog(runs):
    _, res = runs["robots"]
    assert res.returncode == 0, res.stderr
    rows = {}
    for line in res.stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 5 and cells[1] in ("ur10", "kuka", "lwa4d", "lwa4p", "panda"):
            rows[cells[1]] = cells
    assert sorted(rows) == ["kuka", "lwa4d", "lwa4p", "panda", "ur10"]
    # columns: name, DOF, coplanar, axes, limits, description
    assert {k: v[2] for k, v in rows.items()} == {"ur10": "6", "kuka": "7", "lwa4d": "7", "lwa4p": "6", "panda": "7"}
    assert rows["panda"][3] == "no"
    for name in ("ur10", "kuka", "lwa4d", "lwa4p"):
        assert rows[name][3] == "yes", name
    # the Panda's skew pairs are 3-4, 4-5 and 6-7 (spec §2)
    assert rows["panda"][4] == "IISSIS"
    assert "S" not in "".join(rows[n][4] for n in ("ur10", "kuka", "lwa4d", "lwa4p"))


def test_generate_and_build_graphs(runs):
    cwd, gen = runs["generate"]
    _, build = runs["build-graphs"]
    assert gen.returncode == 0, gen.stderr
    assert "Traceback" not in gen.stderr
    assert "wrote 60 problems" in gen.stderr
    assert (cwd / "data" / "problems.parquet").is_file()
    assert build.returncode == 0, build.stderr
    assert "Traceback" not in build.stderr
    manifest = json.loads((cwd / "data" / "graphs" / MANIFEST).read_text())
    assert manifest["counts"] == {"6": 30, "7": 30}
    assert manifest["total"] == 60
    assert sorted(e["count"] for e in manifest["shards"]) == [10, 10, 20, 20]
    assert "wrote 4 shards (60 graphs)" in build.stderr
    for e in manifest["shards"]:
        assert (cwd / "data" / "graphs" / e["file"]).is_file()


@pytest.mark.parametrize("case", sorted(BAD_PARAMS))
def test_bad_params_one_line_error(runs, case):
    cwd, res = runs[case]
    assert_one_line_error(res, BAD_PARAMS[case][1])
    assert not (cwd / "data").exists()


def test_train_on_corrupt_shard(runs):
    assert "train" in runs, "build-graphs did not produce a manifest"
    shard, _ = runs["corrupt_shard"]
    cwd, res = runs["train"]
    assert_one_line_error(res, shard.name)
    assert not (cwd / "data" / "model" / "model.pt").exists()


@pytest.fixture()
def built(runs) -> Path:
    cwd, build = runs["build-graphs"]
    assert build.returncode == 0, build.stderr
    return cwd


# --------------------------------------------------------------------------------------------
# Parameter values that pass `load_params` but crash later. Run in-process through the CLI's
# entry point (fast); global state that `train` touches is restored afterwards.


@pytest.fixture()
def restore_global_state():
    torch_rng = torch.get_rng_state()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    threads = torch.get_num_threads()
    py_rng = random.getstate()
    np_rng = np.random.get_state()
    env = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    yield
    torch.set_rng_state(torch_rng)
    torch.use_deterministic_algorithms(det, warn_only=warn_only)
    torch.set_num_threads(threads)
    random.setstate(py_rng)
    np.random.set_state(np_rng)
    if env is None:
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def run_main(monkeypatch, capsys, cwd: Path, *args: str) -> tuple[int, str]:
    from pipeline.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["ggik", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr().err


def test_in_process_entry_point_reports_user_errors(monkeypatch, capsys, tmp_path):
    # the harness of the tests below works on a case the CLI handles
    (tmp_path / "params.yaml").write_text('data:\n  geometry: "banana"\n')
    code, err = run_main(monkeypatch, capsys, tmp_path, "generate")
    assert code == 2
    assert err.strip().startswith("ggik: error:") and len(err.strip().splitlines()) == 1


INVALID_PARAMS = {
    "empty_dofs": ("data:\n  dofs: []\n", "generate",
                   "load_params accepts data.dofs: []; pipeline/stages/data.py per_dof_counts then raises "
                   "ZeroDivisionError (divmod by len(dofs)) with a traceback"),
    "zero_shard_size": ("data:\n  shard_size: 0\n", "build-graphs",
                        "load_params accepts data.shard_size: 0; pipeline/stages/data.py build_graphs first "
                        "deletes the old shards and manifest, then range(..., 0) raises ValueError with a traceback"),
    "zero_epochs": ("train:\n  epochs: 0\n", "train",
                    "pipeline/stages/train/loop.py train() raises FloatingPointError('no epoch was trained') for train.epochs: 0; "
                    "it is not a GGIKError, so the CLI prints a traceback"),
    "negative_grad_clip": ("train:\n  grad_clip: -1.0\n", "train",
                           "a negative train.grad_clip would reach torch.nn.utils.clip_grad_norm_ and scale every "
                           "gradient by a negative factor (training the wrong way) instead of failing"),
    "zero_relax": ("eval:\n  relax: 0\n", "evaluate",
                   "eval.relax: 0 would freeze the latent after the first re-encoding pass (and a negative one "
                   "would push it away), silently; it must be positive"),
    "zero_batch_size": ("train:\n  batch_size: 0\n", "train",
                        "load_params accepts train.batch_size: 0; pipeline/stages/train/batching.py batches() then "
                        "raises RuntimeError from Tensor.split(0) with a traceback"),
    "unknown_phi_e": ("model:\n  phi_e: linear\n", "train",
                      "model.phi_e takes mlp or single; any other value must fail before training starts"),
    "unknown_latent_scope": ("model:\n  latent_scope: edge\n", "train",
                             "model.latent_scope was checked only by GGIK.__init__ with a ValueError, so a bad value "
                             "reached ggik train and printed a traceback"),
    "unknown_prior_mixture": ("model:\n  prior_mixture: edge\n", "train",
                              "model.prior_mixture was checked only by GGIK.__init__ (ValueError, a traceback)"),
    "shared_mixture_per_graph_latent": ("model:\n  latent_scope: graph\n  prior_mixture: graph\n", "train",
                                        "prior_mixture graph with latent_scope graph was refused only by GGIK.__init__ "
                                        "(ValueError, a traceback)"),
    "unknown_kernels": ("train:\n  kernels: numba\n", "train",
                        "train.kernels takes fused or eager; any other value must fail before training starts"),
}


@pytest.mark.parametrize(
    "case", sorted(INVALID_PARAMS)
)
def test_invalid_param_values_are_user_errors(built, tmp_path, monkeypatch, capsys, restore_global_state, case):
    text, command, _ = INVALID_PARAMS[case]
    shutil.copytree(built / "data", tmp_path / "data")
    (tmp_path / "params.yaml").write_text(text)
    code, err = run_main(monkeypatch, capsys, tmp_path, command)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ggik: error:"), err
