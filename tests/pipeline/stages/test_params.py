"""One config source: params.yaml states the dataclass defaults, the library configs are the params."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from ggik_core.model.config import ModelConfig
from ggik_core.robots.random_robots import RandomRobotConfig
from ggik_core.solve.refine import RefineConfig
from pipeline.stages.data import robot_config
from pipeline.stages.evaluate import refine_config
from pipeline.common.params import pick
from pipeline.stages.data_params import DataParams
from pipeline.stages.eval_params import EvalParams
from pipeline.stages.params import Params, load_params

REPO = Path(__file__).resolve().parents[3]


def test_params_yaml_equals_the_defaults() -> None:
    """Defaults are stated once: the dataclasses; params.yaml must say the same."""
    assert load_params(REPO / "params.yaml") == Params()
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section in ("data", "model", "train", "eval"):
        defaults = dataclasses.asdict(getattr(Params(), section))
        for key, value in raw[section].items():
            assert defaults[key] == (tuple(value) if isinstance(value, list) else value), f"{section}.{key}"


def test_model_params_are_the_library_config() -> None:
    assert type(Params().model) is ModelConfig


def test_library_configs_are_built_by_field_name() -> None:
    p = DataParams(geometry="noncoplanar", p_parallel=0.1, p_skew=0.7)
    assert robot_config(p) == RandomRobotConfig(geometry="noncoplanar", p_parallel=0.1, p_skew=0.7)
    e = EvalParams(refine_max_iter=7, refine_pos_tol=2e-5, refine_rot_tol=3e-4)
    assert refine_config(e) == RefineConfig(max_iter=7, pos_tol=2e-5, rot_tol=3e-4, restart_after=0, extra_seeds=0.0)
    assert DataParams().p_skew == RandomRobotConfig().p_skew
    assert EvalParams().refine_pos_tol == RefineConfig().pos_tol
    assert pick(RefineConfig, object()) == RefineConfig()


def test_readme_presets_name_real_params() -> None:
    """Every `-S section.key=value` in the README's presets is a param load_params accepts."""
    text = (REPO / "README.md").read_text()
    sets = re.findall(r"-S '?([a-z_]+)\.([a-z_]+)=(\S+)", text)
    assert sets, "no presets found in the README"
    fields = {s: {f.name for f in dataclasses.fields(getattr(Params(), s))} for s in ("data", "model", "train", "eval")}
    for section, key, _ in sets:
        assert key in fields[section], f"README preset sets unknown param {section}.{key}"


def test_deterministic_is_chosen_per_device(tmp_path) -> None:
    import torch

    from pipeline.stages.train.params import TrainParams
    from pipeline.stages.train.precision import deterministic_for

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert deterministic_for(TrainParams(), cpu) and not deterministic_for(TrainParams(), cuda)
    assert deterministic_for(TrainParams(deterministic="true"), cuda)
    assert not deterministic_for(TrainParams(deterministic="false"), cpu)
    (tmp_path / "p.yaml").write_text("train:\n  deterministic: true\n")  # a YAML boolean reads as "True"
    assert deterministic_for(load_params(tmp_path / "p.yaml").train, cuda)


def test_each_stage_reads_and_checks_only_its_sections(tmp_path) -> None:
    """generate and build_graphs read the data section alone, evaluate the eval section alone;
    train reads data, model and train."""
    import pytest

    from ggik_core.errors import GGIKError
    from pipeline.stages.data_params import load_data_params
    from pipeline.stages.eval_params import load_eval_params
    from pipeline.stages.train.params import load_training_params

    path = tmp_path / "p.yaml"
    path.write_text("data:\n  n_problems: 12\nmodel:\n  phi_e: linear\neval:\n  samples: 4\n")
    assert load_data_params(path) == DataParams(n_problems=12)
    assert load_eval_params(path) == EvalParams(samples=4)
    with pytest.raises(GGIKError, match="model.phi_e must be mlp or single"):
        load_training_params(path)
    with pytest.raises(GGIKError, match="model.phi_e"):
        load_params(path)
    path.write_text("train:\n  kernels: numba\n")
    with pytest.raises(GGIKError, match="train.kernels must be fused or eager, got 'numba'"):
        load_training_params(path)
    assert load_data_params(path) == DataParams()

