"""The numerical IK baselines of `ggik bench ik`, imported lazily: pytorch-kinematics'
``PseudoInverseIK`` (batched) and TRAC-IK (the ``pytracik`` wheel, one pose and seed per call).
Both read the robot's URDF chain (a catalog arm's reference URDF, or the user's) and use the
robot's joint limits; every candidate is checked by our FK (:func:`ggik_core.solve.solver.errors`)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ggik_core.errors import GGIKError
from ggik_core.robots.catalog import urdf_file, urdf_links
from ggik_core.robots.robot import Robot
from ggik_core.solve.refine import RefineConfig
from ggik_core.solve.solver import Solutions, errors

TRAC_IK_TIMEOUT_S = 0.005  # the TRAC-IK default
TRAC_IK_EPSILON = 1e-5


@dataclass(frozen=True)
class UrdfChain:
    """The chain ``base -> ee`` of a URDF file, as the baselines read it."""

    path: Path
    base: str
    ee: str


def catalog_chain(name: str) -> UrdfChain:
    """A catalog arm's reference URDF and links."""
    base, ee = urdf_links(name)
    return UrdfChain(urdf_dir() / urdf_file(name), base, ee)


def urdf_dir() -> Path:
    """``$GGIK_SHARED/reference/urdf``, else ``shared/reference/urdf`` beside the repository (or, where
    there is none, inside it)."""
    if os.environ.get("GGIK_SHARED"):
        return Path(os.environ["GGIK_SHARED"]) / "reference" / "urdf"
    repo = Path(__file__).resolve().parents[2]
    beside, inside = repo.parent / "shared" / "reference" / "urdf", repo / "shared" / "reference" / "urdf"
    return inside if inside.is_dir() and not beside.is_dir() else beside


# --- optional baselines: imported lazily ---------------------------------------------------------
def import_pytorch_kinematics():
    import pytorch_kinematics

    return pytorch_kinematics


def import_trac_ik():
    import pytracik  # noqa: F401 - the compiled extension; fails first when its libraries are missing
    from trac_ik import TracIK

    return TracIK


def availability(importer) -> tuple[object | None, str]:
    """(module or class, "") when it imports, else (None, reason)."""
    try:
        return importer(), ""
    except (ImportError, OSError) as exc:
        return None, f"{type(exc).__name__}: {exc}".replace("\n", " ")


def package_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None



# --- running them -------------------------------------------------------------------------------
def pk_solver(pk, robot: Robot, urdf: UrdfChain, k: int, cfg: RefineConfig, device: torch.device):
    """A ``PseudoInverseIK`` for the robot's URDF chain, with the robot's joint limits."""
    path = urdf.path
    chain = pk.build_serial_chain_from_urdf(path.read_bytes(), urdf.ee, root_link_name=urdf.base)
    chain = chain.to(dtype=torch.float64, device=str(device))
    if len(chain.get_joint_parameter_names()) != robot.dof:
        raise GGIKError(f"{path.name}: {len(chain.get_joint_parameter_names())} joints, the catalog arm has {robot.dof}")
    # the URDF parser reads numbers in float32; use the catalog's limits exactly, as every method does
    chain.low = robot.lower.to(device)
    chain.high = robot.upper.to(device)
    limits = torch.stack([robot.lower, robot.upper], -1).to(device)
    dummy = robot.lower.expand(k, robot.dof).to(device)
    return pk.PseudoInverseIK(
        chain,
        pos_tolerance=cfg.pos_tol,
        rot_tolerance=cfg.rot_tol,
        retry_configs=dummy,  # replaced by per-goal seeds before solving
        joint_limits=limits,
        max_iterations=cfg.max_iter,
    )


def run_pytorch_kinematics(pk, solver, robot: Robot, goals: Tensor, q_seed: Tensor, device: torch.device) -> Solutions:
    """All goals and seeds in one batched ``solve``; candidates checked by the catalog FK."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    G, k, n = q_seed.shape
    sync()
    t0 = time.perf_counter()
    # per-goal seeds: PseudoInverseIK.solve reshapes an initial_config of G*k*n entries to (G*k, n)
    solver.initial_config = q_seed.to(device)
    target = pk.Transform3d(matrix=goals.to(device), dtype=torch.float64, device=str(device))
    res = solver.solve(target)
    q = res.solutions.reshape(G, k, n).to(torch.float64)
    pos, rot, within = errors(robot, q, goals.to(device))
    sync()
    seconds = time.perf_counter() - t0
    return Solutions(q=q.cpu(), pos_err=pos.cpu(), rot_err=rot.cpu(), within_limits=within.cpu(), seconds=seconds)


#: TRAC-IK's range for a continuous joint (it draws its random restarts inside the limits it is given)
CONTINUOUS_RANGE = 2 * math.pi


def trac_ik_solver(TracIK, robot: Robot, urdf: UrdfChain):
    path = urdf.path
    solver = TracIK(urdf.base, urdf.ee, str(path), timeout=TRAC_IK_TIMEOUT_S, epsilon=TRAC_IK_EPSILON, solver_type="Speed")
    if solver.dof != robot.dof:
        raise GGIKError(f"{path.name}: TRAC-IK sees {solver.dof} joints, our robot has {robot.dof}")
    # TRAC-IK's URDF reader gets some limits wrong (all zero on the Panda): set ours; a continuous
    # joint gets two turns each way (it has no limits, and our check never fails it)
    cont = robot.continuous
    lower = torch.where(cont, -CONTINUOUS_RANGE, robot.lower)
    upper = torch.where(cont, CONTINUOUS_RANGE, robot.upper)
    solver.joint_limits = (lower.tolist(), upper.tolist())
    return solver


def run_trac_ik(solver, robot: Robot, goals: Tensor, q_seed: Tensor) -> Solutions:
    """One TRAC-IK call per goal and seed (its API solves one pose at a time)."""
    G, k, n = q_seed.shape
    goals_np = goals.to(torch.float64).numpy()
    seeds_np = q_seed.to(torch.float64).numpy()
    q = q_seed.clone()
    found = torch.zeros(G, k, dtype=torch.bool)
    t0 = time.perf_counter()
    for g in range(G):
        pos, R = goals_np[g, :3, 3].copy(), goals_np[g, :3, :3].copy()
        for j in range(k):
            out = solver.ik(pos, R, seeds_np[g, j])
            if out is not None:
                q[g, j] = torch.as_tensor(out, dtype=torch.float64)
                found[g, j] = True
    pos_err, rot_err, within = errors(robot, q, goals)
    seconds = time.perf_counter() - t0
    inf = torch.full_like(pos_err, math.inf)
    return Solutions(q=q, pos_err=torch.where(found, pos_err, inf), rot_err=torch.where(found, rot_err, inf),
                     within_limits=within, seconds=seconds)
