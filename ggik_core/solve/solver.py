"""From a trained model to joint-space IK solutions for any robot, checked by forward kinematics.

For a robot and ``G`` goals: the partial graphs are built once, ``k`` latent samples per node
are decoded in one batched pass per chunk (and optionally re-encoded, ``passes``: each pass
recovers the joints, encodes that configuration's full graph and decodes its posterior mean; see
:meth:`ggik_core.model.cvae.GGIK.sample`), joint angles are recovered in closed form, optionally
refined by batched Levenberg–Marquardt, and every solution's error is computed by FK (float64).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ggik_core.solve.joints import fit_to_limits, recover_joints
from ggik_core.robots.kinematics import forward_kinematics, home_frames
from ggik_core.solve.multistart import extra_count, first_distinct
from ggik_core.solve.refine import RefineConfig, refine
from ggik_core.robots.robot import Robot
from ggik_core.robots.transforms import invert, pose_errors

if TYPE_CHECKING:  # the model and graph code (torch_geometric) load only when sampling
    from ggik_core.data.batch import GraphBatch
    from ggik_core.data.graph import ProblemGraphs
    from ggik_core.model.cvae import GGIK


@dataclass
class Solutions:
    """``G`` goals x ``k`` candidates."""

    q: Tensor  # (G, k, n) radians
    pos_err: Tensor  # (G, k) metres
    rot_err: Tensor  # (G, k) radians
    within_limits: Tensor  # (G, k) bool
    seconds: float  # wall time of the whole call (sampling + recovery [+ refinement] + FK check)


def partial_graphs(robot: Robot, goals: Tensor) -> tuple[ProblemGraphs, Tensor]:
    """Partial-graph tensors (no answer) for ``goals (G, 4, 4)`` in the robot's base frame."""
    from ggik_core.data.graph import ProblemGraphs, canonical_chain, known_mask, node_positions

    chain_c, base = canonical_chain(robot.chain)
    goal_c = invert(base) @ goals.to(torch.float64)
    home = node_positions(home_frames(chain_c))
    known = known_mask(home, robot.dof)
    G = goals.shape[0]
    g = ProblemGraphs(
        dof=robot.dof,
        pos=home.expand(G, *home.shape),
        home=home.expand(G, *home.shape),
        known=known.expand(G, *known.shape),
        goal=goal_c,
        q=torch.zeros(G, robot.dof, dtype=torch.float64),
    )
    return g, chain_c


