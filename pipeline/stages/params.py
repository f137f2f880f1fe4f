"""The whole of ``params.yaml``, one typed section per stage: ``data``
(:mod:`pipeline.stages.data_params`), ``model`` and ``train`` (:mod:`pipeline.stages.train.params`)
and ``eval`` (:mod:`pipeline.stages.eval_params`). Each stage's command reads only its own
sections; this view of all of them is what ``params.yaml`` is checked against (its values are the
defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.common.params import read_params
from pipeline.stages.data_params import DataParams
from pipeline.stages.eval_params import EvalParams, eval_params
from pipeline.stages.train.params import ModelParams, TrainParams, model_params, training_params


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    model: ModelParams = field(default_factory=model_params)
    train: TrainParams = field(default_factory=TrainParams)
    eval: EvalParams = field(default_factory=EvalParams)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Every section of the params file ``path``, built and checked."""
    raw = read_params(path)
    t = training_params(raw)
    return Params(data=t.data, model=t.model, train=t.train, eval=eval_params(raw.get("eval")))
