"""A URDF joint without ``<axis>`` turns about ``1 0 0``, as the URDF specification says.

The expectation is computed here, from the numbers written into the file: each joint's origin
(``xyz``, fixed-axis ``rpy`` by scipy) followed by a rotation about the joint's axis by scipy's
rotation vector, multiplied out link by link.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ggik_core.robots.urdf import load_urdf

# name, type, xyz, rpy, axis (None: no <axis> element)
JOINTS = [
    ("j1", "revolute", (0.0, 0.0, 0.3), (0.0, 0.0, 0.0), None),
    ("j2", "revolute", (0.1, 0.05, 0.2), (0.3, -0.2, 0.5), None),
    ("j3", "continuous", (0.0, 0.25, 0.0), (0.0, 0.4, 0.0), None),
    ("j4", "revolute", (0.2, 0.0, 0.1), (-0.1, 0.0, 0.2), (0.0, 1.0, 0.0)),  # written: only this one
    ("j5", "revolute", (0.0, -0.1, 0.15), (0.2, 0.1, -0.3), None),
]
TOOL = ((0.05, 0.0, 0.1), (0.0, 0.3, 0.0))


def urdf_text() -> str:
    links = ["base"] + [f"l{i + 1}" for i in range(len(JOINTS))] + ["tool"]
    out = ['<?xml version="1.0"?>', '<robot name="no_axes">']
    out += [f'  <link name="{name}"/>' for name in links]
    for i, (name, jtype, xyz, rpy, axis) in enumerate(JOINTS):
        out.append(f'  <joint name="{name}" type="{jtype}">')
        out.append(f'    <parent link="{links[i]}"/><child link="{links[i + 1]}"/>')
        out.append(f'    <origin xyz="{" ".join(map(repr, xyz))}" rpy="{" ".join(map(repr, rpy))}"/>')
        if axis is not None:
            out.append(f'    <axis xyz="{" ".join(map(repr, axis))}"/>')
        if jtype == "revolute":
            out.append('    <limit lower="-2.5" upper="2.5" effort="1" velocity="1"/>')
        out.append("  </joint>")
    out.append('  <joint name="tool_weld" type="fixed">')
    out.append(f'    <parent link="{links[-2]}"/><child link="tool"/>')
    out.append(f'    <origin xyz="{" ".join(map(repr, TOOL[0]))}" rpy="{" ".join(map(repr, TOOL[1]))}"/>')
    out.append("  </joint>")
    out.append("</robot>")
    return "\n".join(out) + "\n"


def transform(xyz, rpy=(0.0, 0.0, 0.0), rotvec=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    # scipy's lowercase 'xyz' is extrinsic: R = Rz(yaw) Ry(pitch) Rx(roll), the URDF convention
    T[:3, :3] = Rotation.from_euler("xyz", rpy).as_matrix() @ Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = xyz
    return T


def fk_expected(q: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    for qi, (_, _, xyz, rpy, axis) in zip(q, JOINTS):
        a = np.array((1.0, 0.0, 0.0) if axis is None else axis)
        T = T @ transform(xyz, rpy, qi * a / np.linalg.norm(a))
    return T @ transform(*TOOL)


def test_joints_without_an_axis_turn_about_x(tmp_path):
    path = tmp_path / "no_axes.urdf"
    path.write_text(urdf_text())
    robot = load_urdf(path)
    assert robot.dof == len(JOINTS)
    assert list(robot.joint_names) == [j[0] for j in JOINTS]
    rng = np.random.default_rng(0)
    q = rng.uniform(-2.4, 2.4, size=(16, len(JOINTS)))
    q[0] = 0.0
    q[1] = [0.7, 0.0, 0.0, 0.0, 0.0]  # one joint at a time: a wrong axis shows on its own
    q[2] = [0.0, 0.0, 0.0, 0.0, -1.1]
    got = robot.fk(torch.from_numpy(q)).numpy()
    want = np.stack([fk_expected(row) for row in q])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("axis_xml", ['<axis xyz="1 0 0"/>', "", "<axis/>"], ids=["written", "no_element", "no_xyz"])
def test_a_joint_without_an_axis_or_its_xyz_is_the_same_as_one_about_x(tmp_path, axis_xml):
    text = f"""<robot name="one">
  <link name="a"/><link name="b"/><link name="c"/>
  <joint name="j" type="revolute"><parent link="a"/><child link="b"/>{axis_xml}
    <limit lower="-3" upper="3" effort="1" velocity="1"/></joint>
  <joint name="tip" type="fixed"><parent link="b"/><child link="c"/><origin xyz="0 0.5 0"/></joint>
</robot>
"""
    path = tmp_path / "one.urdf"
    path.write_text(text)
    robot = load_urdf(path)
    T = robot.fk(torch.tensor([[np.pi / 2]], dtype=torch.float64)).numpy()[0]
    # turning +90 degrees about x takes the tip at (0, 0.5, 0) to (0, 0, 0.5)
    np.testing.assert_allclose(T[:3, 3], [0.0, 0.0, 0.5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(T[:3, :3], Rotation.from_rotvec([np.pi / 2, 0, 0]).as_matrix(), rtol=0, atol=1e-12)