def errors(robot: Robot, q: Tensor, goals: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """FK-checked position (m), rotation (rad) errors and limit flags of ``q (G, k, n)``."""
    chain = robot.chain.to(q.device)
    T = forward_kinematics(chain, q)
    pos, rot = pose_errors(T, goals[:, None].to(q.device, torch.float64))
    return pos, rot, robot.within_limits(q)


@torch.no_grad()
def sample_solutions(
    model: GGIK,
    robot: Robot,
    goals: Tensor,
    k: int,
    generator: torch.Generator | None = None,
    refine_cfg: RefineConfig | None = None,
    max_graphs: int = 8192,
    passes: int = 0,
    relax: float = 1.0,
    kernels: str = "fused",
) -> Solutions:
    """``k`` IK solutions for each of ``goals (G, 4, 4)`` (base frame of ``robot``), the model's
    samples re-encoded ``passes`` times (0: the prior samples as decoded, GGIK's sampler), the
    passes after the first over-relaxed by ``relax`` (:meth:`ggik_core.model.cvae.GGIK.sample`).
    ``kernels``: "fused" decodes a CPU model through the fused inference kernels (bf16 products
    where the CPU has them), "eager" through torch operations in float32
    (:func:`~ggik_core.model.fused.inference.inference_kernels`)."""
    from ggik_core.data.batch import make_batch, with_answer_positions
    from ggik_core.data.graph import ProblemGraphs, node_positions
    from ggik_core.model.fused.inference import inference_kernels
    from ggik_core.robots.kinematics import chain_frames

    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    goals = goals.to(torch.float64)
    g, chain_c = partial_graphs(robot, goals)
    keep = None
    if refine_cfg is not None:  # the model proposes the whole refinement pool (see _finish)
        keep, k = k, k + extra_count(k, goals.shape[0], refine_cfg)
    per = max(1, max_graphs // k)
    qs = []
    chain_dev = chain_c.to(device)
    for s in range(0, goals.shape[0], per):
        sl = slice(s, s + per)
        sub = ProblemGraphs(g.dof, g.pos[sl], g.home[sl], g.known[sl], g.goal[sl], g.q[sl])
        b = make_batch(sub, model.cfg, with_answer=False).to(device)
        goal_dev = g.goal[sl, None].to(device)

        def arm_pose(rb: GraphBatch, x: Tensor, goal_dev: Tensor = goal_dev) -> GraphBatch:
            """The full graph of the arm configuration recovered from decoded positions."""
            q = recover_joints(chain_dev, x.reshape(goal_dev.shape[0], k, *x.shape[1:]).to(torch.float64), goal_dev)
            return with_answer_positions(rb, node_positions(chain_frames(chain_dev, q)))

        with inference_kernels(model, kernels):
            x = model.sample(b, k, generator=generator, passes=passes, full=arm_pose, relax=relax)  # (G', k, N, 3)
        qs.append(recover_joints(chain_dev, x.to(torch.float64), goal_dev))
    out = _finish(robot, torch.cat(qs), goals, refine_cfg, t0, keep)
    sync()
    out.seconds = time.perf_counter() - t0
    return out


def refine_solutions(robot: Robot, q: Tensor, goals: Tensor, cfg: RefineConfig) -> Solutions:
    """Refine given candidates ``q (G, k, n)`` (e.g. random seeds) and check them by FK."""
    return _finish(robot, q, goals, cfg, time.perf_counter())


def random_seeds(robot: Robot, goals: int, per_goal: int, seed: int) -> Tensor:
    """Configurations uniform inside the limits (a full turn for continuous joints) ``(G, m, n)``."""
    gen = torch.Generator().manual_seed(seed)
    return robot.sample_q(goals * per_goal, gen).reshape(goals, per_goal, robot.dof)


def _finish(robot: Robot, q: Tensor, goals: Tensor, refine_cfg: RefineConfig | None, t0: float, keep: int | None = None) -> Solutions:
    """Refine (which keeps ``q`` inside the limits) or shift whole turns into them; check by FK.

    With refinement, ``k`` candidates per goal come back: ``keep`` of a pool ``q (G, m, n)`` when
    given, else ``q``'s own ``k`` pooled with :func:`extra_count` random seeds per goal.
    """
    lower, upper = (b.to(q.device) for b in robot.bounds())  # continuous joints: unbounded
    goals = goals.to(q.device, torch.float64)
    if refine_cfg is not None:
        if keep is None:
            keep = q.shape[1]
            q = torch.cat([q, random_seeds(robot, goals.shape[0], extra_count(keep, goals.shape[0], refine_cfg), refine_cfg.seed + 1).to(q)], 1)
        q = refine(robot.chain.to(q.device), q, goals[:, None], lower, upper, refine_cfg, keep=keep)
    else:
        q = fit_to_limits(q, lower, upper)
    pos, rot, within = errors(robot, q, goals)
    return Solutions(q=q.cpu(), pos_err=pos.cpu(), rot_err=rot.cpu(), within_limits=within.cpu(), seconds=time.perf_counter() - t0)


def distinct_count(q: Tensor, valid: Tensor, tol: float) -> Tensor:
    """Distinct valid solutions per goal: ``q (G, k, n)``, ``valid (G, k)`` -> ``(G,)``.

    Two solutions are the same when every joint differs by less than ``tol`` (angles compared on
    the circle). Greedy: a valid solution counts when no earlier counted one is within ``tol``
    (:func:`~ggik_core.solve.multistart.first_distinct`).
    """
    return torch.from_numpy(first_distinct(q.detach().cpu().numpy(), valid.cpu().numpy(), tol)).sum(-1)
