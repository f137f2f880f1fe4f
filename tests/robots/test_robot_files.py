"""Robot files given by the user: small URDF and DH YAML files, good and bad."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ggik_core.robots.catalog import load_arm
from ggik_core.errors import GGIKError, RobotError
from ggik_core.robots.files import load_dh_yaml, load_robot
from ggik_core.robots.urdf import load_urdf

# ----------------------------------------------------------------------------- URDF helpers


def link(name: str) -> str:
    return f'<link name="{name}"/>'


def joint(name, parent, child, jtype="revolute", xyz="0 0 0.1", rpy="0 0 0", axis="0 0 1", limit=(-1.5, 2.0), extra=""):
    parts = [f'<joint name="{name}" type="{jtype}">', f'<parent link="{parent}"/>', f'<child link="{child}"/>']
    if xyz is not None or rpy is not None:
        parts.append(f'<origin xyz="{xyz or "0 0 0"}" rpy="{rpy or "0 0 0"}"/>')
    if axis is not None:
        parts.append(f'<axis xyz="{axis}"/>')
    if limit is not None:
        parts.append(f'<limit lower="{limit[0]}" upper="{limit[1]}" effort="1" velocity="1"/>')
    parts.append(extra + "</joint>")
    return "".join(parts)


def urdf_text(*elements: str, name: str = "test_bot") -> str:
    return f'<?xml version="1.0"?>\n<robot name="{name}">\n' + "\n".join(elements) + "\n</robot>\n"


def chain_urdf(joints: list[str], n_links: int) -> str:
    return urdf_text(*[link(f"l{i}") for i in range(n_links)], *joints)


def write(tmp_path, text: str, filename: str = "robot.urdf"):
    path = tmp_path / filename
    path.write_text(text)
    return path


TWO_JOINTS = [joint("j1", "l0", "l1"), joint("j2", "l1", "l2", xyz="0.3 0 0")]


def yourdfpy_fk(path, joint_names, q, base, ee):
    yourdfpy = pytest.importorskip("yourdfpy")
    model = yourdfpy.URDF.load(str(path), build_scene_graph=True, load_meshes=False)
    out = []
    for row in q:
        model.update_cfg(dict(zip(joint_names, row)))
        out.append(model.get_transform(frame_to=ee, frame_from=base))
    return np.stack(out)


# ----------------------------------------------------------------------------- good URDFs


def test_simple_chain(tmp_path):
    robot = load_urdf(write(tmp_path, chain_urdf(TWO_JOINTS, 3)))
    assert robot.name == "test_bot"
    assert robot.joint_names == ["j1", "j2"]
    assert robot.lower.tolist() == [-1.5, -1.5] and robot.upper.tolist() == [2.0, 2.0]
    T = robot.fk(torch.tensor([math.pi / 2, 0.0], dtype=torch.float64))
    torch.testing.assert_close(T[:3, 3], torch.tensor([0.0, 0.3, 0.1], dtype=torch.float64), rtol=0, atol=1e-12)


def test_continuous_joint_is_unbounded(tmp_path):
    joints = [joint("j1", "l0", "l1"), joint("spin", "l1", "l2", jtype="continuous", limit=None)]
    robot = load_urdf(write(tmp_path, chain_urdf(joints, 3)))
    # [-pi, pi] is only the nominal range configurations are drawn from
    assert robot.lower.tolist() == [-1.5, -math.pi]
    assert robot.upper.tolist() == [2.0, math.pi]
    assert robot.continuous.tolist() == [False, True]
    lower, upper = robot.bounds()
    assert lower.tolist() == [-1.5, -math.inf] and upper.tolist() == [2.0, math.inf]
    q = torch.tensor([[0.0, 4.0], [0.0, -10.0], [2.5, 0.0]], dtype=torch.float64)
    assert robot.within_limits(q).tolist() == [True, True, False]


WRIST_ROLL = [
    joint("yaw", "l0", "l1", xyz="0 0 0.2", axis="0 0 1", limit=(-2.0, 2.0)),
    joint("pitch", "l1", "l2", xyz="0 0 0.3", axis="0 1 0", limit=(-2.0, 2.0)),
    joint("roll", "l2", "l3", jtype="continuous", xyz="0.3 0 0", axis="1 0 0", limit=None),
    joint("tool", "l3", "l4", jtype="fixed", xyz="0.05 0.04 0", axis=None, limit=None),
]


def test_continuous_wrist_roll_wraps_across_pi_when_solving(tmp_path):
    """A goal with the roll at 3.0 rad, seeds at -2.9 (0.38 rad away across -pi): the refiner
    crosses pi and returns the roll wrapped into (-pi, pi]; clamped to [-pi, pi] it stalled."""
    from ggik_core.solve.refine import RefineConfig
    from ggik_core.solve.solver import refine_solutions

    robot = load_urdf(write(tmp_path, chain_urdf(WRIST_ROLL, 5)))
    assert robot.continuous.tolist() == [False, False, True]
    q_true = torch.tensor([[0.3, 0.5, 3.0], [-1.0, 1.2, -3.1], [1.5, -0.4, 3.14]], dtype=torch.float64)
    goals = robot.fk(q_true)
    seeds = q_true[:, None].repeat(1, 4, 1) + 0.05 * torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seeds[..., 2] = torch.where(q_true[:, None, 2] > 0, -2.9, 2.9)
    sols = refine_solutions(robot, seeds, goals, RefineConfig(max_iter=40, restart_after=0))
    assert sols.pos_err.max() < 1e-5 and sols.rot_err.max() < 1e-4
    assert bool(sols.within_limits.all())
    roll = sols.q[..., 2]
    assert bool(((roll > -math.pi) & (roll <= math.pi)).all())
    gap = torch.remainder(roll - q_true[:, None, 2] + math.pi, 2 * math.pi) - math.pi
    assert gap.abs().max() < 1e-4


def test_non_z_axes_match_yourdfpy(tmp_path):
    joints = [
        joint("j1", "base", "l1", xyz="0.1 -0.2 0.3", rpy="0.3 -0.4 0.5", axis="0 1 0"),
        joint("j2", "l1", "l2", xyz="0 0.25 0", rpy="1.5707963268 0 0.2", axis="1 0 0"),
        joint("j3", "l2", "l3", xyz="0.2 0 0.1", rpy="0 0 0", axis="0 0 -1"),
        joint("j4", "l3", "l4", xyz="0 0.1 0", rpy="-0.7 1.1 2.9", axis="0.3 -0.5 -0.8"),  # not unit length
        joint("fixed_mid", "l4", "l5", jtype="fixed", xyz="0.05 0 0", rpy="0 0.5 0", axis=None, limit=None),
        joint("j5", "l5", "l6", jtype="continuous", xyz="0 0 0.2", rpy="0.1 0.2 0.3", axis="-1 2 0", limit=None),
        joint("tip", "l6", "tool", jtype="fixed", xyz="0 0 0.12", rpy="0.2 0 0", axis=None, limit=None),
    ]
    text = urdf_text(link("base"), *[link(f"l{i}") for i in range(1, 7)], link("tool"), *joints)
    path = write(tmp_path, text)
    robot = load_urdf(path)
    assert robot.joint_names == ["j1", "j2", "j3", "j4", "j5"]
    rng = np.random.default_rng(0)
    q = rng.uniform(-math.pi, math.pi, (20, 5))
    expected = yourdfpy_fk(path, robot.joint_names, q, "base", "tool")
    np.testing.assert_allclose(robot.fk(torch.from_numpy(q)).numpy(), expected, rtol=0, atol=1e-12)
    # Every axis frame is orthonormal (C is a rotation).
    R = robot.frames(torch.from_numpy(q[0]))[..., :3, :3]
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand_as(R), rtol=0, atol=1e-12)


def test_z_axis_needs_no_extra_rotation(tmp_path):
    robot = load_urdf(write(tmp_path, chain_urdf(TWO_JOINTS, 3)))
    expected = torch.eye(4, dtype=torch.float64)
    expected[2, 3] = 0.1  # j1's origin, nothing else
    torch.testing.assert_close(robot.chain[0], expected, rtol=0, atol=0)


def test_branches_and_off_path_prismatic_joint(tmp_path):
    joints = [
        joint("j1", "l0", "l1"),
        joint("j2", "l1", "l2"),
        joint("finger", "l2", "finger_link", jtype="prismatic", axis="0 1 0", limit=(0, 0.04)),
        joint("flange", "l2", "flange_link", jtype="fixed", xyz="0 0 0.1", axis=None, limit=None),
    ]
    text = chain_urdf(joints, 3).replace("</robot>", link("finger_link") + link("flange_link") + "</robot>")
    path = write(tmp_path, text)
    robot = load_urdf(path, ee_link="flange_link")
    assert robot.joint_names == ["j1", "j2"]
    sub = load_urdf(path, base_link="l1", ee_link="l2")
    assert sub.joint_names == ["j2"]


# ----------------------------------------------------------------------------- bad URDFs


def test_malformed_xml(tmp_path):
    path = write(tmp_path, urdf_text(link("l0"), link("l1")).replace("</robot>", "</robt>"))
    with pytest.raises(RobotError, match="cannot parse URDF") as err:
        load_urdf(path)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_not_a_robot_document(tmp_path):
    path = write(tmp_path, "<?xml version='1.0'?><sdf version='1.6'><model name='m'/></sdf>")
    with pytest.raises(RobotError, match="cannot parse URDF.*<sdf>"):
        load_urdf(path)


def test_missing_file(tmp_path):
    with pytest.raises(RobotError, match="cannot parse URDF"):
        load_urdf(tmp_path / "nope.urdf")


def test_joint_without_parent_element(tmp_path):
    text = urdf_text(link("l0"), link("l1"), '<joint name="orphan" type="revolute"><child link="l1"/></joint>')
    with pytest.raises(RobotError, match="cannot parse URDF"):
        load_urdf(write(tmp_path, text))


@pytest.mark.parametrize("jtype", ["prismatic", "floating", "planar"])
def test_unsupported_joint_type(tmp_path, jtype):
    joints = [joint("j1", "l0", "l1"), joint("slider", "l1", "l2", jtype=jtype)]
    with pytest.raises(RobotError, match=f"'slider' is {jtype}"):
        load_urdf(write(tmp_path, chain_urdf(joints, 3)))


def test_unknown_joint_type(tmp_path):
    joints = [joint("j1", "l0", "l1"), joint("weird", "l1", "l2", jtype="revolut")]
    with pytest.raises(RobotError, match="'weird' has unknown type 'revolut'"):
        load_urdf(write(tmp_path, chain_urdf(joints, 3)))


def test_several_leaves_need_ee_link(tmp_path):
    joints = [joint("j1", "l0", "l1"), joint("ja", "l1", "left"), joint("jb", "l1", "right")]
    text = urdf_text(link("l0"), link("l1"), link("left"), link("right"), *joints)
    with pytest.raises(RobotError, match="--ee-link") as err:
        load_urdf(write(tmp_path, text))
    assert "left" in str(err.value) and "right" in str(err.value)


def test_several_roots_need_base_link(tmp_path):
    text = urdf_text(link("l0"), link("l1"), link("island"), joint("j1", "l0", "l1"))
    with pytest.raises(RobotError, match="--base-link") as err:
        load_urdf(write(tmp_path, text))
    assert "island" in str(err.value)


def test_missing_ee_link(tmp_path):
    with pytest.raises(RobotError, match="'gripper_tip' not found"):
        load_urdf(write(tmp_path, chain_urdf(TWO_JOINTS, 3)), ee_link="gripper_tip")


def test_missing_base_link(tmp_path):
    with pytest.raises(RobotError, match="base link 'pedestal' not found"):
        load_urdf(write(tmp_path, chain_urdf(TWO_JOINTS, 3)), base_link="pedestal")


def test_ee_not_downstream_of_base(tmp_path):
    joints = [joint("j1", "l0", "l1"), joint("ja", "l1", "left"), joint("jb", "l1", "right")]
    text = urdf_text(link("l0"), link("l1"), link("left"), link("right"), *joints)
    with pytest.raises(RobotError, match="'right' is not downstream of base link 'left'"):
        load_urdf(write(tmp_path, text), base_link="left", ee_link="right")


def test_no_revolute_joint_on_path(tmp_path):
    text = urdf_text(link("l0"), link("l1"), joint("weld", "l0", "l1", jtype="fixed", limit=None))
    with pytest.raises(RobotError, match="no revolute joint"):
        load_urdf(write(tmp_path, text))


@pytest.mark.parametrize(("xyz", "rpy"), [("0 nan 0.1", "0 0 0"), ("0 0 0", "0 NaN 0"), ("0 0 inf", "0 0 0")])
def test_nan_in_origin(tmp_path, xyz, rpy):
    joints = [joint("j1", "l0", "l1"), joint("bad_origin", "l1", "l2", xyz=xyz, rpy=rpy)]
    with pytest.raises(RobotError, match="'bad_origin'.*origin"):
        load_urdf(write(tmp_path, chain_urdf(joints, 3)))


def test_nan_in_fixed_joint_origin(tmp_path):
    joints = [joint("j1", "l0", "l1"), joint("bad_weld", "l1", "l2", jtype="fixed", xyz="nan 0 0", limit=None)]
    with pytest.raises(RobotError, match="'bad_weld'.*origin"):
        load_urdf(write(tmp_path, chain_urdf(joints, 3)))


def test_nan_in_limit(tmp_path):
    joints = [joint("j1", "l0", "l1"), joint("bad_limit", "l1", "l2", limit=("nan", 1.0))]
    with pytest.raises(RobotError, match="'bad_limit'.*limit"):
        load_urdf(write(tmp_path, chain_urdf(joints, 3)))


def test_lower_above_upper(tmp_path):
    joints = [joint("j1", "l0", "l1"), joint("inverted", "l1", "l2", limit=(1.0, -1.0))]
    with pytest.raises(RobotError, match="'inverted' has lower limit"):
        load_urdf(write(tmp_path, chain_urdf(joints, 3)))


def test_revolute_without_limit(tmp_path):
    joints = [joint("j1", "l0", "l1"), joint("unlimited", "l1", "l2", limit=None)]
    with pytest.raises(RobotError, match="'unlimited' needs <limit"):
        load_urdf(write(tmp_path, chain_urdf(joints, 3)))


@pytest.mark.parametrize(("axis", "problem"), [("0 0 0", "zero"), ("1 0", "2 components"), ("0 nan 1", "NaN")])
def test_bad_axis(tmp_path, axis, problem):
    joints = [joint("j1", "l0", "l1"), joint("wobbly", "l1", "l2", axis=axis)]
    with pytest.raises(RobotError, match=f"'wobbly' has .*{problem}"):
        load_urdf(write(tmp_path, chain_urdf(joints, 3)))


def test_mimic_joint_on_path(tmp_path):
    joints = [joint("j1", "l0", "l1"), joint("copy", "l1", "l2", extra='<mimic joint="j1"/>')]
    with pytest.raises(RobotError, match="'copy' mimics"):
        load_urdf(write(tmp_path, chain_urdf(joints, 3)))


# ----------------------------------------------------------------------------- DH YAML


def catalog_yaml(name: str, convention: str = "standard") -> str:
    from ggik_core.robots import catalog

    rows = catalog._ARMS[name][1]
    lower, upper = catalog._ARMS[name][2], catalog._ARMS[name][3]
    lines = [f"name: {name}_yaml", f"convention: {convention}", "joints:"]
    for (a, alpha, d, theta), lo, hi in zip(rows, lower, upper):
        lines.append(f"  - {{a: {a!r}, alpha: {alpha!r}, d: {d!r}, theta_offset: {theta!r}, lower: {lo!r}, upper: {hi!r}}}")
    return "\n".join(lines) + "\n"


PANDA_MDH_YAML = """\
# Franka Panda, Craig modified DH, flange as EE
convention: modified
joints:
  - {a: 0.0,     alpha: 0.0,           d: 0.333}
  - {a: 0.0,     alpha: -1.5707963268, d: 0.0,   lower: -1.7628, upper: 1.7628}
  - {a: 0.0,     alpha: 1.5707963268,  d: 0.316}
  - {a: 0.0825,  alpha: 1.5707963268,  d: 0.0}
  - {a: -0.0825, alpha: -1.5707963268, d: 0.384}
  - {a: 0.0,     alpha: 1.5707963268,  d: 0.0}
  - {a: 0.088,   alpha: 1.5707963268,  d: 0.0}
