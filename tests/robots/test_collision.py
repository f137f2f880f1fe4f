"""Self-collision and obstacle checks from URDF collision geometry.

A planar 3R arm written here (spheres at known places) is checked against distances computed by
hand; mesh paths resolve next to the URDF or through package_dirs, missing meshes are one-line
errors; and on real URDFs of example-robot-data the checks agree with Pinocchio's own collision
pipeline (its URDF parser, meshes as BVH) configuration by configuration.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("coal")

from ggik_core.errors import CollisionError
from ggik_core.robots.collision import CollisionModel
from ggik_core.robots.scene import parse_scene

R = 0.05  # sphere radius


def planar_urdf(collisions: bool = True, mesh: str | None = None) -> str:
    """Joints about z at x = 0 (j1), x = 1 (j2) and x = 0.3 (j3) of their parents; spheres at
    x = 0.5 on link1 and link3, a hand sphere fixed 0.2 beyond link3's; a mesh on link2 if asked."""
    def sphere(x: float) -> str:
        if not collisions:
            return ""
        return f'<collision><origin xyz="{x} 0 0"/><geometry><sphere radius="{R}"/></geometry></collision>'

    link2 = f'<collision><geometry><mesh filename="{mesh}"/></geometry></collision>' if mesh else ""
    joint = ('<joint name="{n}" type="revolute"><parent link="{p}"/><child link="{c}"/><origin xyz="{x} 0 0"/>'
             '<axis xyz="0 0 1"/><limit lower="-3.1" upper="3.1" effort="1" velocity="1"/></joint>')
    return f"""<robot name="planar">
  <link name="base"/>
  <link name="link1">{sphere(0.5)}</link>
  <link name="link2">{link2}</link>
  <link name="link3">{sphere(0.5)}</link>
  <link name="hand">{sphere(0.0)}</link>
  {joint.format(n="j1", p="base", c="link1", x=0)}
  {joint.format(n="j2", p="link1", c="link2", x=1.0)}
  {joint.format(n="j3", p="link2", c="link3", x=0.3)}
  <joint name="hand_joint" type="fixed"><parent link="link3"/><child link="hand"/><origin xyz="0.7 0 0"/></joint>
</robot>"""


