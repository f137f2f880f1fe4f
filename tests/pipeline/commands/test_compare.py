"""`compare()` on a throw-away Git + DVC repository whose fake evaluate stage writes known numbers."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from ggik_core.errors import GGIKError
from pipeline.commands.compare import compare

pytest.importorskip("dvc")
if shutil.which("git") is None:
    pytest.skip("git is not installed", allow_module_level=True)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARMS = {"ur10": 6, "panda": 7}

# A stand-in for the evaluate stage: every number is a function of (layer, geometry, arm) so the
# test knows what each experiment's eval_detail.json holds.
FAKE_EVAL = textwrap.dedent('''
    import json, pathlib
    import pandas as pd, yaml

    ARMS = {"ur10": 6, "panda": 7}
    p = yaml.safe_load(open("params.yaml"))
    base = {"egnn": 1.0, "egat": 2.0}[p["model"]["layer"]] + {"coplanar": 0.0, "noncoplanar": 10.0}[p["data"]["geometry"]]

    def values(b):
        return {"raw": {"position_mm": {"mean": b, "median": b / 2},
                        "rotation_deg": {"mean": b / 10, "median": b / 20},
                        "within_limits": 0.5},
                "refined": {"success": {"1mm_1deg": b / 100}, "distinct_1mm_1deg_per_goal": b + 0.25,
                            "within_limits": 1.0}}

    arms = {arm: {"dof": dof, **values(base * (i + 1))} for i, (arm, dof) in enumerate(ARMS.items())}
    ev = {"arms": arms, "overall": values(base * 100), "params": {"problems_per_arm": 3, "samples": 2}}
    pathlib.Path("metrics").mkdir(exist_ok=True)
    pathlib.Path("metrics/eval_detail.json").write_text(json.dumps(ev, indent=1))
    pathlib.Path("metrics/eval.json").write_text(json.dumps({"overall": {"raw_median_mm": base * 50}}))
    rows = [{"arm": arm, "kind": kind, "goal_id": g, "sample_id": s, "pos_err_mm": base * (i + 1) * (g + s + 1),
             "rot_err_deg": base, "within_limits": True}
            for i, arm in enumerate(ARMS) for kind in ("raw", "refined") for g in range(3) for s in range(2)]
    pd.DataFrame(rows).to_parquet("metrics/eval_samples.parquet", index=False)
''')

DVC_YAML = textwrap.dedent(f'''
    stages:
      evaluate:
        cmd: {json.dumps(shlex.quote(sys.executable) + " fake_eval.py")}
        deps:
          - fake_eval.py
        params:
          - model.layer
          - data.geometry
        metrics:
          - metrics/eval.json:
              cache: false
        outs:
          - metrics/eval_detail.json:
              cache: false
          - metrics/eval_samples.parquet:
              cache: false
''')

PARAMS = "data:\n  geometry: coplanar\nmodel:\n  layer: egnn\n"


def _run(repo, *args):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(list(args), cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _git(repo, *args):
    return _run(repo, "git", *args)


def _dvc(repo, *args):
    return _run(repo, sys.executable, "-m", "dvc", *args)


def _init(repo):
    repo.mkdir()
    _git(repo, "init", "-q")
    for key, value in (("user.name", "ggik test"), ("user.email", "ggik-test@example.invalid"),
                       ("commit.gpgsign", "false"), ("core.hooksPath", "/dev/null")):
        _git(repo, "config", key, value)
    _dvc(repo, "init", "-q")
    (repo / ".dvc" / "config").write_text("[core]\n    analytics = false\n    autostage = false\n")


def expected(layer: str, geometry: str) -> float:
    return {"egnn": 1.0, "egat": 2.0}[layer] + {"coplanar": 0.0, "noncoplanar": 10.0}[geometry]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A repo with a results-free commit (tag `bare`), the baseline egnn/coplanar commit and two experiments."""
    repo = tmp_path_factory.mktemp("study") / "repo"
    _init(repo)
    (repo / "params.yaml").write_text(PARAMS)
    (repo / "fake_eval.py").write_text(FAKE_EVAL)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "pipeline without results")
    _git(repo, "tag", "bare")
    _dvc(repo, "repro")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "baseline results")
    _dvc(repo, "exp", "run", "-n", "exp-egat", "-S", "model.layer=egat")
    # the workspace still holds exp-egat's params: set both explicitly
    _dvc(repo, "exp", "run", "-n", "exp-nc", "-S", "model.layer=egnn", "-S", "data.geometry=noncoplanar")
    return repo


