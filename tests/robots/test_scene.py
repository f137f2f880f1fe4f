"""Obstacle scene files: the documented format parses, and every kind of mistake is one line naming the entry."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from ggik_core.errors import CollisionError, GGIKError
from ggik_core.robots.scene import load_scene, parse_scene

GOOD = """
obstacles:
  - name: table
    type: plane
    xyz: [0, 0, -0.01]
  - name: box_left
    type: box
    size: [0.2, 0.3, 0.4]
    xyz: [0.5, 0.3, 0.2]
    rpy: [0, 0, 1.5707963267948966]
  - type: sphere
    radius: 0.1
  - type: cylinder
    radius: 0.05
    length: 0.3
    quat: [0, 0, 0, 2]
  - type: capsule
    radius: 0.05
    length: 0.3
"""


def test_documented_format_parses(tmp_path):
    path = tmp_path / "scene.yaml"
    path.write_text(GOOD)
    scene = load_scene(path)
    assert [o.name for o in scene.obstacles] == ["table", "box_left", "sphere #3", "cylinder #4", "capsule #5"]
    assert [o.type for o in scene.obstacles] == ["plane", "box", "sphere", "cylinder", "capsule"]
    box = scene.obstacles[1]
    assert box.size == (0.2, 0.3, 0.4)
    np.testing.assert_allclose(box.pose[:3, 3], [0.5, 0.3, 0.2])
    np.testing.assert_allclose(box.pose[:3, 0], [0, 1, 0], atol=1e-12)  # yaw 90 degrees: x -> y
    np.testing.assert_allclose(scene.obstacles[3].pose[:3, :3], np.diag([-1.0, -1.0, 1.0]), atol=1e-12)  # z half turn, normalised
    if importlib.util.find_spec("coal") is not None:
        for o in scene.obstacles:
            assert o.geometry() is not None


@pytest.mark.parametrize("entry, words", [
    ({"type": "cone", "radius": 1}, ["#1", "unknown type 'cone'"]),
    ({"name": "b", "type": "box", "size": [0.1, -0.2, 0.3]}, ["'b'", "positive"]),
    ({"type": "sphere"}, ["#1", "'radius'"]),
    ({"radius": 0.1}, ["#1", "no 'type'"]),
    ({"type": "box", "size": [0.1, 0.2]}, ["'size'", "3 numbers"]),
    ({"type": "sphere", "radius": 0.1, "colour": "red"}, ["unknown key 'colour'"]),
    ({"type": "sphere", "radius": 0.1, "rpy": [0, 0, 0], "quat": [1, 0, 0, 0]}, ["not both"]),
    ({"type": "sphere", "radius": "big"}, ["'radius'"]),
    ({"type": "cylinder", "radius": 0.1, "length": float("nan")}, ["finite"]),
])
def test_bad_entries_are_one_line_errors(entry, words):
    with pytest.raises(CollisionError) as err:
        parse_scene({"obstacles": [entry]}, "s.yaml")
    message = str(err.value)
    assert isinstance(err.value, GGIKError) and "\n" not in message and "s.yaml" in message
    for w in words:
        assert w in message


def test_file_errors(tmp_path):
    with pytest.raises(CollisionError, match="cannot read scene"):
        load_scene(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("obstacles: [\n")
    with pytest.raises(CollisionError, match="cannot parse scene"):
        load_scene(bad)
    with pytest.raises(CollisionError, match="unknown top-level key 'obstacle'"):
        parse_scene({"obstacle": []})
    with pytest.raises(CollisionError, match="two obstacles are named 'a'"):
        parse_scene([{"name": "a", "type": "plane"}, {"name": "a", "type": "plane"}])
