"""Accuracy probes during training: the raw samples' position error, in mm, against training time.

A probe samples the model (no refinement) on fixed goals of the training robots (``data.robots``)
or, for random training robots, of the catalog arms of the trained DOFs, and records the median
position error of the samples and the median best-of-``k``, per robot and pooled. The
training stage runs ``train.probes`` of them at evenly spaced steps of the run and logs them with DVCLive
(``metrics/train/plots/custom/accuracy_time.json``), the accuracy-versus-training-time curve (the
report draws it). The
goals come from their own seeded generator and the samples from another, so probing does not move
training's random stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ggik_core.model.cvae import GGIK
from ggik_core.robots.catalog import ARM_NAMES, load_arm
from ggik_core.robots.robot import Robot

#: samples per goal (the evaluation's 32)
K = 32
GOAL_SEED = 123
SAMPLE_SEED = 5


def probe_steps(total_steps: int, probes: int) -> set[int]:
    """The global steps (1-based) after which a run of ``total_steps`` probes: ``probes`` of them,
    evenly spaced, the last at the final step."""
    if probes <= 0 or total_steps <= 0:
        return set()
    return {max(1, round(total_steps * k / probes)) for k in range(1, probes + 1)}


@dataclass
class Probe:
    """Fixed goals per arm, and the columns of a probe row."""

    goals: dict[str, tuple[Robot, torch.Tensor]]

    @classmethod
    def on_robots(cls, n_goals: int, robots: list[str] | tuple[str, ...] = (), dofs: set[int] | None = None) -> "Probe":
        """``n_goals`` seeded goals on each of ``robots`` (catalog names, URDF or DH files) or, when
        there are none, on each catalog arm (of the trained DOFs when ``dofs`` is given)."""
        from ggik_core.robots.files import load_robot

        if robots:
            named = [(Path(str(r)).stem if str(r).lower() not in ARM_NAMES else str(r).lower(), load_robot(str(r))) for r in robots]
        else:
            named = [(name, load_arm(name)) for name in ARM_NAMES]
        goals = {}
        for name, robot in named:
            if dofs is None or robot.dof in dofs:
                goals[name] = (robot, robot.fk(robot.sample_q(n_goals, torch.Generator().manual_seed(GOAL_SEED))))
        return cls(goals)

    @property
    def columns(self) -> list[str]:
        arms = list(self.goals)
        return ["step", "graphs", "minutes", "beta", "raw_median_mm", "best_of_k_mm",
                *(f"{a}_raw_mm" for a in arms), *(f"{a}_best_mm" for a in arms)]

    @torch.no_grad()
    def __call__(self, model: GGIK) -> dict[str, float]:
        """Median raw and best-of-K position errors (mm), per arm and over all arms' samples."""
        from ggik_core.solve.solver import sample_solutions

        was_training = model.training
        model.eval()
        raw, best, row = [], [], {}
        for name, (robot, goals) in self.goals.items():
            gen = torch.Generator(device=next(model.parameters()).device).manual_seed(SAMPLE_SEED)
            s = sample_solutions(model, robot, goals, K, generator=gen)
            mm = s.pos_err.reshape(goals.shape[0], K).double() * 1000
            raw.append(mm.flatten())
            best.append(mm.min(1).values)
            row[f"{name}_raw_mm"] = float(mm.median())
            row[f"{name}_best_mm"] = float(mm.min(1).values.median())
        model.train(was_training)
        return {"raw_median_mm": float(torch.cat(raw).median()), "best_of_k_mm": float(torch.cat(best).median()), **row}