tool: {xyz: [0, 0, 0.107]}
"""


@pytest.mark.parametrize("name", ["ur10", "lwa4p"])
def test_yaml_standard_matches_catalog(tmp_path, name):
    robot = load_robot(str(write(tmp_path, catalog_yaml(name), "arm.yaml")))
    ref = load_arm(name)
    assert robot.name == f"{name}_yaml"
    q = ref.sample_q(30, torch.Generator().manual_seed(0))
    torch.testing.assert_close(robot.fk(q), ref.fk(q), rtol=0, atol=1e-12)
    from ggik_core.robots import catalog

    # Limits keep full float64 precision.
    assert robot.lower.tolist() == list(catalog._ARMS[name][2])
    assert robot.upper.tolist() == list(catalog._ARMS[name][3])


def test_yaml_modified_with_tool_matches_catalog_panda(tmp_path):
    robot = load_robot(str(write(tmp_path, PANDA_MDH_YAML, "panda_mdh.yml")))
    assert robot.name == "panda_mdh" and robot.dof == 7
    assert robot.lower[1].item() == -1.7628 and robot.lower[0].item() == -math.pi
    q = load_arm("panda").sample_q(30, torch.Generator().manual_seed(1))
    torch.testing.assert_close(robot.fk(q), load_arm("panda").fk(q), rtol=0, atol=1e-9)


def test_yaml_tool_rpy(tmp_path):
    text = "convention: standard\njoints:\n  - {a: 0.5, alpha: 0, d: 0}\ntool: {xyz: [0, 0, 0.1], rpy: [0, 0, 1.5707963267948966]}\n"
    robot = load_dh_yaml(write(tmp_path, text, "one.yaml"))
    T = robot.fk(torch.zeros(1))
    torch.testing.assert_close(T[:3, 3], torch.tensor([0.5, 0.0, 0.1], dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(T[:3, 0], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-12)


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    text = "convention: standard\njoints:\n  - {a: 1e-3, alpha: 0, d: 0}\n"
    robot = load_dh_yaml(write(tmp_path, text, "tiny.yaml"))
    assert robot.chain[1, 0, 3].item() == pytest.approx(1e-3)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("convention: standard\njoints: [ {a: 0, alpha: 0\n", "cannot parse DH file"),
        ("- just\n- a list\n", "expected a mapping"),
        ("convention: standard\n", "missing key 'joints'"),
        ("convention: standard\njoints: []\n", "non-empty list"),
        ("joints:\n  - {a: 0, alpha: 0, d: 0}\n", "missing key 'convention'"),
        ("convention: craig_mdh\njoints:\n  - {a: 0, alpha: 0, d: 0}\n", "unknown convention 'craig_mdh'"),
        ("convention: standard\njoints:\n  - {a: 0, alpha: 0, d: 0}\n  - {a: 0, alpha: .nan, d: 0}\n", "joint 2, 'alpha'.*NaN"),
        ("convention: standard\njoints:\n  - {a: 0, alpha: 0, d: nan}\n", "joint 1, 'd'.*NaN"),
        ("convention: standard\njoints:\n  - {a: 0, alpha: 0, d: 0}\n  - {a: 0, d: 0}\n", "joint 2: missing key 'alpha'"),
        ("convention: standard\njoints:\n  - {a: 0, alpha: 0, d: 0}\n  - {a: long, alpha: 0, d: 0}\n", "joint 2, 'a'.*'long' is not a number"),
        ("convention: standard\njoints:\n  - {a: 0, alpha: 0, d: [1]}\n", "joint 1, 'd'.*not a number"),
        ("convention: standard\njoints:\n  - {a: 0, alpha: 0, d: 0, lower: 1, upper: -1}\n", "joint 1: lower limit"),
        ("convention: standard\njoints:\n  - {a: 0, alpha: 0, d: 0, theta: 1}\n", "joint 1: unknown key.*theta"),
        ("convention: standard\njoints:\n  - 0.5\n", "joint 1: expected a mapping"),
        ("convention: standard\njonts:\n  - {a: 0, alpha: 0, d: 0}\n", "unknown key.*jonts"),
        ("convention: standard\njoints:\n  - {a: 0, alpha: 0, d: 0}\ntool: {xyz: [0, 0]}\n", "tool: 'xyz' must be a list of 3"),
        ("convention: standard\njoints:\n  - {a: 0, alpha: 0, d: 0}\ntool: {rpy: [0, .inf, 0]}\n", "tool, 'rpy'.*NaN or infinite"),
    ],
)
def test_bad_dh_yaml(tmp_path, text, pattern):
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(RobotError, match=pattern) as err:
        load_robot(str(path))
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- load_robot


def test_catalog_names_are_case_insensitive():
    robot = load_robot("UR10")
    assert robot.name == "ur10" and robot.dof == 6


def test_unknown_spec():
    with pytest.raises(GGIKError, match=r"unknown robot 'ur11': not a catalog name \(ur10, kuka, .*\) nor a file"):
        load_robot("ur11")


def test_links_only_for_urdf():
    with pytest.raises(GGIKError, match="--ee-link"):
        load_robot("panda", ee_link="panda_link8")


def test_load_robot_urdf_by_extension_and_content(tmp_path):
    text = chain_urdf(TWO_JOINTS, 3)
    by_ext = load_robot(str(write(tmp_path, text, "bot.urdf")), ee_link="l2")
    no_declaration = text.split("\n", 1)[1]
    by_content = load_robot(str(write(tmp_path, "\n  " + no_declaration, "bot.description")))
    assert by_ext.joint_names == by_content.joint_names == ["j1", "j2"]
    with pytest.raises(RobotError, match="'l9' not found"):
        load_robot(str(tmp_path / "bot.urdf"), ee_link="l9")


def test_yaml_without_known_extension(tmp_path):
    robot = load_robot(str(write(tmp_path, PANDA_MDH_YAML, "panda.dh")))
    assert robot.dof == 7
