"""An exponential moving average of the weights (``train.ema``): a second copy of the model whose
parameters trail the trained ones, the weights that are probed, saved as ``model.pt`` and
evaluated when it is on (the trained weights stay in ``checkpoint.pt``)."""

from __future__ import annotations

import torch

from ggik_core.model.cvae import GGIK


class WeightAverage:
    r"""The averaged model :math:`\bar\theta`, updated after every optimiser step :math:`t`:

    .. math::
        \bar\theta \leftarrow \bar\theta + (1 - d_t)(\theta - \bar\theta), \qquad
        d_t = \min\!\left(d, \frac{1 + t}{10 + t}\right)

    with :math:`d` = ``decay``; the warm-up :math:`d_t` keeps the first steps' random weights from
    dominating the average of a short run. One fused ``lerp`` over every floating-point tensor per
    step, on the device, with no host sync; buffers are copied as they are.

    Args:
        model: the trained model (its config builds the copy).
        decay: :math:`d`, in (0, 1).
        kernels: the copy's layer implementation (:meth:`GGIK.use_kernels`).
    """

    def __init__(self, model: GGIK, decay: float, kernels: str) -> None:
        self.decay = decay
        self.steps = 0
        with torch.random.fork_rng(devices=[]):  # building the copy must not move training's random stream
            self.module = GGIK(model.cfg).to(next(model.parameters()).device)
        self.module.load_state_dict(model.state_dict())
        self.module.use_kernels(kernels)
        self.module.eval()
        self._pairs = self._tensors(model)

    def _tensors(self, model: GGIK) -> tuple[list[torch.Tensor], ...]:
        """(averaged, trained) floating-point tensors, then (copied, trained) other buffers;
        state_dict entries share storage with the modules' tensors, so updating them updates the copy."""
        avg, cur = self.module.state_dict(), model.state_dict()
        floats = [n for n in avg if avg[n].is_floating_point()]
        others = [n for n in avg if not avg[n].is_floating_point()]
        return [avg[n] for n in floats], [cur[n] for n in floats], [avg[n] for n in others], [cur[n] for n in others]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average towards the trained model's current weights."""
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        avg, cur, avg_other, cur_other = self._pairs
        torch._foreach_lerp_(avg, cur, 1.0 - d)
        for a, b in zip(avg_other, cur_other):
            a.copy_(b)

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.steps = int(state["steps"])
