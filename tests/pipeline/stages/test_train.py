"""The training stage: overfitting, determinism, resumption, DDP, parameter coverage."""

from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from ggik_core.data.batch import make_batch
from ggik_core.data.graph import build_problem_graphs
from ggik_core.model.cvae import GGIK, ModelConfig
from ggik_core.data.problems import random_problems
from ggik_core.robots.random_robots import RandomRobotConfig
from pipeline.stages.data_params import DataParams
from pipeline.stages.params import Params
from pipeline.stages.train.params import ModelParams, TrainParams
from pipeline.stages.probe import probe_steps
from ggik_core.model.files import load_model
from pipeline.stages.train.checkpoint import fingerprint_train
from pipeline.common.metrics_files import read_losses, read_probes
from pipeline.stages.train.loop import train

TINY = Params(
    data=DataParams(n_problems=96, dofs=(5, 6)),
    model=ModelParams(hidden=16, layers=2, latent=4, components=3, message=16),
    train=TrainParams(epochs=2, batch_size=32, beta_warmup_epochs=1, num_threads=1, probes=0),
)


@pytest.fixture(scope="module")
def graphs(make_graphs) -> Path:
    return make_graphs(TINY.data)


def _run(params: Params, graphs: Path, root: Path) -> dict:
    res = train(params, graphs, root / "model", root / "metrics")
    return json.loads((root / "metrics" / "train" / "metrics.json").read_text()) | {"_res": res}


