"""`python -m pipeline solve`, run as a user runs it, with a tiny random model.

Each fresh interpreter pays several seconds of torch / torch_geometric start-up on a busy
machine, so one module fixture starts every run at once: a few commands as their own
``python -m pipeline solve`` process, and the other cases in one more interpreter that runs the
same ``python -m pipeline`` entry point (:func:`runpy.run_module`) once per command line, each
with its own working directory, captured stdout/stderr and exit code; an exception escaping the
entry point is reported there as a traceback and exit code 1, as the interpreter would.
Output errors are checked against forward kinematics computed here from the q columns and the
goals as given on the command line.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.transform import Rotation

from ggik_core.robots.catalog import load_arm
from ggik_core.model.cvae import GGIK, ModelConfig
from ggik_core.model.files import save_model

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("GGIK_SHARED") or REPO.parent / "shared")
PANDA_URDF = SHARED / "reference" / "urdf" / "panda_arm.urdf"
TIMEOUT = 300
MM_TOL = 1e-6
DEG_TOL = 1e-6

DH_YAML = """\
name: my_arm
convention: modified
joints:
  - {a: 0.0, alpha: 0.0, d: 0.2, theta_offset: 0.1, lower: -3.0, upper: 3.0}
  - {a: 0.05, alpha: 1.5707963268, d: 0.0, theta_offset: 1.5707963268}
  - {a: 0.4, alpha: 0.0, d: 0.0}
  - {a: 0.03, alpha: 1.5707963268, d: 0.35}
  - {a: 0.0, alpha: -1.5707963268, d: 0.0}
  - {a: 0.0, alpha: 1.5707963268, d: 0.08}
tool: {xyz: [0.01, 0.0, 0.1], rpy: [0.1, -0.2, 0.3]}
"""

XACRO = """<?xml version="1.0"?>
<robot name="arm" xmlns:xacro="http://www.ros.org/wiki/xacro">
  <xacro:property name="L" value="0.4"/>
  <link name="base"/>
  <link name="l1"/>
  <joint name="j1" type="revolute">
    <parent link="base"/><child link="l1"/><origin xyz="0 0 ${L}"/><axis xyz="0 0 1"/>
    <limit lower="-1" upper="1" effort="1" velocity="1"/>
  </joint>
</robot>
"""

MALFORMED_URDF = '<?xml version="1.0"?>\n<robot name="broken">\n  <link name="base"/>\n  <joint name="j1" type="revolute">\n'


# --- kinematics computed here, independently of the library where it matters ---------------------


def quat_to_matrix_here(wxyz: np.ndarray) -> np.ndarray:
    wxyz = np.asarray(wxyz, dtype=np.float64)
    return Rotation.from_quat(np.concatenate([wxyz[..., 1:], wxyz[..., :1]], -1)).as_matrix()


def pose_text(T: np.ndarray) -> str:
    xyzw = Rotation.from_matrix(T[:3, :3]).as_quat()
    wxyz = [xyzw[3], xyzw[0], xyzw[1], xyzw[2]]
    return " ".join(repr(float(v)) for v in [*T[:3, 3], *wxyz])


def goal_matrix(text: str) -> np.ndarray:
    v = np.array([float(p) for p in text.split()], dtype=np.float64)
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix_here(v[3:] / np.linalg.norm(v[3:]))
    T[:3, 3] = v[:3]
    return T


def pose_errors_here(T: np.ndarray, T_goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position error (mm) and rotation angle of ``R_goal^T R`` (deg)."""
    pos = np.linalg.norm(T[..., :3, 3] - T_goal[..., :3, 3], axis=-1) * 1000.0
    R = np.swapaxes(T_goal[..., :3, :3], -1, -2) @ T[..., :3, :3]
    skew = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    rot = np.degrees(np.arctan2(np.linalg.norm(skew, axis=-1), np.trace(R, axis1=-2, axis2=-1) - 1))
    return pos, rot


def _rx(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])


def _rz(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])