def _check_rows(df: pd.DataFrame, model: str, layer: str, geometry: str) -> None:
    b = expected(layer, geometry)
    rows = df[df["model"] == model]
    assert list(rows["arm"]) == [*ARMS, "overall"], model
    assert set(rows["layer"]) == {layer} and set(rows["geometry"]) == {geometry}
    for i, arm in enumerate(ARMS):
        r = rows[rows["arm"] == arm].iloc[0]
        v = b * (i + 1)
        assert str(r["dof"]) == str(ARMS[arm])
        assert r["raw_pos_mean_mm"] == pytest.approx(v)
        assert r["raw_pos_median_mm"] == pytest.approx(v / 2)
        assert r["raw_rot_mean_deg"] == pytest.approx(v / 10)
        assert r["raw_rot_median_deg"] == pytest.approx(v / 20)
        assert r["refined_success_1mm_1deg"] == pytest.approx(v / 100)
        assert r["refined_distinct_1mm_1deg_per_goal"] == pytest.approx(v + 0.25)
        assert r["raw_within_limits"] == pytest.approx(0.5) and r["refined_within_limits"] == pytest.approx(1.0)
    overall = rows[rows["arm"] == "overall"].iloc[0]
    assert overall["raw_pos_mean_mm"] == pytest.approx(b * 100)


def test_compare_default_selection(study, tmp_path):
    out = tmp_path / "cmp"
    written = compare(out, None, repo=study)
    assert [p.name for p in written] == ["compare.md", "compare.csv", "compare_box.png"]
    assert (out / "compare_box.png").read_bytes()[:8] == PNG_MAGIC
    df = pd.read_csv(out / "compare.csv", keep_default_na=False)
    # baseline + two experiments; the workspace equals exp-nc (dvc exp run applied it) and is left out
    assert set(df["model"]) == {"egnn/coplanar", "egat/coplanar", "egnn/noncoplanar"}
    assert len(df) == 3 * (len(ARMS) + 1)
    _check_rows(df, "egnn/coplanar", "egnn", "coplanar")
    _check_rows(df, "egat/coplanar", "egat", "coplanar")
    _check_rows(df, "egnn/noncoplanar", "egnn", "noncoplanar")
    assert set(df.loc[df["model"] == "egat/coplanar", "experiment"]) == {"exp-egat"}
    assert set(df.loc[df["model"] == "egnn/coplanar", "experiment"]) == {""}
    md = (out / "compare.md").read_text()
    for label in ("egnn/coplanar", "egat/coplanar", "egnn/noncoplanar", "exp-egat", "exp-nc", "ur10", "panda", "overall"):
        assert label in md
    assert "workspace: same results as exp-nc" in md
    assert "| ur10 | egat/coplanar | 2 | 1 | 0.2 | 0.1 | 2.0% | 2.25 | 50.0% | 100.0% |" in md


def test_compare_named_revisions_and_collisions(study, tmp_path):
    out = tmp_path / "cmp"
    compare(out, ["exp-egat", "workspace", "exp-nc"], repo=study)
    df = pd.read_csv(out / "compare.csv", keep_default_na=False)
    # workspace and exp-nc hold the same model: labels get the revision name
    assert list(dict.fromkeys(df["model"])) == ["egat/coplanar", "egnn/noncoplanar (workspace)", "egnn/noncoplanar (exp-nc)"]
    _check_rows(df, "egnn/noncoplanar (workspace)", "egnn", "noncoplanar")
    _check_rows(df, "egnn/noncoplanar (exp-nc)", "egnn", "noncoplanar")
    assert set(df.loc[df["model"] == "egnn/noncoplanar (workspace)", "rev"]) == {"workspace"}


def test_compare_errors(study, tmp_path):
    with pytest.raises(GGIKError, match=r"has no metrics/eval_detail\.json"):
        compare(tmp_path / "cmp", ["bare"], repo=study)
    with pytest.raises(GGIKError, match="no-such-experiment"):
        compare(tmp_path / "cmp", ["no-such-experiment"], repo=study)
    assert not (tmp_path / "cmp").exists()


def test_compare_without_experiments(tmp_path):
    repo = tmp_path / "empty"
    _init(repo)
    (repo / "params.yaml").write_text(PARAMS)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "nothing run yet")
    with pytest.raises(GGIKError, match="no experiments"):
        compare(tmp_path / "cmp", None, repo=repo)
    with pytest.raises(GGIKError, match="not a DVC|DVC repository|cannot list"):
        compare(tmp_path / "cmp", None, repo=tmp_path / "nowhere")
