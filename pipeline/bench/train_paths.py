"""The training-step variants that ``ggik bench train`` times (``--path``): their parsing, the
model and step of each, timing rounds and the operator-family profile. ``bench train``,
``bench learn`` and the multi-process runner (:mod:`pipeline.bench.procs`) share them."""

from __future__ import annotations

import time
from typing import NamedTuple

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


#: the training-step variants `ggik bench train` can time side by side
TRAIN_PATHS = ("pyg", "dense", "dense-bf16", "dense-tf32", "dense-compile", "dense-bf16-compile", "dense-cudagraphs",
               "dense-fused", "dense-bf16-fused")


#: the suffixes of the compiled paths (cudagraphs: compiled, then replayed as CUDA graphs, no launch overhead)
COMPILED = ("compile", "cudagraphs")


def variant(spec: str, option: str = "--path") -> tuple[str, dict]:
    """``"dense-bf16 phi_x=linear full_layers=1"`` -> (path, ModelConfig overrides); ``option``
    names the command-line option in errors."""
    import dataclasses

    from ggik_core.errors import GGIKError
    from ggik_core.model.config import ModelConfig

    path, *sets = spec.split()
    if path not in TRAIN_PATHS:
        raise GGIKError(f"unknown path {path!r} in --path {spec!r} (one of {', '.join(TRAIN_PATHS)})")
    fields = {f.name: f for f in dataclasses.fields(ModelConfig)}
    overrides = {}
    for s in sets:
        key, _, value = s.partition("=")
        if key not in fields or not value:
            where = f"--path {spec!r}: {s!r}" if option == "--path" else f"{option} {s!r}"
            raise GGIKError(f"{where} is not a model.KEY=VALUE setting")
        default = getattr(ModelConfig(), key)
        overrides[key] = (value.lower() == "true") if isinstance(default, bool) else type(default)(value)
    return path, overrides


#: ``malloc=`` values of a ``--path``: the allocator policy of the training entry points
#: (:func:`ggik_core.runtime.keep_freed_memory`), or glibc's own, as every path ran before it
MALLOC_POLICIES = ("kept", "default")


class Placement(NamedTuple):
    """Where a ``--path`` runs: its spec without the placement words, the number of data-parallel
    processes, and the allocator policy (:data:`MALLOC_POLICIES`)."""

    spec: str
    procs: int = 1
    malloc: str = "kept"

    @property
    def own_processes(self) -> bool:
        """Timed in fresh processes of its own (:class:`~pipeline.bench.procs.ProcsPath`), round by round
        between the in-process paths' rounds."""
        return self.procs > 1 or self.malloc != "kept"


def placement(spec: str) -> Placement:
    """``"dense-bf16 phi_x=linear procs=2"`` -> ``Placement("dense-bf16 phi_x=linear", 2, "kept")``:
    ``procs=N`` data-parallel processes that share the cores (1 when absent;
    :mod:`pipeline.bench.procs`) and ``malloc=default`` for glibc's own allocator policy."""
    from ggik_core.errors import GGIKError

    words, procs, malloc = [], 1, "kept"
    for w in spec.split():
        key, _, value = w.partition("=")
        if key == "procs":
            if not value.isdigit() or int(value) < 1:
                raise GGIKError(f"--path {spec!r}: procs must be a positive integer (got {value!r})")
            procs = int(value)
        elif key == "malloc":
            if value not in MALLOC_POLICIES:
                raise GGIKError(f"--path {spec!r}: malloc must be one of {', '.join(MALLOC_POLICIES)} (got {value!r})")
            malloc = value
        else:
            words.append(w)
    return Placement(" ".join(words), procs, malloc)


def bench_model(cfg, path: str, device: torch.device = torch.device("cpu")):
    """The seeded model of ``cfg`` on ``device`` for ``path`` (dense layers unless ``pyg``) and its
    AdamW (the training stage's, :func:`pipeline.stages.train.schedules.make_optimizer`), as every timed variant
    starts; raises ``ValueError`` where ``cfg`` does not apply."""
    from ggik_core.model.cvae import GGIK
    from pipeline.stages.train.schedules import make_optimizer

    torch.manual_seed(0)
    model = GGIK(cfg).to(device)
    model.dense = path != "pyg"
    model.use_kernels("fused" if path.endswith("fused") else "eager")
    return model, make_optimizer(model, 3e-4, 0.01)


