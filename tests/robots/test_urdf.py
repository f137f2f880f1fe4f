"""URDF loading of the five reference arms: against yourdfpy's own FK and the catalog's DH tables.

Needs the reference URDFs in ``<shared>/reference/urdf`` where ``<shared>`` is ``$GGIK_SHARED`` or
the ``shared/`` folder beside the repository; the module is skipped without them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ggik_core.robots.catalog import ARM_NAMES, load_arm, urdf_file, urdf_links
from ggik_core.robots.urdf import load_urdf

SHARED = Path(os.environ.get("GGIK_SHARED") or Path(__file__).resolve().parents[3] / "shared")
URDF_DIR = SHARED / "reference" / "urdf"
if not URDF_DIR.is_dir():
    pytest.skip(f"reference URDFs not found in {URDF_DIR} (set GGIK_SHARED)", allow_module_level=True)

yourdfpy = pytest.importorskip("yourdfpy")

TOL = 1e-9
N_Q = 50


@pytest.fixture(scope="module", params=ARM_NAMES)
def arm(request):
    name = request.param
    path = URDF_DIR / urdf_file(name)
    base, ee = urdf_links(name)
    robot = load_urdf(path, ee_link=ee)
    reference = yourdfpy.URDF.load(str(path), build_scene_graph=True, load_meshes=False)
    rng = np.random.default_rng(sum(map(ord, name)))
    q = rng.uniform(-math.pi, math.pi, (N_Q, robot.dof))
    return name, path, base, ee, robot, reference, q


def test_default_links_are_root_and_leaf(arm):
    name, path, base, ee, robot, reference, _ = arm
    # The reference files are single chains from 'world': the defaults pick the same links.
    assert reference.base_link == base
    default = load_urdf(path)
    torch.testing.assert_close(default.chain, robot.chain, rtol=0, atol=0)


def test_fk_matches_yourdfpy(arm):
    name, path, base, ee, robot, reference, q = arm
    got = robot.fk(torch.from_numpy(q)).numpy()
    for k in range(N_Q):
        reference.update_cfg(dict(zip(robot.joint_names, q[k])))
        expected = reference.get_transform(frame_to=ee, frame_from=base)
        np.testing.assert_allclose(got[k], expected, rtol=0, atol=TOL, err_msg=f"{name} q={q[k]}")


def test_fk_matches_catalog(arm):
    """The catalog's DH tables were derived from these URDFs with base = root, frame n = EE link.

    The catalog writes pi, pi/2 and lwa4p's derived offsets with 10 decimals, which accounts for
    FK differences of ~5e-11 (lwa4p included), well inside 1e-9.
    """
    name, path, base, ee, robot, reference, q = arm
    qt = torch.from_numpy(q)
    np.testing.assert_allclose(robot.fk(qt).numpy(), load_arm(name).fk(qt).numpy(), rtol=0, atol=TOL)


def test_joints_and_limits_match_urdf(arm):
    name, path, base, ee, robot, reference, _ = arm
    joints = [reference.joint_map[j] for j in robot.joint_names]
    assert [j.type for j in joints] == ["revolute"] * robot.dof
    assert robot.joint_names == [j.name for j in reference.robot.joints if j.type == "revolute"]
    lower = torch.tensor([j.limit.lower for j in joints], dtype=torch.float64)
    upper = torch.tensor([j.limit.upper for j in joints], dtype=torch.float64)
    torch.testing.assert_close(robot.lower, lower, rtol=0, atol=0)
    torch.testing.assert_close(robot.upper, upper, rtol=0, atol=0)
    # The catalog copies the same limits (10 decimals in the URDFs, full float64 in the catalog).
    cat = load_arm(name)
    torch.testing.assert_close(cat.lower, lower, rtol=0, atol=1e-9)
    torch.testing.assert_close(cat.upper, upper, rtol=0, atol=1e-9)


def test_axis_frames_z_along_joint_axes(arm):
    """A_i's z-axis is joint i's axis and its origin lies on it, in yourdfpy's world too."""
    name, path, base, ee, robot, reference, q = arm
    frames = robot.frames(torch.from_numpy(q[0])).numpy()
    reference.update_cfg(dict(zip(robot.joint_names, q[0])))
    for i, jname in enumerate(robot.joint_names):
        joint = reference.joint_map[jname]
        child = reference.get_transform(frame_to=joint.child, frame_from=base)
        axis = child[:3, :3] @ (joint.axis / np.linalg.norm(joint.axis))
        np.testing.assert_allclose(frames[i, :3, 2], axis, rtol=0, atol=TOL)
        np.testing.assert_allclose(frames[i, :3, 3], child[:3, 3], rtol=0, atol=TOL)


def test_name_and_base_link_arguments():
    path = URDF_DIR / urdf_file("panda")
    robot = load_urdf(path, base_link="panda_link0", ee_link="panda_link8", name="my_panda")
    assert robot.name == "my_panda" and robot.dof == 7
    world = load_urdf(path, ee_link="panda_link8")
    q = torch.zeros(7)
    torch.testing.assert_close(robot.fk(q), world.fk(q), rtol=0, atol=TOL)  # world_joint is identity
    shorter = load_urdf(path, base_link="panda_link2", ee_link="panda_link8")
    assert shorter.joint_names == [f"panda_joint{i}" for i in range(3, 8)]
