"""`ggik solve` paths the end-to-end module does not take: goals files that are missing or empty,
no candidates, --seeds random with --model, --plot-goal out of range, and --time-budget (negative,
ample, and over before the first chunk). Run in this interpreter through the `ggik` entry point
(:func:`pipeline.cli.main`), with stdout and stderr captured."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import torch

from ggik_core.model.cvae import GGIK, ModelConfig
from ggik_core.model.files import save_model
from ggik_core.solve.multistart import KERNEL_CHUNK_GOALS
from pipeline.cli import main

GOAL = "0.4 0.1 0.5 0 1 0 0"
#: reachable Panda goals, more than one kernel chunk of them
GOALS = ["0.4 0.1 0.5 0 1 0 0", "0.5 -0.1 0.4 0 1 0 0", "0.3 0.2 0.6 0 1 0 0", "0.45 0.0 0.3 0 1 0 0", "0.35 -0.2 0.5 0 1 0 0",
         "0.5 0.2 0.45 0 1 0 0"]


def ggik(capsys, monkeypatch, tmp_path, *args: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``ggik solve --robot panda ARGS`` run in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["ggik", "solve", "--robot", "panda", *args])
    capsys.readouterr()
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def one_error(code: int, out: str, err: str, says: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and out == "", (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("ggik: error:") and says in lines[0], err


@pytest.mark.parametrize(("content", "says"), [(None, "goals file goals.csv not found"),
                                               ("", "cannot read goals file goals.csv"),
                                               ("x,y,z,qw,qx,qy,qz\n", "goals file goals.csv has no rows")])
def test_missing_or_empty_goals_files(capsys, monkeypatch, tmp_path, content, says):
    if content is not None:
        (tmp_path / "goals.csv").write_text(content)
    one_error(*ggik(capsys, monkeypatch, tmp_path, "--goals", "goals.csv"), says)


def test_no_candidates(capsys, monkeypatch, tmp_path):
    one_error(*ggik(capsys, monkeypatch, tmp_path, "--goal", GOAL, "-k", "0"), "--samples must be at least 1")


def test_random_seeds_with_a_model_file(capsys, monkeypatch, tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig(hidden=16, layers=2, latent=4, components=3)
    save_model(GGIK(cfg), cfg, [], tmp_path / "m.pt")
    one_error(*ggik(capsys, monkeypatch, tmp_path, "--goal", GOAL, "--seeds", "random", "--model", "m.pt"),
              "--seeds random does not use --model")


@pytest.mark.parametrize("plot_goal", ["2", "-1"])
def test_plot_goal_out_of_range(capsys, monkeypatch, tmp_path, plot_goal):
    one_error(*ggik(capsys, monkeypatch, tmp_path, "--goal", GOAL, "--goal", GOAL, "--plot", "f.png", "--plot-goal", plot_goal),
              f"--plot-goal {plot_goal}: there are 2 goals (ids 0..1)")
    assert not (tmp_path / "f.png").exists()


def test_negative_time_budget(capsys, monkeypatch, tmp_path):
    one_error(*ggik(capsys, monkeypatch, tmp_path, "--goal", GOAL, "--time-budget", "-1"),
              "--time-budget must be a non-negative number of seconds (got -1.0)")


def solutions(out: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(out))


def test_an_ample_time_budget_changes_nothing(capsys, monkeypatch, tmp_path):
    """Goals in chunks on one thread give the same candidates as without a budget (re-seeds depend
    on the goal, not on the chunk or thread)."""
    assert len(GOALS) > KERNEL_CHUNK_GOALS
    args = [a for g in GOALS for a in ("--goal", g)] + ["-k", "6"]
    code, free, _ = ggik(capsys, monkeypatch, tmp_path, *args)
    assert code == 0
    code, budget, err = ggik(capsys, monkeypatch, tmp_path, *args, "--time-budget", "600")
    assert code == 0, err
    assert f"panda: {len(GOALS)}/{len(GOALS)} goals solved" in err
    pd.testing.assert_frame_equal(solutions(budget), solutions(free))


def test_chunks_after_the_deadline_are_returned_unrefined(capsys, monkeypatch, tmp_path):
    """A budget over before the first chunk starts: every candidate is its seed, inside the limits,
    with its true (large) error, and no goal is solved."""
    args = [a for g in GOALS for a in ("--goal", g)] + ["-k", "4", "--seed", "3"]
    code, out, err = ggik(capsys, monkeypatch, tmp_path, *args, "--time-budget", "1e-12")
    assert code == 0, err
    df = solutions(out)
    assert len(df) == 4 * len(GOALS) and df["within_limits"].all()
    assert not df["solved"].any() and df["pos_err_mm"].min() > 1.0
    assert f"panda: 0/{len(GOALS)} goals solved" in err


def test_the_time_budget_help_says_what_happens_to_late_chunks(capsys, monkeypatch, tmp_path):
    code, out, _ = ggik(capsys, monkeypatch, tmp_path, "--help")
    text = " ".join(out.replace("\u2502", " ").split())  # the help's box drawn around the options
    assert code == 0
    assert f"chunks of {KERNEL_CHUNK_GOALS}" in text and "returned as seeded, unrefined" in text, text