def _tx(v):
    T = np.eye(4)
    T[0, 3] = v
    return T


def _tz(v):
    T = np.eye(4)
    T[2, 3] = v
    return T


def dh_yaml_fk(q: np.ndarray) -> np.ndarray:
    """FK of :data:`DH_YAML` (modified DH, then the tool), one configuration at a time."""
    rows = [(0.0, 0.0, 0.2, 0.1), (0.05, 1.5707963268, 0.0, 1.5707963268), (0.4, 0.0, 0.0, 0.0),
            (0.03, 1.5707963268, 0.35, 0.0), (0.0, -1.5707963268, 0.0, 0.0), (0.0, 1.5707963268, 0.08, 0.0)]
    tool = np.eye(4)
    tool[:3, :3] = Rotation.from_euler("xyz", [0.1, -0.2, 0.3]).as_matrix()  # extrinsic x, y, z = Rz Ry Rx
    tool[:3, 3] = [0.01, 0.0, 0.1]
    out = []
    for qi in np.atleast_2d(q):
        T = np.eye(4)
        for (a, alpha, d, theta), angle in zip(rows, qi):
            T = T @ _tx(a) @ _rx(alpha) @ _tz(d) @ _rz(angle + theta)
        out.append(T @ tool)
    return np.stack(out)


def catalog_fk(name: str):
    robot = load_arm(name)
    return lambda q: robot.fk(torch.from_numpy(np.ascontiguousarray(q))).numpy()


def urdf_fk(q: np.ndarray) -> np.ndarray:
    from ggik_core.robots.urdf import load_urdf

    robot = load_urdf(PANDA_URDF, ee_link="panda_link8")
    return robot.fk(torch.from_numpy(np.ascontiguousarray(q))).numpy()


# --- goals ---------------------------------------------------------------------------------------


def reachable_goals(name: str, count: int, seed: int) -> list[str]:
    robot = load_arm(name)
    q = robot.sample_q(count, torch.Generator().manual_seed(seed))
    return [pose_text(T) for T in robot.fk(q).numpy()]


def goals_frame(texts: list[str]) -> pd.DataFrame:
    rows = [[float(p) for p in t.split()] for t in texts]
    return pd.DataFrame(rows, columns=["x", "y", "z", "qw", "qx", "qy", "qz"])


# --- the runs ------------------------------------------------------------------------------------


def cli_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"
    env["COLUMNS"] = "200"
    return env


def run_solve(cwd: Path, args: list[str]) -> subprocess.CompletedProcess:
    return run_solve_cmd(cwd, [sys.executable, "-m", "pipeline", "solve", *args])