def timed(step, steps: int, device: torch.device):
    """A round of ``steps`` calls of ``step``: returns seconds per step (synchronised on CUDA)."""

    def round_() -> float:
        sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            step()
        sync(device)
        return (time.perf_counter() - t) / steps

    return round_


def train_step(model, opt, b, path: str):
    """One forward + backward + AdamW step on ``b`` along ``path`` (see :data:`TRAIN_PATHS`)."""

    from pipeline.stages.train.precision import precision_context

    parts = path.split("-")
    ctx = precision_context(next((p for p in ("bf16", "tf32") if p in parts), "fp32"), b.h.device)
    fn = model
    if path.endswith(COMPILED):
        fn = getattr(model, "_compiled", None)
        if fn is None:
            fn = model._compiled = torch.compile(model, mode="reduce-overhead" if path.endswith("cudagraphs") else "default")

    def step() -> None:
        with ctx:
            out = fn(b, 1.0)
        opt.zero_grad(set_to_none=True)
        out["total"].backward()
        opt.step()

    return step


#: operator families of a training step's profile (``ggik bench train --profile``), matched on the
#: aten operator's name; the first family that matches wins, the rest is "other"
OP_FAMILIES = (
    ("optimizer", ("_foreach_", "_fused_")),
    ("matmul", ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "mkldnn_")),
    ("elementwise", ("silu", "sigmoid", "mul", "add", "sub", "div", "pow", "sqrt", "exp", "log", "clamp", "where",
                     "neg", "rsub", "fill", "threshold", "native_layer_norm", "layer_norm", "softmax",
                     "lerp", "addcmul", "addcdiv", "maximum", "minimum", "abs", "sign", "zero_")),
    ("reduction", ("sum", "mean", "norm", "logsumexp", "amax", "max", "min")),
    ("copy / cast / layout", ("copy_", "to", "_to_copy", "cat", "stack", "clone", "contiguous", "expand", "index",
                              "gather", "scatter", "empty", "view", "reshape", "permute", "transpose", "t", "select",
                              "slice", "split", "diagonal", "unsqueeze", "squeeze", "narrow", "as_strided")),
)


#: the profiler's names of the fused blocks' autograd functions (forward and backward: the layers' per-edge
#: blocks and their feature update); their self time is the numba kernels' (the matrix products inside
#: them count as "matmul")
FUSED_BLOCKS = ("FusedEGNNEdges", "FusedEGATEdges", "FusedNodeUpdate")


def op_family(name: str) -> str:
    if name.startswith(FUSED_BLOCKS):  # the layers' fused per-edge blocks: numba kernels and their products
        return "fused blocks"
    base = name.removeprefix("aten::").removesuffix("_backward").rstrip("_") if name.startswith("aten::") else ""
    if not base:
        return "other"
    for fam, keys in OP_FAMILIES:
        if any(base == k.rstrip("_") or (k.endswith("_") and base.startswith(k)) for k in keys):
            return fam
    return "other"


def profile_step(step, steps: int) -> dict[str, tuple[float, float]]:
    """Self CPU time (ms per step) and GFLOP/s of each operator family (:data:`OP_FAMILIES`) over
    ``steps`` calls of ``step``; GFLOP/s only where the profiler counts FLOPs (matrix products)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], with_flops=True):  # the profiler's own start-up, discarded
        step()
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for _ in range(steps):
            step()
    fams: dict[str, list[float]] = {}
    for ev in prof.key_averages():
        t, f = fams.setdefault(op_family(ev.key), [0.0, 0.0]), ev.flops or 0
        t[0] += ev.self_cpu_time_total / 1000 / steps  # ms per step
        t[1] += f / steps
    return {k: (ms, flops / (ms * 1e6) if ms > 0 and flops else 0.0) for k, (ms, flops) in fams.items()}
