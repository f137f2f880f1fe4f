"""The DVC metrics files hold only headline figures, so that ``dvc metrics show`` and
``dvc exp show`` stay readable; the detail lives in outputs and plots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ggik_core.robots.catalog import ARM_NAMES
from pipeline.stages.evaluate import HEADLINE, headline
from pipeline.stages.train.logbook import TrainLog

REPO = Path(__file__).resolve().parents[1]
MAX_METRIC_KEYS = 60
WIDTH = 200
#: the headline view of `dvc exp show` that the README gives (a regex of the columns kept)
KEEP = r"^(Experiment|overall\.(raw_median_mm|raw_best_mm|refined_success|distinct_per_goal)|val\.rec|minutes|model\.layer)$"


def metric_files() -> list[str]:
    """The files declared under ``metrics:`` in dvc.yaml."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return [m if isinstance(m, str) else next(iter(m)) for s in stages.values() for m in s.get("metrics", [])]


def flat_keys(obj, prefix: str = "") -> list[str]:
    if isinstance(obj, dict):
        return [k for key, v in obj.items() for k in flat_keys(v, f"{prefix}{key}.")]
    return [prefix[:-1]]


def test_metrics_files_are_the_headline_files():
    assert sorted(metric_files()) == ["metrics/eval.json", "metrics/train/metrics.json"]


def test_the_committed_metrics_files_hold_at_most_60_keys():
    keys = [k for f in metric_files() for k in flat_keys(json.loads((REPO / f).read_text()))]
    assert 0 < len(keys) <= MAX_METRIC_KEYS, keys


def test_the_writers_make_at_most_60_keys(tmp_path):
    """What the train and evaluate stages write, with every figure present (re-encoding on, probes on)."""
    block = {kind: {"position_mm": {"median": 1.0}, "best_of_k_position_mm": {"median": 0.5},
                    "success": {"1mm_1deg": 0.5}, "distinct_1mm_1deg_per_goal": 2.0} for kind in ("raw", "reencoded", "refined")}
    ev = headline({"arms": {arm: {"dof": 6, **block} for arm in ARM_NAMES}, "overall": block})
    assert len(flat_keys(ev)) == (len(ARM_NAMES) + 1) * len(HEADLINE)
    row = {"epoch": 1, "lr": 0.1, "beta": 1.0, "minutes": 0.5,
           **{f"{s}_{k}": 1.0 for s in ("train", "val") for k in ("rec", "kl", "total")}}
    probe = {"step": 1, "graphs": 16, "minutes": 0.2, "beta": 0.1, "raw_median_mm": 300.0, "best_of_k_mm": 90.0,
             **{f"{arm}_raw_mm": 1.0 for arm in ARM_NAMES}}
    log = TrainLog(tmp_path, [], [], {"layer": "egnn", "device": "cpu", "processes": 1})
    log.probes([probe])
    log.epoch(row, 1, True)
    train = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert "ur10_raw_mm" not in json.dumps(train)  # per-arm probe figures stay in the plot table
    assert len(flat_keys(ev)) + len(flat_keys(train)) <= MAX_METRIC_KEYS


def _dvc(repo: Path, *args: str) -> str:
    env = {**os.environ, "COLUMNS": str(WIDTH), "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t.invalid"}
    proc = subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def exp_repo(tmp_path_factory) -> Path:
    """A git + DVC repository holding the pipeline's dvc.yaml, params.yaml and metrics files."""
    if shutil.which("dvc") is None:
        pytest.skip("dvc is not on PATH")
    repo = tmp_path_factory.mktemp("exp")
    for rel in ["dvc.yaml", "params.yaml", *metric_files()]:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, repo / rel)
    _dvc(repo, "git", "init", "-q")
    _dvc(repo, "dvc", "init", "-q")
    _dvc(repo, "git", "add", "-A")
    _dvc(repo, "git", "commit", "-qm", "baseline")
    return repo


def test_dvc_exp_show_has_at_most_60_metric_columns(exp_repo):
    rows = json.loads(_dvc(exp_repo, "dvc", "exp", "show", "--no-pager", "--json"))
    metrics = rows[0]["data"]["metrics"]
    keys = {f"{f}:{k}" for f, d in metrics.items() for k in flat_keys(d["data"])}
    assert 0 < len(keys) <= MAX_METRIC_KEYS


def test_dvc_exp_show_headline_view_is_readable_at_200_columns(exp_repo):
    """The README's headline view: every kept column shown in full, nothing collapsed to "…"."""
    out = _dvc(exp_repo, "dvc", "exp", "show", "--no-pager", "--drop", ".*", "--keep", KEEP)
    lines = out.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= WIDTH, out
    assert "…" not in out, out
    for column in ("overall.raw_median_mm", "overall.raw_best_mm", "overall.refined_success", "overall.distinct_per_goal",
                   "val.rec", "minutes", "model.layer"):
        assert column in lines[1], (column, out)


def test_the_readme_gives_the_headline_view():
    assert f"--keep '{KEEP}'" in (REPO / "README.md").read_text()