def centres(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sphere centres of link1, link3 and the hand for ``q (n, 3)`` by hand."""
    a1, a2, a3 = q[:, 0], q[:, 0] + q[:, 1], q[:, 0] + q[:, 1] + q[:, 2]
    u = lambda a: np.stack([np.cos(a), np.sin(a)], -1)  # noqa: E731
    j3 = u(a1) * 1.0 + u(a2) * 0.3
    return 0.5 * u(a1), j3 + 0.5 * u(a3), j3 + 0.7 * u(a3)


def test_planar_distances_by_hand_and_fixed_child_placed(tmp_path):
    path = tmp_path / "planar.urdf"
    path.write_text(planar_urdf())
    model = CollisionModel.from_urdf(path, "base", "link3", samples=0)
    assert model.checked and model.note is None
    assert model.robot.dof == 3
    # link3 and its fixed hand are one body: rigid; link1-link3 and link1-hand are checked
    assert model.excluded[("hand", "link3")] == "rigid"
    assert model.checked_link_pairs() == [("hand", "link1"), ("link1", "link3")]
    q = np.random.default_rng(0).uniform(-3.1, 3.1, (200, 3))
    c1, c3, ch = centres(q)
    expected = np.minimum(np.linalg.norm(c1 - c3, axis=-1), np.linalg.norm(c1 - ch, axis=-1)) - 2 * R
    free, dist = model.check(q, mode="self")
    np.testing.assert_allclose(dist, np.where(expected > 0, expected, dist), atol=1e-6)
    np.testing.assert_array_equal(free, expected > 0)
    assert (~free).any() and free.any()
    free2, nan = model.check(q, mode="self", distance=False)
    np.testing.assert_array_equal(free2, free)
    assert np.isnan(nan).all()


def test_colliding_pairs_are_named(tmp_path):
    path = tmp_path / "planar.urdf"
    path.write_text(planar_urdf())
    model = CollisionModel.from_urdf(path, "base", "link3", samples=0)
    q = np.random.default_rng(3).uniform(-3.1, 3.1, (300, 3))
    c1, c3, ch = centres(q)
    hit3 = np.linalg.norm(c1 - c3, axis=-1) < 2 * R
    hith = np.linalg.norm(c1 - ch, axis=-1) < 2 * R
    assert (hit3 | hith).any()
    for i in np.nonzero(hit3 | hith)[0]:
        expected = sorted(p for p, h in ((("hand", "link1"), hith[i]), (("link1", "link3"), hit3[i])) if h)
        assert model.colliding_pairs(q[i]) == expected


def test_user_exclusion_and_never_colliding_pairs(tmp_path):
    path = tmp_path / "planar.urdf"
    path.write_text(planar_urdf())
    model = CollisionModel.from_urdf(path, "base", "link3", samples=0, exclude=[("link1", "hand")])
    assert model.excluded[("hand", "link1")] == "user"
    assert model.checked_link_pairs() == [("link1", "link3")]
    with pytest.raises(CollisionError, match="'nope'"):
        CollisionModel.from_urdf(path, "base", "link3", exclude=[("link1", "nope")])


def test_scene_obstacles(tmp_path):
    path = tmp_path / "planar.urdf"
    path.write_text(planar_urdf())
    scene = parse_scene({"obstacles": [{"name": "ball", "type": "sphere", "radius": 0.1, "xyz": [0.0, 0.5, 0.0]},
                                       {"name": "floor", "type": "plane", "xyz": [0, 0, -1.0]}]})
    model = CollisionModel.from_urdf(path, "base", "link3", samples=0, scene=scene)
    q = np.random.default_rng(1).uniform(-3.1, 3.1, (100, 3))
    c1, c3, ch = centres(q)
    ball = np.array([0.0, 0.5])
    expected = np.min([np.linalg.norm(c - ball, axis=-1) for c in (c1, c3, ch)], 0) - R - 0.1
    expected = np.minimum(expected, 1.0 - R)  # the floor is 1 m below every sphere
    free, dist = model.check(q, mode="scene")
    np.testing.assert_array_equal(free, expected > 0)
    np.testing.assert_allclose(dist[free], expected[free], atol=1e-6)
    assert model.check(np.array([[math.pi / 2, 0.0, 0.0]]), mode="scene")[0][0] == False  # noqa: E712
    assert ("link1", "ball") in model.colliding_pairs(np.array([math.pi / 2, 0.0, 0.0]), mode="scene")
    with pytest.raises(CollisionError, match="mode"):
        model.check(q, mode="both")


def test_no_collision_geometry_is_unchecked(tmp_path):
    path = tmp_path / "bare.urdf"
    path.write_text(planar_urdf(collisions=False))
    model = CollisionModel.from_urdf(path, "base", "link3")
    assert not model.checked
    assert model.note == "self-collision unchecked: bare.urdf has no <collision> geometry"
    free, dist = model.check(np.zeros((4, 3)))
    assert free.all() and np.isinf(dist).all()


def write_box_stl(path) -> None:
    import trimesh

    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.creation.box(extents=(0.1, 0.1, 0.1)).export(path)


def test_package_paths_resolve_upward_and_through_package_dirs(tmp_path):
    pkgs = tmp_path / "src" / "pkgs"
    write_box_stl(pkgs / "mypkg" / "meshes" / "box.stl")
    near = pkgs / "mypkg" / "urdf" / "arm.urdf"
    near.parent.mkdir()
    near.write_text(planar_urdf(mesh="package://mypkg/meshes/box.stl"))
    model = CollisionModel.from_urdf(near, "base", "link3", samples=0)
    assert any(p.link == "link2" and p.kind == "mesh" for p in model.parts)
    far = tmp_path / "elsewhere" / "deeper" / "arm.urdf"
    far.parent.mkdir(parents=True)
    far.write_text(near.read_text())
    with pytest.raises(CollisionError) as err:
        CollisionModel.from_urdf(far, "base", "link3", samples=0)
    assert "package://mypkg/meshes/box.stl" in str(err.value) and "'link2'" in str(err.value) and "\n" not in str(err.value)
    model = CollisionModel.from_urdf(far, "base", "link3", samples=0, package_dirs=[pkgs])
    assert len(model.parts) == 4
    missing = pkgs / "mypkg" / "urdf" / "missing.urdf"
    missing.write_text(planar_urdf(mesh="package://mypkg/meshes/gone.stl"))
    with pytest.raises(CollisionError, match=r"mesh 'package://mypkg/meshes/gone.stl' of link 'link2' not found"):
        CollisionModel.from_urdf(missing, "base", "link3")


# --- real robots, against Pinocchio ------------------------------------------------------------

pin = pytest.importorskip("pinocchio")
from pipeline.bench.collide import ARMS, PinocchioCheck, example_robot_data_dir, tabletop_scene  # noqa: E402

ERD = example_robot_data_dir()


@pytest.mark.skipif(ERD is None, reason="example-robot-data is not installed (pip install -e '.[robots]')")
@pytest.mark.parametrize("arm", ["panda", "ur5"])
def test_agrees_with_pinocchio(arm):
    rel, base, ee, table = ARMS[arm]
    scene = tabletop_scene(table, 0.8)
    exact = CollisionModel.from_urdf(ERD / rel, base, ee, samples=300, scene=scene, convex=False)
    ref = PinocchioCheck(ERD / rel, exact)
    robot = exact.robot
    q = robot.lower_np + np.random.default_rng(2).random((150, robot.dof)) * (robot.upper_np - robot.lower_np)
    free, _ = exact.check(q, distance=False)
    np.testing.assert_array_equal(free, ref.free(q))
    assert 0 < free.mean() < 1
    hulls = CollisionModel.from_urdf(ERD / rel, base, ee, samples=300, scene=scene)  # convex hulls: conservative
    free_h, _ = hulls.check(q, distance=False)
    assert not (free_h & ~ref.free(q)).any()


@pytest.mark.skipif(ERD is None, reason="example-robot-data is not installed")
@pytest.mark.parametrize("arm", ["panda", "ur5", "baxter_right"])
def test_the_broad_phase_gives_the_flags_of_testing_every_pair(arm):
    """Boxes first, coal only where they meet: the same flags as every pair through coal, for
    each mode, on configurations where both outcomes are common."""
    rel, base, ee, table = ARMS[arm]
    model = CollisionModel.from_urdf(ERD / rel, base, ee, samples=300, scene=tabletop_scene(table, 0.8))
    robot = model.robot
    q = robot.lower_np + np.random.default_rng(4).random((1500, robot.dof)) * (robot.upper_np - robot.lower_np)
    for mode in ("self", "scene", "all"):
        every, _ = model.check(q, mode=mode, distance=False, broadphase=False)
        boxed, _ = model.check(q, mode=mode, distance=False)
        np.testing.assert_array_equal(boxed, every, err_msg=mode)
        assert 0.02 < every.mean() < 0.98, (mode, every.mean())


@pytest.mark.skipif(ERD is None, reason="example-robot-data is not installed")
def test_panda_hand_and_fingers_are_placed():
    rel, base, ee, _ = ARMS["panda"]
    model = CollisionModel.from_urdf(ERD / rel, base, ee, samples=200)
    links = {p.link for p in model.parts}
    assert {"panda_hand", "panda_leftfinger", "panda_rightfinger"} <= links
    assert model.excluded[("panda_link0", "panda_link1")] == "adjacent"
    assert model.excluded[("panda_hand", "panda_link7")] == "rigid"
    assert any("panda_hand" in pair for pair in model.checked_link_pairs())
