"""The layer registry: a new layer type is one file and one registration; the model, the config's
checks and the params read it, and a layer the fused kernels cannot run trains on the eager path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ggik_core.data.edges import EdgeSpec
from ggik_core.model.config import ModelConfig, choices
from ggik_core.model.fused.edges import ALPHA_WEIGHTED
from ggik_core.model.layers.egat import EGATLayer
from ggik_core.model.layers.egnn import EGNNLayer
from ggik_core.model.layers.registry import layer_entry, layer_names, register_layer

REPO = Path(__file__).resolve().parents[3]

#: the whole of a new layer type: EGNN with GELU activations, in a file of its own
GELU_LAYER = '''
from ggik_core.model.fused.edges import ALPHA_WEIGHTED
from ggik_core.model.layers.egnn import EGNNLayer
from ggik_core.model.layers.registry import register_layer


@register_layer("egnn_gelu", edge_features=("distance", "known"), fused=ALPHA_WEIGHTED)
class GeluEGNNLayer(EGNNLayer):
    """EGNN with GELU in every MLP."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "act": "gelu"})
'''

#: trains one step of a model of that type, the way the training stage configures it
TRAIN_ONE_STEP = '''
import json, warnings
import torch
import gelu_layer  # registers "egnn_gelu"
from ggik_core.data.batch import make_batch
from ggik_core.data.graph import build_problem_graphs
from ggik_core.data.problems import random_problems
from ggik_core.model.config import ModelConfig
from ggik_core.model.cvae import GGIK
from ggik_core.model.fused import edges
from ggik_core.robots.random_robots import RandomRobotConfig

calls = []
apply = edges.FusedEdges.apply
edges.FusedEdges.apply = lambda *a: calls.append(1) or apply(*a)
cfg = ModelConfig(layer="egnn_gelu", hidden=16, layers=2, latent=4, components=3)
cfg.check()
torch.manual_seed(0)
model = GGIK(cfg)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    why = model.use_kernels("fused")
pb = random_problems(8, 6, RandomRobotConfig(), torch.Generator().manual_seed(1))
b = make_batch(build_problem_graphs(pb.chain, pb.q, pb.goal), cfg)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
before = [p.detach().clone() for p in model.parameters()]
with torch.autocast("cpu", dtype=torch.bfloat16):
    loss = model(b, 1.0)["total"]
loss.backward()
opt.step()
moved = sum(not torch.equal(p, q) for p, q in zip(model.parameters(), before))
print(json.dumps({"why": why, "warnings": [str(w.message) for w in caught], "fused_calls": len(calls),
                  "loss": float(loss), "moved": moved, "params": len(before),
                  "types": sorted({type(m).__name__ for m in model.modules() if hasattr(m, "layer_name")})}))
'''


def test_a_new_layer_type_is_one_file_and_trains_on_the_eager_path(tmp_path):
    (tmp_path / "gelu_layer.py").write_text(textwrap.dedent(GELU_LAYER))
    out = subprocess.run([sys.executable, "-c", TRAIN_ONE_STEP], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{REPO}"})
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["types"] == ["GeluEGNNLayer"]
    assert "phi_e's activation is GELU" in res["why"]
    assert len(res["warnings"]) == 1 and "egnn_gelu" in res["warnings"][0] and "eager" in res["warnings"][0]
    assert res["fused_calls"] == 0  # the kernels compute SiLU: they never ran
    assert res["loss"] == res["loss"] and res["moved"] == res["params"]  # a finite loss, and every weight trained


def test_the_builtin_layers_are_registered_with_their_edge_features():
    assert layer_names()[:2] == ("egnn", "egat")  # whatever order their modules were imported in
    assert layer_entry("egnn").cls is EGNNLayer and layer_entry("egat").cls is EGATLayer
    assert layer_entry("egnn").edges == EdgeSpec(("distance", "known"))
    assert layer_entry("egat").edges == EdgeSpec(("distance", "known", "direction"))
    assert layer_entry("egnn").fused is ALPHA_WEIGHTED and layer_entry("egat").fused is ALPHA_WEIGHTED
    assert ModelConfig().edge_dim == 2 and ModelConfig(layer="egat").edge_dim == 5
    assert choices()["layer"] == layer_names()


def test_the_layer_names_do_not_depend_on_the_import_order():
    code = ("from ggik_core.model.layers import egat\nfrom ggik_core.model.layers.registry import layer_names\n"
            "from ggik_core.model.layers import egnn\nprint(' '.join(layer_names()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["egnn", "egat"]


def test_unknown_layers_and_options_are_one_line_errors():
    with pytest.raises(ValueError, match=r"unknown layer 'gcn' \(egnn or egat"):
        layer_entry("gcn")
    with pytest.raises(ValueError, match=r"model.layer must be egnn or egat.*got 'gcn'"):
        ModelConfig(layer="gcn").check()
    with pytest.raises(ValueError, match="model.layer egat: symmetric messages are for egnn layers"):
        ModelConfig(layer="egat", symmetric=True).check()
    with pytest.raises(ValueError, match="unknown edge feature 'angle'"):
        register_layer("egnn_angle", edge_features=("distance", "angle"))
    with pytest.raises(ValueError, match="registered already"):
        register_layer("egnn", edge_features=("distance", "known"))(type("Other", (EGNNLayer,), {}))