@pytest.mark.parametrize("layer", ["egnn", "egat"])
def test_overfits_a_tiny_dataset(layer):
    torch.manual_seed(0)
    pb = random_problems(8, 6, RandomRobotConfig(), torch.Generator().manual_seed(0))
    cfg = ModelConfig(layer=layer, hidden=32, layers=3, latent=4, components=2, message=32)
    model = GGIK(cfg)
    b = make_batch(build_problem_graphs(pb.chain, pb.q, pb.goal), cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        losses = model.loss(b, beta=0.0)
        opt.zero_grad()
        losses.total.backward()
        opt.step()
        first = first if first is not None else float(losses.rec)
    model.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        final = float(model.loss(b, beta=0.0).rec)
    assert final < first / 10, (first, final)


@pytest.mark.parametrize("layer", ["egnn", "egat"])
def test_every_parameter_trains(layer):
    cfg = ModelConfig(layer=layer, hidden=16, layers=2, latent=4, components=3, message=16)
    model = GGIK(cfg)
    names = {n for n, _ in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(names)
    pb = random_problems(4, 6, RandomRobotConfig(geometry="noncoplanar"), torch.Generator().manual_seed(3))
    b = make_batch(build_problem_graphs(pb.chain, pb.q, pb.goal), cfg)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = model.loss(b, beta=1.0)
    losses.total.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not dead, dead
    opt.step()
    assert {n for n, _ in model.named_parameters()} == names
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, unchanged


def _losses(metrics_dir) -> str:
    """The per-epoch record (DVCLive's tables) without its wall-time column (the only non-reproducible field)."""
    df = read_losses(metrics_dir)
    assert (df["minutes"] > 0).all() and df["minutes"].is_monotonic_increasing
    return df.drop(columns="minutes").to_csv(index=False)


def test_deterministic_runs_match(graphs, tmp_path):
    a = _run(TINY, graphs, tmp_path / "a")
    _run(TINY, graphs, tmp_path / "b")
    assert _losses(tmp_path / "a/metrics") == _losses(tmp_path / "b/metrics")
    sa = torch.load(tmp_path / "a/model/model.pt", weights_only=True)["model"]
    sb = torch.load(tmp_path / "b/model/model.pt", weights_only=True)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["complete"] and a["epochs_done"] == 2
    # the model file records the DOFs it was trained on (for `ggik solve`'s out-of-range note)
    assert load_model(tmp_path / "a/model/model.pt", torch.device("cpu")).trained_dofs == (5, 6)


def test_resume_continues_where_it_stopped(graphs, tmp_path):
    """Under the step schedule a finished run can be extended by more epochs."""
    two = replace(TINY, train=replace(TINY.train, lr_schedule="step"))
    three = replace(two, train=replace(two.train, epochs=3))
    _run(three, graphs, tmp_path / "straight")
    _run(two, graphs, tmp_path / "chunked")  # 2 epochs, then "interrupted"
    log = _run(three, graphs, tmp_path / "chunked")
    assert log["epochs_done"] == 3 and log["complete"]
    assert _losses(tmp_path / "straight/metrics") == _losses(tmp_path / "chunked/metrics")
    a = load_model(tmp_path / "straight/model/model.pt", torch.device("cpu")).state_dict()
    b = load_model(tmp_path / "chunked/model/model.pt", torch.device("cpu")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_cosine_run_stopped_by_its_time_limit_resumes_to_the_same_result(graphs, tmp_path):
    cosine = replace(TINY, train=replace(TINY.train, lr_schedule="cosine", epochs=3))
    _run(cosine, graphs, tmp_path / "straight")
    chunk = replace(cosine, train=replace(cosine.train, max_minutes=1e-9))  # stops after its first epoch
    assert _run(chunk, graphs, tmp_path / "chunked")["epochs_done"] == 1
    log = _run(cosine, graphs, tmp_path / "chunked")
    assert log["epochs_done"] == 3 and log["complete"]
    assert _losses(tmp_path / "straight/metrics") == _losses(tmp_path / "chunked/metrics")
    longer = replace(cosine, train=replace(cosine.train, epochs=4))  # another cosine schedule: not resumed
    assert _run(longer, graphs, tmp_path / "chunked")["epochs_done"] == 4


def test_a_run_stopped_mid_epoch_resumes_step_by_step_to_the_same_result(graphs, tmp_path):
    """``train.max_minutes`` is checked at every read of the losses: a chunk stops mid-epoch, its
    checkpoint keeps the place (steps, loss sums, the weight average), and the next chunk goes on
    from there to the same weights, losses and probes as one uninterrupted run."""
    run = replace(TINY, train=replace(TINY.train, lr_schedule="cosine", epochs=2, log_every=1, ema=0.9, probes=3, probe_goals=2))
    _run(run, graphs, tmp_path / "straight")
    chunk = replace(run, train=replace(run.train, max_minutes=1e-9))  # stops at its first read of the losses
    partial, log = [], {"complete": False}
    while not log["complete"]:
        log = _run(chunk, graphs, tmp_path / "chunked")
        partial.append(torch.load(tmp_path / "chunked/model/checkpoint.pt", weights_only=False).get("partial"))
        assert len(partial) < 40
    assert sum(p is not None for p in partial) >= 4, partial  # most chunks ended mid-epoch
    assert _losses(tmp_path / "straight/metrics") == _losses(tmp_path / "chunked/metrics")
    for name in ("model.pt", "checkpoint.pt"):
        a = torch.load(tmp_path / "straight/model" / name, weights_only=False)["model"]
        b = torch.load(tmp_path / "chunked/model" / name, weights_only=False)["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), name
    pa, pb = read_probes(tmp_path / "straight/metrics"), read_probes(tmp_path / "chunked/metrics")
    assert len(pa) == 3 and pa.drop(columns="minutes").equals(pb.drop(columns="minutes"))


def test_dvclive_record_continues_its_step_count_on_resume(graphs, tmp_path):
    """One DVCLive step per epoch: a resumed run goes on from the checkpoint's step, and a record
    lost from the metrics folder is written again from the checkpoint's history."""
    import shutil

    three = replace(TINY, train=replace(TINY.train, epochs=3))
    chunk = replace(three, train=replace(three.train, max_minutes=1e-9))  # stops after its first epoch
    first = _run(chunk, graphs, tmp_path / "r")
    assert first["step"] == 0 and first["epochs_done"] == 1 and not first["complete"]
    log = _run(three, graphs, tmp_path / "r")
    assert log["step"] == 2 and log["epochs_done"] == 3 and log["complete"]
    assert read_losses(tmp_path / "r/metrics")["epoch"].tolist() == [1, 2, 3]
    _run(chunk, graphs, tmp_path / "lost")
    shutil.rmtree(tmp_path / "lost/metrics/train")
    assert _run(three, graphs, tmp_path / "lost")["step"] == 2
    assert _losses(tmp_path / "lost/metrics") == _losses(tmp_path / "r/metrics")


def test_checkpoint_of_other_params_is_not_resumed(graphs, tmp_path):
    _run(TINY, graphs, tmp_path / "r")
    other = replace(TINY, train=replace(TINY.train, lr=1e-3))
    log = _run(other, graphs, tmp_path / "r")
    assert len(read_losses(tmp_path / "r/metrics")) == 2 and log["epochs_done"] == 2  # 2 fresh epochs, not 4
    kept = torch.load(tmp_path / "r/model/checkpoint.pt.other", weights_only=False)  # set aside, not lost
    assert kept["fingerprint"]["train"]["lr"] == TINY.train.lr


def test_a_checkpoint_finished_by_other_training_code_is_not_resumed(graphs, tmp_path):
    """After the training code changes, `dvc repro` reruns the stage: it must train again rather
    than hand back the model that the older code finished."""
    _run(TINY, graphs, tmp_path / "r")
    ckpt = tmp_path / "r/model/checkpoint.pt"
    saved = torch.load(ckpt, weights_only=False)
    saved["fingerprint"]["code"] = "0" * 64  # as written by other code
    torch.save(saved, ckpt)
    first = json.loads((tmp_path / "r/metrics/train/metrics.json").read_text())
    log = _run(TINY, graphs, tmp_path / "r")
    assert log["epochs_done"] == 2 and (tmp_path / "r/model/checkpoint.pt.other").exists()
    assert log["val"] == first["val"]  # retrained, deterministically, to the same result
    (tmp_path / "r/model/checkpoint.pt.other").unlink()
    del saved["fingerprint"]["code"]  # a checkpoint from before the code hash: resumed
    torch.save(saved, ckpt)
    _run(TINY, graphs, tmp_path / "r")
    assert not (tmp_path / "r/model/checkpoint.pt.other").exists()


def test_corrupt_checkpoint_is_set_aside_and_training_starts_afresh(graphs, tmp_path):
    _run(TINY, graphs, tmp_path / "r")
    ckpt = tmp_path / "r/model/checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])  # truncated, as by a crash mid-copy
    log = _run(TINY, graphs, tmp_path / "r")
    assert log["complete"] and log["epochs_done"] == 2
    assert (tmp_path / "r/model/checkpoint.pt.corrupt").read_bytes() == data[: len(data) // 2]
    torch.load(ckpt, weights_only=False)  # a fresh, readable checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, graphs: str, root: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    res = train(TINY, Path(graphs), Path(root) / "model", Path(root) / "metrics")
    flat = torch.cat([p.detach().reshape(-1) for p in res["model"].parameters()])
    torch.save(flat, Path(root) / f"params_rank{rank}.pt")


def test_ddp_two_gloo_processes_stay_in_sync(graphs, tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(graphs), str(tmp_path)), nprocs=2, join=True)
    p0 = torch.load(tmp_path / "params_rank0.pt")
    p1 = torch.load(tmp_path / "params_rank1.pt")
    assert torch.equal(p0, p1)
    init = torch.cat([p.detach().reshape(-1) for p in GGIK(ModelConfig(**{**load_model(tmp_path / "model/model.pt", torch.device("cpu")).cfg.to_dict()})).parameters()])
    assert not torch.equal(p0, init)  # it trained
    log = json.loads((tmp_path / "metrics/train/metrics.json").read_text())
    assert log["processes"] == 2 and log["epochs_done"] == 2


def test_the_fused_optimizer_makes_the_unfused_update_and_is_one_kernel_on_the_cpu():
    """make_optimizer's AdamW (fused, also on the CPU) moves the model as the per-tensor AdamW
    does, to float rounding, and its step is one kernel rather than ~10 operations per tensor."""
    from torch.profiler import ProfilerActivity, profile

    from pipeline.stages.train.schedules import make_optimizer

    torch.manual_seed(0)
    model = GGIK(TINY.model)
    twin = GGIK(TINY.model)
    twin.load_state_dict(model.state_dict())
    fused = make_optimizer(model, 1e-2, 0.01)
    plain = torch.optim.AdamW(twin.parameters(), lr=1e-2, weight_decay=0.01)
    for step in range(20):
        for p, q in zip(model.parameters(), twin.parameters()):
            p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(step))
            q.grad = p.grad.clone()
        fused.step()
        plain.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fused.step()
    names = [e.key for e in prof.key_averages()]
    assert any("_fused_adamw" in n for n in names), names
    assert not any(n in ("aten::lerp_", "aten::addcdiv_") for n in names), names


def test_cosine_schedule_warms_up_then_decays_to_zero():
    from pipeline.stages.train.schedules import make_scheduler

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    tp = replace(TINY.train, lr_schedule="cosine", epochs=4, warmup_fraction=0.1)
    sched = make_scheduler(opt, tp, steps_per_epoch=25)  # 100 steps, 10 of warm-up
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2) and lrs[9] == pytest.approx(2.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))  # rising during warm-up
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then never rising
    assert lrs[55] == pytest.approx(1.0, abs=0.05) and lrs[-1] < 0.002


def test_cosine_training_runs_and_resumes(graphs, tmp_path):
    cos = replace(TINY, train=replace(TINY.train, lr_schedule="cosine"))
    log = _run(cos, graphs, tmp_path / "c")
    assert log["complete"]
    again = _run(cos, graphs, tmp_path / "c")  # complete checkpoint: nothing more to train
    assert again["epochs_done"] == 2


def test_beta_rises_linearly_from_zero_or_geometrically_from_beta_start():
    from pipeline.stages.train.schedules import beta_at

    lin = TrainParams(beta=1.0, beta_warmup_epochs=4, beta_start=0.0)
    assert [beta_at(lin, e) for e in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    geo = TrainParams(beta=1.0, beta_warmup_epochs=2, beta_start=0.01)
    assert [round(beta_at(geo, e), 12) for e in range(4)] == [0.01, 0.1, 1.0, 1.0]


def test_accuracy_probes_record_raw_error_in_mm_and_do_not_change_training(graphs, tmp_path):
    """Probing samples the model on the catalog arms of the trained DOFs (UR10 and LWA4P for 5/6
    DOF) without moving training's random stream; a run stopped after its first epoch and resumed
    probes the same steps with the same errors."""
    import pandas as pd

    probed = replace(TINY, train=replace(TINY.train, epochs=3, probes=3, probe_goals=4))
    _run(probed, graphs, tmp_path / "straight")
    _run(replace(TINY, train=replace(probed.train, probes=0)), graphs, tmp_path / "plain")
    assert _losses(tmp_path / "straight/metrics") == _losses(tmp_path / "plain/metrics")
    rows = read_probes(tmp_path / "straight/metrics")
    steps_per_epoch = 4  # 92 training graphs, 46 per DOF bucket, in batches of 32
    assert rows["step"].tolist() == sorted(probe_steps(3 * steps_per_epoch, 3))
    assert rows["graphs"].tolist() == [s * 32 for s in rows["step"]]
    assert {"ur10_raw_mm", "lwa4p_raw_mm", "ur10_best_mm"} <= set(rows.columns) and "kuka_raw_mm" not in rows.columns
    # an untrained tiny model: raw samples are centimetres to metres off, never below the best of 32
    assert ((rows["raw_median_mm"] > 5) & (rows["raw_median_mm"] < 5000)).all()
    assert (rows["best_of_k_mm"] <= rows["raw_median_mm"]).all()
    assert rows["minutes"].is_monotonic_increasing and (rows["minutes"] > 0).all()
    assert read_probes(tmp_path / "plain/metrics") is None  # no probe, no table
    chunk = replace(probed, train=replace(probed.train, max_minutes=1e-9))
    _run(chunk, graphs, tmp_path / "chunked")
    _run(probed, graphs, tmp_path / "chunked")
    resumed = read_probes(tmp_path / "chunked/metrics")
    cols = [c for c in rows.columns if c != "minutes"]
    pd.testing.assert_frame_equal(rows[cols], resumed[cols])


def test_a_setting_added_after_the_checkpoint_counts_as_its_default():
    """Checkpoints written before a model or train setting existed stay resumable by runs that
    leave it at its default, and only by those."""
    from pipeline.stages.train.checkpoint import same_run

    fp = {"model": asdict(ModelConfig()), "train": fingerprint_train(TrainParams()), "data": "abc"}
    old = {"model": {k: v for k, v in fp["model"].items() if k != "prior_mixture"},
           "train": {k: v for k, v in fp["train"].items() if k != "free_bits"}, "data": "abc"}
    assert same_run(old, fp) and same_run(fp, fp)
    assert not same_run(old, {**fp, "model": {**fp["model"], "prior_mixture": "graph"}})
    assert not same_run({**old, "data": "other"}, fp)
    assert not same_run(None, fp)
    coded = {**fp, "code": "abc"}
    assert same_run(old, coded) and same_run(coded, coded)  # no code hash saved: taken as this code's
    assert not same_run({**old, "code": "def"}, coded)


def test_the_training_code_hash_covers_the_model_the_batches_and_the_loop(monkeypatch, tmp_path):
    import ggik_core.model
    from pipeline.stages.train import checkpoint as train_mod

    h = train_mod.training_code_hash()
    assert len(h) == 64 and h == train_mod.training_code_hash()
    fake = tmp_path / "model"
    shutil.copytree(Path(ggik_core.model.__file__).parent, fake, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(ggik_core.model, "__file__", str(fake / "__init__.py"))
    assert train_mod.training_code_hash() == h  # the same files elsewhere
    for edited in ("layers/egnn.py", "fused/edge_kernels.py", "cvae.py"):  # sub-packages count too
        (fake / edited).write_bytes((fake / edited).read_bytes() + b"\n# edited\n")
        assert train_mod.training_code_hash() != h, edited
        h = train_mod.training_code_hash()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_training_steps_make_no_host_sync_on_cuda():
    """Under torch's sync debug mode the host syncs of an epoch do not grow with its steps: the
    batch indices go to the device once per epoch and the losses are read once (log_every)."""
    import warnings

    from pipeline.stages.train.batching import to_device

    from pipeline.stages.train.distributed import Dist

    from pipeline.stages.train.loop import run_epoch

    dev = torch.device("cuda")
    pb = random_problems(512, 6, RandomRobotConfig(), torch.Generator().manual_seed(0))
    g = {6: to_device(build_problem_graphs(pb.chain, pb.q, pb.goal), dev)}
    model = GGIK(TINY.model).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    tp = replace(TINY.train, log_every=10_000)

    def syncs(steps: int) -> int:
        plan = [(6, torch.arange(i * 32, (i + 1) * 32)) for i in range(steps)]
        run_epoch(model, g, plan, tp, 1.0, Dist(), opt)  # warm-up
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                run_epoch(model, g, plan, tp, 1.0, Dist(), opt)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        return sum("synchroniz" in str(w.message).lower() for w in caught)

    assert syncs(16) == syncs(4) <= 3