def run_solve_cmd(cwd: Path, cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(cmd, cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()  # only the process started here
        out, err = proc.communicate()
        err += f"\n[test harness: killed after {TIMEOUT} s]"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


DRIVER = r"""
import contextlib, io, json, os, runpy, sys, traceback

cases_file, results_file = sys.argv[1], sys.argv[2]
cases = json.load(open(cases_file))
results = {}
for case in cases:
    out, err = io.StringIO(), io.StringIO()
    os.chdir(case["cwd"])
    sys.argv = ["python -m pipeline", *case["args"]]
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_module("pipeline", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            if exc.code is None:
                code = 0
            elif isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results[case["name"]] = {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
json.dump(results, open(results_file, "w"))
"""


def run_driver(base: Path, jobs: dict[str, tuple[Path, list[str]]]) -> dict[str, subprocess.CompletedProcess]:
    """Run every job in one interpreter (see the module docstring)."""
    cases = [{"name": name, "cwd": str(d), "args": ["solve", *args]} for name, (d, args) in jobs.items()]
    (base / "cases.json").write_text(json.dumps(cases))
    (base / "driver.py").write_text(DRIVER)
    res = run_solve_cmd(base, [sys.executable, str(base / "driver.py"), str(base / "cases.json"), str(base / "results.json")])
    if res.returncode != 0 or not (base / "results.json").exists():
        raise AssertionError(f"the driver failed: {res.stderr}")
    found = json.loads((base / "results.json").read_text())
    return {name: subprocess.CompletedProcess(["solve", *jobs[name][1]], r["returncode"], r["stdout"], r["stderr"]) for name, r in found.items()}


GOOD_QUAT = "0.4 0.1 0.5 1 0 0 0"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("solve")
    torch.manual_seed(0)
    m = GGIK(ModelConfig(hidden=16, layers=2, latent=4, components=3, message=16))
    model = base / "model.pt"
    save_model(m, m.cfg, [], model, dofs=[6, 7])
    model7 = base / "model7.pt"  # "trained" on 7-DOF robots only
    save_model(m, m.cfg, [], model7, dofs=[7])
    goals = {
        "stdout": reachable_goals("ur10", 2, 1),
        "csv_in": reachable_goals("kuka", 3, 2),
        "parquet_in": reachable_goals("lwa4p", 2, 3),
        "urdf": reachable_goals("panda", 2, 4),
    }
    q_yaml = np.array([0.3, -0.4, 0.5, 0.2, 0.7, -0.1])
    goals["yaml"] = [pose_text(dh_yaml_fk(q_yaml)[0]), "5.0 0.0 0.5 1 0 0 0"]  # reachable, unreachable
    goals["random"] = reachable_goals("ur10", 2, 5)
    goals["raw"] = reachable_goals("ur10", 2, 6)
    goals["hard"] = reachable_goals("panda", 1, 7)
    return {"base": base, "model": model, "model7": model7, "goals": goals}


@pytest.fixture(scope="module")
def runs(setup) -> dict:
    base, model, goals = setup["base"], str(setup["model"]), setup["goals"]
    jobs: dict[str, tuple[Path, list[str]]] = {}  # in the shared interpreter
    own: dict[str, tuple[Path, list[str]]] = {}  # each in its own `python -m pipeline solve` process
    separate = ("stdout", "bad_robot")  # the real entry point: CSV on stdout, and one user error

    def job(name: str, args: list[str]) -> Path:
        d = base / name
        d.mkdir()
        (own if name in separate else jobs)[name] = (d, args)
        return d

    job("stdout", ["--robot", "ur10", "--goal", goals["stdout"][0], "--goal", goals["stdout"][1], "-k", "3", "--model", model])
    # no --model: random seeds, refined
    job("random", ["--robot", "ur10", "--goal", goals["random"][0], "--goal", goals["random"][1], "-k", "8", "--method", "lm",
                   "--out", "sol.csv"])
    job("raw", ["--robot", "ur10", "--goal", goals["raw"][0], "--goal", goals["raw"][1], "-k", "3", "--model", model, "--raw",
                "--out", "sol.csv"])
    job("dof_note", ["--robot", "ur10", "--goal", goals["raw"][0], "-k", "2", "--model", str(setup["model7"]), "--raw"])
    job("dof_ok", ["--robot", "kuka", "--goal", goals["csv_in"][0], "-k", "2", "--model", str(setup["model7"]), "--raw"])
    job("not_solved", ["--robot", "panda", "--goal", goals["hard"][0], "-k", "1", "--max-iter", "1"])
    job("options", ["--robot", "panda", "--goal", goals["hard"][0], "-k", "4", "--max-iter", "200", "--tol-mm", "0.001",
                    "--tol-deg", "0.001", "--solved-mm", "0.01", "--solved-deg", "0.01", "--distinct-tol", "10", "--threads", "1", "--out", "sol.csv"])
    d = job("csv_in", ["--robot", "kuka", "--goals", "goals.csv", "-k", "2", "--model", model, "--out", "sol.parquet"])
    goals_frame(goals["csv_in"]).to_csv(d / "goals.csv", index=False)
    d = job("parquet_in", ["--robot", "lwa4p", "--goals", "goals.parquet", "-k", "2", "--model", model, "--refine", "--out", "sol.json"])
    goals_frame(goals["parquet_in"]).to_parquet(d / "goals.parquet", index=False)
    d = job("yaml", ["--robot", "arm.yaml", "--goal", goals["yaml"][0], "--goal", goals["yaml"][1], "-k", "8", "--model", model,
                     "--out", "out/sol.csv"])
    (d / "arm.yaml").write_text(DH_YAML)
    if PANDA_URDF.is_file():
        job("urdf", ["--robot", str(PANDA_URDF), "--ee-link", "panda_link8", "--goal", goals["urdf"][0], "--goal", goals["urdf"][1],
                     "-k", "2", "--model", model])
    # bad input: one line on stderr each
    job("bad_robot", ["--robot", "no_such_robot", "--goal", GOOD_QUAT, "--model", model])
    d = job("bad_urdf", ["--robot", "broken.urdf", "--goal", GOOD_QUAT, "--model", model])
    (d / "broken.urdf").write_text(MALFORMED_URDF)
    job("bad_quat", ["--robot", "ur10", "--goal", "0.4 0.1 0.5 2 0 0 0", "--model", model])
    job("six_numbers", ["--robot", "ur10", "--goal", "0.4 0.1 0.5 1 0 0", "--model", model])
    d = job("bad_columns", ["--robot", "ur10", "--goals", "goals.csv", "--model", model])
    (d / "goals.csv").write_text("a,b,c,d,e,f,g\n0.4,0.1,0.5,1,0,0,0\n")
    job("no_model", ["--robot", "ur10", "--goal", GOOD_QUAT, "--model", "missing/model.pt"])
    job("bad_out", ["--robot", "ur10", "--goal", GOOD_QUAT, "--model", model, "--out", "sol.txt"])
    job("bad_passes", ["--robot", "ur10", "--goal", GOOD_QUAT, "--model", model, "--raw", "--passes", "-1"])
    job("nan_goal", ["--robot", "ur10", "--goal", "nan 0.1 0.5 1 0 0 0", "--model", model])
    d = job("xacro", ["--robot", "arm.urdf.xacro", "--goal", GOOD_QUAT])
    (d / "arm.urdf.xacro").write_text(XACRO)
    d = job("xacro_content", ["--robot", "arm.urdf", "--goal", GOOD_QUAT])
    (d / "arm.urdf").write_text(XACRO)
    d = job("space_separated", ["--robot", "ur10", "--goals", "goals.csv"])
    (d / "goals.csv").write_text("x y z qw qx qy qz\n0.4 0.1 0.5 1 0 0 0\n")
    d = job("no_header", ["--robot", "ur10", "--goals", "goals.csv"])
    (d / "goals.csv").write_text("0.4,0.1,0.5,1,0,0,0\n0.3,0.1,0.5,1,0,0,0\n")
    d = job("empty_cell", ["--robot", "ur10", "--goals", "goals.csv"])
    (d / "goals.csv").write_text("x,y,z,qw,qx,qy,qz\n0.4,0.1,0.5,1,0,0,0\n0.4,0.1,0.5,1,0,,0\n")
    d = job("not_a_number", ["--robot", "ur10", "--goals", "goals.csv"])
    (d / "goals.csv").write_text("x,y,z,qw,qx,qy,qz\n0.4,0.1,abc,1,0,0,0\n")
    d = job("txt_goals", ["--robot", "ur10", "--goals", "goals.txt"])
    (d / "goals.txt").write_text("x,y,z,qw,qx,qy,qz\n0.4,0.1,0.5,1,0,0,0\n")
    d = job("txt_robot", ["--robot", "arm.txt", "--goal", GOOD_QUAT])
    (d / "arm.txt").write_text("joints: [\n")
    # no --model: the models that ship in the package (all-arms for a catalog arm, else the generalist)
    job("shipped_arm", ["--robot", "kuka", "--goal", goals["csv_in"][0], "-k", "4", "--raw", "--out", "sol.csv"])
    d = job("shipped_other", ["--robot", "arm.yaml", "--goal", goals["yaml"][0], "-k", "4", "--raw", "--out", "sol.csv"])
    (d / "arm.yaml").write_text(DH_YAML)
    job("seeds_model", ["--robot", "ur10", "--goal", goals["random"][0], "-k", "8", "--seeds", "model", "--out", "sol.csv"])
    job("random_raw", ["--robot", "ur10", "--goal", GOOD_QUAT, "--raw", "--seeds", "random"])
    job("bad_seeds", ["--robot", "ur10", "--goal", GOOD_QUAT, "--seeds", "learned"])
    job("zero_iterations", ["--robot", "ur10", "--goal", GOOD_QUAT, "--max-iter", "0"])
    job("bad_plot", ["--robot", "ur10", "--goal", GOOD_QUAT, "--plot", "arm.jpg"])

    shared = base / "shared_interpreter"
    shared.mkdir()
    with ThreadPoolExecutor(max_workers=len(own) + 1) as pool:
        driver = pool.submit(run_driver, shared, jobs)
        futures = {name: pool.submit(run_solve, d, args) for name, (d, args) in own.items()}
        out = {name: (own[name][0], fut.result()) for name, fut in futures.items()}
        out.update({name: (jobs[name][0], res) for name, res in driver.result().items()})
    return out


# --- checks --------------------------------------------------------------------------------------


def assert_ok(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr, res.stderr


def check_solutions(df: pd.DataFrame, dof: int, goal_texts: list[str], k: int, fk, solved_mm: float = 1.0,
                    solved_deg: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Columns, row count and FK-checked errors; returns the true errors (mm, deg) per row."""
    expected = ["goal_id", "sample_id", *[f"q_{j}" for j in range(1, dof + 1)], "pos_err_mm", "rot_err_deg", "within_limits",
                "solved", "distinct", *(["free", "min_distance_mm"] if "free" in df.columns else []),  # URDFs with collision geometry
                "goal_x", "goal_y", "goal_z", "goal_qw", "goal_qx", "goal_qy", "goal_qz"]
    assert list(df.columns) == expected
    G = len(goal_texts)
    assert len(df) == G * k
    assert df["goal_id"].tolist() == [g for g in range(G) for _ in range(k)]
    assert df["sample_id"].tolist() == list(range(k)) * G
    q = df[[f"q_{j}" for j in range(1, dof + 1)]].to_numpy(dtype=np.float64)
    assert np.isfinite(q).all()
    T = fk(q)
    T_goal = np.stack([goal_matrix(goal_texts[g]) for g in df["goal_id"]])
    pos, rot = pose_errors_here(T, T_goal)
    np.testing.assert_allclose(df["pos_err_mm"].to_numpy(dtype=np.float64), pos, rtol=0, atol=MM_TOL)
    np.testing.assert_allclose(df["rot_err_deg"].to_numpy(dtype=np.float64), rot, rtol=0, atol=DEG_TOL)
    assert set(df["within_limits"].tolist()) <= {True, False}
    # the goal columns give back the goal; solved = inside the limits and within 1 mm & 1 deg
    T_back = np.stack([goal_matrix(" ".join(map(str, r))) for r in df[["goal_x", "goal_y", "goal_z", "goal_qw", "goal_qx", "goal_qy", "goal_qz"]].to_numpy()])
    np.testing.assert_allclose(T_back, T_goal, rtol=0, atol=1e-9)
    solved = df["within_limits"].to_numpy(bool) & (pos <= solved_mm) & (rot <= solved_deg)
    assert df["solved"].astype(bool).tolist() == solved.tolist()
    assert not (df["distinct"].astype(bool) & ~df["solved"].astype(bool)).any()
    # best candidates first within each goal
    score = (df["pos_err_mm"] + df["rot_err_deg"]).to_numpy().reshape(G, k)
    assert (np.diff(score, axis=1) >= -1e-9).all()
    return pos, rot


def read_csv_text(text: str) -> pd.DataFrame:
    from io import StringIO

    return pd.read_csv(StringIO(text))


def test_catalog_robot_two_goals_csv_on_stdout(runs, setup):
    _, res = runs["stdout"]
    assert_ok(res)
    df = read_csv_text(res.stdout)
    check_solutions(df, 6, setup["goals"]["stdout"], 3, catalog_fk("ur10"))
    robot = load_arm("ur10")
    q = torch.tensor(df[[f"q_{j}" for j in range(1, 7)]].to_numpy())
    assert df["within_limits"].tolist() == robot.within_limits(q).tolist()
    assert "ur10" in res.stderr  # the summary line goes to stderr, not into the CSV


def test_goals_from_csv_written_to_parquet(runs, setup):
    d, res = runs["csv_in"]
    assert_ok(res)
    assert res.stdout == ""
    df = pd.read_parquet(d / "sol.parquet")
    check_solutions(df, 7, setup["goals"]["csv_in"], 2, catalog_fk("kuka"))
    assert df["within_limits"].dtype == bool


def test_goals_from_parquet_refined_written_to_json(runs, setup):
    d, res = runs["parquet_in"]
    assert_ok(res)
    records = json.loads((d / "sol.json").read_text())
    assert isinstance(records, list) and len(records) == 2 * 2
    df = pd.DataFrame.from_records(records)
    assert all(isinstance(r["within_limits"], bool) for r in records)
    check_solutions(df, 6, setup["goals"]["parquet_in"], 2, catalog_fk("lwa4p"))
    assert df["within_limits"].all()  # refinement keeps every joint inside its limits
    assert "refinement" in res.stderr


def test_dh_yaml_robot_with_an_unreachable_goal_written_to_csv(runs, setup):
    d, res = runs["yaml"]
    assert_ok(res)
    df = pd.read_csv(d / "out" / "sol.csv")
    pos, _ = check_solutions(df, 6, setup["goals"]["yaml"], 8, dh_yaml_fk)
    assert pos[df["goal_id"] == 1].min() > 3000.0  # 5 m away: the true, large error is reported
    assert "goal 1: unreachable" in res.stderr and "beyond the arm's reach" in res.stderr
    assert "goal 0: unreachable" not in res.stderr  # within reach: never called unreachable (at most "not solved")
    assert "my_arm" in res.stderr
    # limits of the file: joint 1 in [-3, 3], the others default to ±π
    q = df[[f"q_{j}" for j in range(1, 7)]].to_numpy()
    lower = np.array([-3.0] + [-math.pi] * 5)
    upper = np.array([3.0] + [math.pi] * 5)
    within = ((q >= lower - 1e-9) & (q <= upper + 1e-9)).all(1)
    assert df["within_limits"].tolist() == within.tolist()


@pytest.mark.skipif(not PANDA_URDF.is_file(), reason=f"reference URDF {PANDA_URDF} not found (set GGIK_SHARED)")
def test_urdf_robot(runs, setup):
    _, res = runs["urdf"]
    assert_ok(res)
    df = read_csv_text(res.stdout)
    check_solutions(df, 7, setup["goals"]["urdf"], 2, urdf_fk)
    # the URDF's panda_link8 chain is the catalog Panda: the same errors up to the DH rounding
    q = df[[f"q_{j}" for j in range(1, 8)]].to_numpy()
    T_goal = np.stack([goal_matrix(setup["goals"]["urdf"][g]) for g in df["goal_id"]])
    pos, _ = pose_errors_here(catalog_fk("panda")(q), T_goal)
    np.testing.assert_allclose(df["pos_err_mm"].to_numpy(), pos, rtol=0, atol=1e-3)


SUMMARY = re.compile(r"(\d+)/(\d+) goals solved .*?, (\d+) distinct solutions .*? in \d+\.\d+ s")


def summary_numbers(stderr: str) -> tuple[int, int, int]:
    """(solved goals, goals, distinct solutions) from the one summary line on stderr."""
    found = [m for m in map(SUMMARY.search, stderr.splitlines()) if m]
    assert len(found) == 1, stderr
    m = found[0]
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def test_without_a_model_random_seeds_are_refined(runs, setup):
    d, res = runs["random"]
    assert_ok(res)
    assert "note: seeds: refining" in res.stderr and "uniformly inside the joint limits" in res.stderr
    df = pd.read_csv(d / "sol.csv")
    pos, rot = check_solutions(df, 6, setup["goals"]["random"], 8, catalog_fk("ur10"))
    best = df.groupby("goal_id")["pos_err_mm"].min()
    assert (best < 1.0).all(), best  # 8 refined random seeds solve a reachable UR10 goal
    solved, goals, distinct = summary_numbers(res.stderr)
    assert (solved, goals) == (2, 2)
    assert distinct == int(df["distinct"].sum()) >= 2
    assert "unreachable" not in res.stderr and "not solved" not in res.stderr


def test_raw_samples_are_not_refined_and_not_called_unreachable(runs, setup):
    d, res = runs["raw"]
    assert_ok(res)
    df = pd.read_csv(d / "sol.csv")
    pos, _ = check_solutions(df, 6, setup["goals"]["raw"], 3, catalog_fk("ur10"))
    assert pos.min() > 1.0  # an untrained model's raw samples are far off ...
    assert "unreachable" not in res.stderr and "not solved" not in res.stderr  # ... but the goals are reachable
    assert "raw GGIK samples re-encoded 2x" in res.stderr  # the default passes for raw samples


def test_raw_samples_without_a_model_come_from_the_shipped_models(runs, setup):
    for case, name, dof, goal_key, fk in (("shipped_arm", "all_arms", 7, "csv_in", catalog_fk("kuka")),
                                          ("shipped_other", "generalist", 6, "yaml", dh_yaml_fk)):
        d, res = runs[case]
        assert_ok(res)
        assert f"note: model: the shipped {name} model" in res.stderr, res.stderr
        check_solutions(pd.read_csv(d / "sol.csv"), dof, setup["goals"][goal_key][:1], 4, fk)


def test_seeds_model_refines_samples_of_the_shipped_model(runs, setup):
    d, res = runs["seeds_model"]
    assert_ok(res)
    assert "note: model: the shipped all_arms model" in res.stderr and "uniformly" not in res.stderr
    df = pd.read_csv(d / "sol.csv")
    check_solutions(df, 6, setup["goals"]["random"][:1], 8, catalog_fk("ur10"))
    assert summary_numbers(res.stderr)[:2] == (1, 1)
    assert "GGIK samples + refinement" in res.stderr


def test_dof_outside_the_training_range_gets_a_note(runs):
    _, res = runs["dof_note"]
    assert_ok(res)
    notes = [ln for ln in res.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "6 DOF" in notes[0] and "7-DOF" in notes[0], res.stderr
    _, res = runs["dof_ok"]
    assert_ok(res)
    assert "note:" not in res.stderr


def test_failed_refinement_is_reported(runs):
    _, res = runs["not_solved"]
    assert_ok(res)
    assert "goal 0: not solved" in res.stderr and "unreachable" not in res.stderr
    assert summary_numbers(res.stderr)[:2] == (0, 1)


def test_refinement_options_reach_the_refiner(runs, setup):
    d, res = runs["options"]
    assert_ok(res)
    df = pd.read_csv(d / "sol.csv")
    # --solved-mm/--solved-deg 0.01 define 'solved' (checked inside); --tol-mm/--tol-deg 0.001 make refinement go that far
    pos, rot = check_solutions(df, 7, setup["goals"]["hard"], 4, catalog_fk("panda"), solved_mm=0.01, solved_deg=0.01)
    assert df["solved"].any()
    assert ((pos <= 0.001) & (rot <= 0.001)).any()
    assert df["distinct"].sum() == 1  # --distinct-tol 10 rad: every solution is the same one
    assert "<= 0.01 mm & 0.01 deg" in res.stderr


BAD = {
    "bad_robot": "no_such_robot",
    "bad_urdf": "broken.urdf",
    "bad_quat": "quaternion",
    "six_numbers": "7 numbers",
    "bad_columns": "column",
    "no_model": "model",
    "bad_out": "sol.txt",
    "bad_passes": "--passes must not be negative",
    "nan_goal": "NaN",
    "xacro": "xacro arm.urdf.xacro > arm.urdf",
    "xacro_content": "xacro arm.urdf > arm_expanded.urdf",
    "space_separated": "not comma-separated",
    "no_header": "no header line",
    "empty_cell": "row 2 (line 3), column qy: empty cell",
    "not_a_number": "row 1 (line 2), column z: 'abc' is not a number",
    "txt_goals": "unsupported extension .txt; supported: .csv",
    "txt_robot": "supported: .urdf/.xml (URDF), .yaml/.yml (DH table)",
    "random_raw": "--seeds random needs refinement",
    "bad_seeds": "--seeds must be auto, model or random",
    "zero_iterations": "at least 1 iteration",
    "bad_plot": "supported: .png, .pdf, .svg",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gives_one_error_line(runs, case):
    _, res = runs[case]
    assert res.returncode != 0
    assert "Traceback" not in res.stderr, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("ggik: error:"), lines[0]
    assert BAD[case] in lines[0], lines[0]
    assert res.stdout == ""


def test_solve_starts_without_importing_torch_pandas_sympy_or_the_progress_bars():
    """Start-up (issue: 1.5 s): the default path (random seeds, CSV on stdout) never imports torch
    (about 1.5 s alone on this machine) nor the modules that cost a quarter to half a second each."""
    code = ("import sys\nfrom pipeline.cli import main\n"
            "sys.argv = ['ggik', 'solve', '--robot', 'kuka', '--goal', '0.4 0.1 0.5 0 1 0 0', '-k', '4', '--threads', '1']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "heavy = sorted(m for m in ('torch', 'pandas', 'sympy', 'rich.progress', 'matplotlib', 'pyarrow', 'torch_geometric') if m in sys.modules)\n"
            "print('HEAVY', heavy, file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stderr, out.stderr
    assert out.stdout.startswith("goal_id,sample_id,q_1,") and len(out.stdout.splitlines()) == 5


def test_the_solve_defaults_have_one_owner() -> None:
    """`ggik solve`'s options, the solve function behind it and the library's Solver all take their
    defaults from ggik_core.solve.config.SOLVE."""
    import dataclasses
    import inspect

    import typer

    from ggik_core.api import Solver
    from ggik_core.solve.config import SOLVE
    from pipeline.cli import app
    from pipeline.commands.solve import solve

    options = {p.name: p.default for p in typer.main.get_command(app).commands["solve"].params}
    cli = {"samples": "samples", "pos_tol_mm": "tol_mm", "rot_tol_deg": "tol_deg", "solved_mm": "solved_mm",
           "solved_deg": "solved_deg", "distinct_tol": "distinct_tol", "seed": "seed", "threads": "threads", "collision": "collision",
           "method": "method"}
    for field in dataclasses.fields(SOLVE):
        if field.name != "free_budget_s":  # the re-seeding budget when --time-budget is not given
            assert options[cli[field.name]] == getattr(SOLVE, field.name), field.name
    fn = inspect.signature(solve).parameters
    init = inspect.signature(Solver.__init__).parameters
    for name in ("pos_tol_mm", "rot_tol_deg", "solved_mm", "solved_deg", "distinct_tol", "threads", "seed", "collision", "method"):
        assert fn[name].default == getattr(SOLVE, name), name
    for name in ("pos_tol_mm", "rot_tol_deg", "solved_mm", "solved_deg", "distinct_tol", "threads", "collision", "method"):
        assert init[name].default == getattr(SOLVE, name), name
    assert inspect.signature(Solver.solve).parameters["k"].default == SOLVE.samples

