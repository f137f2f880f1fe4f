r"""The GGIK conditional VAE over distance graphs (spec §5).

* partial-graph encoder on :math:`\tilde G` -> per-node features :math:`\tilde h` and coordinates
  :math:`\tilde x`; the conditional prior :math:`p(Z \mid \tilde G)` is, per node, a mixture of
  ``K`` diagonal Gaussians;
* full-graph encoder on :math:`G`, combined with :math:`\tilde h` -> the posterior
  :math:`q(Z \mid G, \tilde G) = \mathcal N(\mu, \sigma^2)` per node;
* decoder :math:`p(G \mid Z, \tilde G)`: message passing on :math:`\tilde G` from
  :math:`\tilde x`, node features from :math:`(z, \tilde h)` -> positions of all nodes.

``latent_scope="graph"`` replaces the per-node latents by one latent :math:`z \in \mathbb R^D` per
graph: the prior and the posterior read the node features averaged over the graph
(:math:`\bar h = \frac1N \sum_i h_i`), and every node of the decoder gets the same :math:`z`. The
per-node prior is a product of independent per-node mixtures, so its samples cannot carry the
correlation between the nodes of one solution (all of them move with the arm's self-motion); one
latent per graph can.

``prior_mixture="graph"`` keeps a latent per node but makes the mixture's component a property of
the graph: with node logits :math:`\ell_{ik}` and :math:`\pi_k = \mathrm{softmax}_k(\frac1N
\sum_i \ell_{ik})`,

.. math::
    p(Z \mid \tilde G) = \sum_k \pi_k \prod_i \mathcal N(z_i; \mu_{ik}, \sigma_{ik}^2),

so a prior sample draws one component for the whole graph and every node's latent from that
component: the nodes of one sample come from one mode (one solution branch) instead of each node
picking its own, which mixes latents of different solutions.

Loss (negative ELBO): :math:`\sum_i w_i \lVert \hat x_i - x_i \rVert^2 / N +
\beta \cdot \mathrm{KL}(q \Vert p) / N` per graph, the KL of the mixture prior estimated by
Monte Carlo with the reparameterised posterior sample; ``w = anchor_weight`` on anchors and
``node_weight`` on the other nodes. The KL is reported in nats per node in both latent scopes.

Re-encoding (``passes`` of :meth:`GGIK.sample`): a prior sample draws each node's latent
independently, so it may mix latents of different solutions, and the decoder, trained on
posterior latents, places such a mix only roughly (on the KUKA iiwa about four times farther from
the goal than when it decodes the posterior mean of a true solution). The full-graph encoder, kept
from training, maps a configuration to the latent of that configuration; re-encoding the decoded
sample and decoding the posterior mean,

.. math::
    \hat x \leftarrow \mathrm{dec}\big(\mu_q(G(\hat x), \tilde G), \tilde G\big),

moves it to the nearby configuration that the decoder can place precisely and that reaches the
goal: the prior chooses the solution, the posterior path places it (the encode-decode chain of
Rezende et al. 2014 for missing data, with the mean instead of a sample). No extra training.

Prior consistency (``consistency`` :math:`\lambda > 0`, off by default): raw samples come from the
prior, not the posterior, and a decoder trained only on posterior latents need not place the nodes
of a prior latent consistently. The extra term decodes one prior sample per graph,
:math:`\hat x = \mathrm{dec}(z, \tilde G)` with :math:`z \sim p(Z \mid \tilde G)` (no gradient
to the prior), and penalises what needs no answer: the known distances of :math:`\tilde G` and the
anchors,

.. math::
    \mathcal L_c = \frac1N \Big( w_n \sum_{i<j,\ (i,j)\ \mathrm{known}}
    \big(\lVert \bar x_i - \bar x_j \rVert - d_{ij}\big)^2
    + w_a \sum_{i\ \mathrm{anchor}} \lVert \hat x_i - x_i \rVert^2 \Big),

where :math:`\bar x` is :math:`\hat x` with the anchors put back at their known positions (so
that keeping the distances means reaching the goal), added as :math:`\lambda \mathcal L_c`. Node
positions that keep every known distance and the anchors are an exact IK solution (spec §4), so
the term trains the decoder to map any prior latent to a valid configuration.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from ggik_core.data.batch import GraphBatch, repeat_batch_partial, with_answer_positions
from ggik_core.model.config import KERNELS, ModelConfig
from ggik_core.model.layers.registry import layer_entry

LOG_2PI = math.log(2 * math.pi)


def mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.LayerNorm(h), nn.SiLU(), nn.Linear(h, o))


class GraphStack(nn.Module):
    """``L`` message-passing layers of the registered type ``cfg.layer``
    (:mod:`~ggik_core.model.layers.registry`) over a fixed graph, updating ``h`` and ``x``.

    ``coords_out`` / ``features_out``: whether the caller reads the last layer's coordinates /
    features; the last layer does not build the update nobody reads (so every parameter trains).
    """

    def __init__(self, cfg: ModelConfig, coords_out: bool = True, features_out: bool = True, depth: int = 0) -> None:
        super().__init__()
        cls = layer_entry(cfg.layer).cls
        depth = depth or cfg.layers
        self.layers = nn.ModuleList(
            cls.from_config(cfg, update_coords=coords_out or i < depth - 1, update_features=features_out or i < depth - 1)
            for i in range(depth))

    def forward(self, h: Tensor, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> tuple[Tensor, Tensor]:
        for layer in self.layers:
            h, x = layer(h, x, edge_index, edge_attr)
        return h, x

    def forward_dense(self, h: Tensor, x: Tensor, e: Tensor, pin: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The same stack on complete graphs of equal size: ``h (B, N, C)``, ``x (B, N, 3)``,
        ``e (B, N, N, F)`` indexed ``[b, j, i]``. ``pin (N,)`` bool: nodes whose positions are
        known; they are put back at their input positions after every layer."""
        x0 = x
        for layer in self.layers:
            h, x = layer.forward_dense(h, x, e)
            if pin is not None:
                x = torch.where(pin[None, :, None], x0, x)
        return h, x


@dataclass
class Losses:
    total: Tensor  # rec + beta * kl, the optimised objective
    rec: Tensor
    kl: Tensor


class GGIK(nn.Module):
    """Conditional VAE over IK distance graphs; one model for every robot and DOF."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        cfg.check()
        H, D, K = cfg.hidden, cfg.latent, cfg.components
        self.embed_partial = nn.Linear(cfg.node_features, H)
        self.enc_partial = GraphStack(cfg, depth=cfg.partial_layers)
        self.prior_head = mlp(H, H, K * (1 + 2 * D))
        self.embed_full = nn.Linear(cfg.node_features, H)
        self.enc_full = GraphStack(cfg, coords_out=False, depth=cfg.full_layers)
        self.posterior_head = mlp(2 * H, H, 2 * D)
        self.embed_dec = nn.Linear(D + H, H)
        self.decoder = GraphStack(cfg, features_out=False, depth=cfg.decoder_layers)

    @property
    def per_graph(self) -> bool:
        return self.cfg.latent_scope == "graph"

    def pool(self, h: Tensor, b: GraphBatch) -> Tensor:
        """``(B*N, C)`` node rows -> ``(B, C)`` graph means for a per-graph latent; unchanged otherwise."""
        return h.reshape(b.num_graphs, b.nodes_per_graph, -1).mean(1) if self.per_graph else h

    def spread(self, z: Tensor, b: GraphBatch) -> Tensor:
        """Latents per latent unit -> per node ``(B*N, D)`` (a per-graph ``z`` is given to each node)."""
        if not self.per_graph:
            return z
        N = b.nodes_per_graph
        return z[:, None, :].expand(z.shape[0], N, z.shape[-1]).reshape(-1, z.shape[-1])

    def use_kernels(self, kernels: str) -> str | None:
        """``"fused"``: run the layers' dense path on CPU through their registered fused
        implementation where it matches the layers' structure
        (:meth:`~ggik_core.model.fused.edges.AlphaWeightedEdges.mismatch`), ``"eager"``: through torch
        operations. Where fused kernels are asked for and do not apply, one warning says why and
        those layers run eagerly; returns that reason (``None`` when every layer runs fused)."""
        if kernels not in KERNELS:
            raise ValueError(f"kernels must be {' or '.join(KERNELS)}, got {kernels!r}")
        fused = layer_entry(self.cfg.layer).fused
        reasons = []
        for stack in (self.enc_partial, self.enc_full, self.decoder):
            for layer in stack.layers:
                why = None
                if kernels == "fused":
                    why = "it has no fused implementation" if fused is None else fused.mismatch(layer)
                layer.use_kernels(fused.bind(layer) if kernels == "fused" and why is None else None)
                if why is not None and why not in reasons:
                    reasons.append(why)
        if not reasons:
            return None
        why = "; ".join(reasons)
        warnings.warn(f"fused kernels do not apply to layer {self.cfg.layer!r} ({why}): it runs the eager path",
                      RuntimeWarning, stacklevel=2)
        return why

    #: run the layers on dense ``(B, N, N, F)`` edge tensors (same function as the PyG path,
    #: which stays as the reference; tests check that both agree)
    dense: bool = True

    def run_stack(self, stack: GraphStack, h: Tensor, x: Tensor, b: GraphBatch, full: bool) -> tuple[Tensor, Tensor]:
        """``stack`` on the partial (``full=False``) or full graph of ``b``; flat ``(B*N, ...)`` in and out."""
        if self.dense:
            B, N = b.num_graphs, b.nodes_per_graph
            e = b.e_full if full else b.e_partial
            pin = b.anchor[:N] if self.cfg.pin_anchors and not full else None
            h, x = stack.forward_dense(h.reshape(B, N, -1), x.reshape(B, N, -1), e, pin)
            return h.reshape(B * N, -1), x.reshape(B * N, -1)
        if self.cfg.pin_anchors:
            raise ValueError("model.pin_anchors needs the dense layer path")
        return stack(h, x, b.edge_index, b.edge_full if full else b.edge_partial)

    # --- the conditional path: depends on the partial graph only ---------------------------
    def encode_partial(self, b: GraphBatch) -> tuple[Tensor, Tensor]:
        return self.run_stack(self.enc_partial, self.embed_partial(b.h), b.x_partial, b, full=False)

    def prior(self, h_partial: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mixture logits ``(M, K)``, means and log-stds ``(M, K, D)`` per latent unit (``M`` rows of
        ``h_partial``: nodes, or graphs after :meth:`pool`)."""
        K, D = self.cfg.components, self.cfg.latent
        out = self.prior_head(h_partial)
        logits = out[:, :K]
        mu, log_sigma = out[:, K:].reshape(-1, K, 2 * D).split(D, dim=-1)
        return logits, mu, log_sigma.clamp(-7.0, 3.0)

    @property
    def shared_component(self) -> bool:
        return self.cfg.prior_mixture == "graph"

    def prior_draws(self, h_partial: Tensor, b: GraphBatch, k: int, generator: torch.Generator | None = None) -> Tensor:
        """``k`` prior draws per latent unit ``(M, k, D)``: each unit's own component, or one
        component per graph and copy with ``prior_mixture="graph"``."""
        prior = self.prior(self.pool(h_partial, b))
        if self.shared_component:
            return shared_prior_sample(*prior, b.num_graphs, k, generator)
        return prior_sample(*prior, k, generator)

    def decode(self, z: Tensor, h_partial: Tensor, x_partial: Tensor, b: GraphBatch) -> Tensor:
        """Positions ``(B*N, 3)`` from latents per node ``(B*N, D)`` or per graph ``(B, D)``."""
        h = self.embed_dec(torch.cat([self.spread(z, b), h_partial], -1))
        _, x = self.run_stack(self.decoder, h, x_partial, b, full=False)
        return x

    # --- training ----------------------------------------------------------------------------
    def posterior(self, b: GraphBatch, h_partial: Tensor) -> tuple[Tensor, Tensor]:
        assert b.x is not None and b.e_full is not None, "the full graph is needed for the posterior"
        h_full, _ = self.run_stack(self.enc_full, self.embed_full(b.h), b.x, b, full=True)
        mu, log_sigma = self.posterior_head(self.pool(torch.cat([h_full, h_partial], -1), b)).chunk(2, dim=-1)
        return mu, log_sigma.clamp(-7.0, 3.0)

    def loss(self, b: GraphBatch, beta: float, anchor_weight: float = 1.0, node_weight: float = 10.0,
             free_bits: float = 0.0) -> Losses:
        out = self(b, beta, anchor_weight, node_weight, free_bits)
        return Losses(total=out["total"], rec=out["rec"], kl=out["kl"])

    def forward(self, b: GraphBatch, beta: float, anchor_weight: float = 1.0, node_weight: float = 10.0,
                free_bits: float = 0.0, sample: bool = True, consistency: float = 0.0) -> dict[str, Tensor]:
        r"""The negative ELBO of a batch: ``{"total", "rec", "kl"}`` (a dict, so that
        DistributedDataParallel finds the tensors).

        ``free_bits`` :math:`\lambda` (nats per node): the optimised objective is
        :math:`\mathrm{rec} + \beta \max(\mathrm{KL}, \lambda)` on the batch-mean KL per node, so
        the posterior is not pushed onto the prior below :math:`\lambda` (against posterior
        collapse); ``kl`` reports the unclamped value. ``sample=False`` decodes the posterior mean
        :math:`z = \mu` instead of a reparameterised sample (memorisation with :math:`\beta = 0`,
        where the noise only slows the fit). ``consistency`` > 0 adds the prior-consistency term
        (module docstring), reported as ``cons``."""
        h_p, x_p = self.encode_partial(b)
        mu_q, ls_q = self.posterior(b, h_p)
        z = mu_q + ls_q.exp() * torch.randn_like(mu_q) if sample else mu_q
        x_hat = self.decode(z, h_p, x_p, b)
        N = b.nodes_per_graph
        w = torch.where(b.anchor, anchor_weight, node_weight).to(x_hat.dtype)
        rec = (w * (x_hat - b.x).pow(2).sum(-1)).reshape(b.num_graphs, N).sum(-1) / N
        log_q = _diag_normal_logpdf(z, mu_q, ls_q)
        prior = self.prior(self.pool(h_p, b))
        if self.shared_component:
            kl = (log_q.reshape(b.num_graphs, N).sum(-1) - shared_mixture_logpdf(z, *prior, b.num_graphs)) / N
        else:
            kl = (log_q - _mixture_logpdf(z, *prior)).reshape(b.num_graphs, -1).sum(-1) / N
        rec, kl = rec.mean(), kl.mean()
        kl_term = kl.clamp_min(free_bits) if free_bits > 0 else kl
        out = {"total": rec + beta * kl_term, "rec": rec, "kl": kl}
        if consistency > 0:
            out["cons"] = self.prior_consistency(b, h_p, x_p, anchor_weight, node_weight)
            out["total"] = out["total"] + consistency * out["cons"]
        return out

    def prior_consistency(self, b: GraphBatch, h_p: Tensor, x_p: Tensor, anchor_weight: float, node_weight: float) -> Tensor:
        r"""The batch mean of :math:`\mathcal L_c` (module docstring) for one prior sample per graph."""
        with torch.no_grad():
            z = self.prior_draws(h_p, b, 1)[:, 0]
        return consistency_residual(self.decode(z, h_p, x_p, b), b, anchor_weight, node_weight).mean()

    # --- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, b: GraphBatch, k: int, generator: torch.Generator | None = None, passes: int = 0,
               full: Callable[[GraphBatch, Tensor], GraphBatch] | None = None, relax: float = 1.0) -> Tensor:
        r"""``k`` candidate point sets per problem: ``(B, k, N, 3)``, decoded in one batched pass from
        the prior, then re-encoded ``passes`` times (module docstring, "Re-encoding"):

        .. math::
            \hat x^{(0)} = \mathrm{dec}(z, \tilde G),\ z \sim p(Z \mid \tilde G); \qquad
            \hat x^{(t+1)} = \mathrm{dec}\big(\mu_q(G(\hat x^{(t)}), \tilde G), \tilde G\big).

        ``relax`` :math:`\omega` over-relaxes the passes after the first in latent space,
        :math:`z^{(t+1)} = z^{(t)} + \omega\,(\mu_q(G(\hat x^{(t)}), \tilde G) - z^{(t)})` with
        :math:`z^{(1)} = \mu_q(G(\hat x^{(0)}), \tilde G)` (the prior draw is not a posterior latent,
        so the first pass replaces it): :math:`\omega = 1` is the plain chain above, :math:`\omega > 1`
        extrapolates along the direction the chain moves (module docstring, "Re-encoding").

        ``full(rb, x)`` builds the full graph :math:`G(\hat x)` of the repeated batch ``rb`` from
        decoded positions ``x (B*k, N, 3)``; by default its distances are those of ``x`` itself
        (:func:`~ggik_core.data.batch.with_answer_positions`). The solver passes one that first
        recovers the joint angles and takes the positions of that configuration, an exact arm pose.
        """
        h_p, x_p = self.encode_partial(b)
        z = self.prior_draws(h_p, b, k, generator)  # (M, k, D); M nodes or graphs
        D = z.shape[-1]
        N, B = b.nodes_per_graph, b.num_graphs
        # graph-major layout (graph g, copy c) -> g * k + c, matching repeat_batch_partial; a
        # per-graph z stays one row per copy and decode() gives it to the copy's nodes
        if self.per_graph:
            z = z.reshape(B * k, D)
        else:
            z = z.reshape(B, N, k, D).permute(0, 2, 1, 3).reshape(B * k * N, D)
        rb = repeat_batch_partial(b, k)

        def rep(t: Tensor) -> Tensor:
            return t.reshape(B, 1, N, -1).expand(B, k, N, t.shape[-1]).reshape(B * k * N, -1)

        h_p, x_p = rep(h_p), rep(x_p)
        x = self.decode(z, h_p, x_p, rb)
        for t in range(passes):
            rf = (full or with_answer_positions)(rb, x.reshape(B * k, N, 3))
            mu, _ = self.posterior(rf, h_p)
            z = mu if t == 0 else z + relax * (mu - z)
            x = self.decode(z, h_p, x_p, rb)
        return x.reshape(B, k, N, 3)


def consistency_residual(x: Tensor, b: GraphBatch, anchor_weight: float, node_weight: float) -> Tensor:
    r""":math:`\mathcal L_c` per graph ``(B,)`` for node positions ``x (B*N, 3)``: squared errors of
    the known distances of the partial graph (each pair once) and of the anchor positions."""
    B, N = b.num_graphs, b.nodes_per_graph
    x = x.float().reshape(B, N, 3)
    x_a = b.x_partial.float().reshape(B, N, 3)
    anchor = b.anchor.reshape(B, N, 1)
    # distances are measured with the anchors where they belong, so that keeping them means reaching
    # the goal (a decoder that moved the end-effector anchors would otherwise satisfy them elsewhere)
    pinned = torch.where(anchor, x_a, x)
    sq = (pinned[:, :, None, :] - pinned[:, None, :, :]).pow(2).sum(-1)  # [b, j, i]
    dist = sq.clamp_min(1e-12).sqrt()  # no NaN gradient on the (masked) diagonal
    known, d = b.known.float(), b.d_known.float()
    dist_term = (known * (dist - d).pow(2)).sum((1, 2)) / 2
    anchor_term = (anchor[..., 0].float() * (x - x_a).pow(2).sum(-1)).sum(-1)
    return (node_weight * dist_term + anchor_weight * anchor_term) / N


def prior_sample(logits: Tensor, mu: Tensor, log_sigma: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """``k`` draws ``(M, k, D)`` from each row's mixture (logits ``(M, K)``, ``mu``, ``log_sigma`` ``(M, K, D)``)."""
    M, K, D = mu.shape
    comp = torch.multinomial(torch.softmax(logits, -1), k, replacement=True, generator=generator)  # (M, k)
    idx = comp[..., None].expand(M, k, D)
    eps = torch.randn(M, k, D, dtype=mu.dtype, device=mu.device, generator=generator)
    return torch.gather(mu, 1, idx) + torch.gather(log_sigma, 1, idx).exp() * eps


def shared_prior_sample(logits: Tensor, mu: Tensor, log_sigma: Tensor, graphs: int, k: int,
                        generator: torch.Generator | None = None) -> Tensor:
    """``k`` draws ``(B*N, k, D)`` with one component per graph and draw: the component from the
    graph's mean logits, then each node's latent from that component of its own mixture (node rows
    graph-major: logits ``(B*N, K)``, ``mu``, ``log_sigma`` ``(B*N, K, D)``)."""
    M, K, D = mu.shape
    N = M // graphs
    pi = torch.softmax(logits.reshape(graphs, N, K).mean(1), -1)
    comp = torch.multinomial(pi, k, replacement=True, generator=generator)  # (B, k)
    idx = comp[:, None, :, None].expand(graphs, N, k, D).reshape(M, k, D)
    eps = torch.randn(M, k, D, dtype=mu.dtype, device=mu.device, generator=generator)
    return torch.gather(mu, 1, idx) + torch.gather(log_sigma, 1, idx).exp() * eps


def shared_mixture_logpdf(z: Tensor, logits: Tensor, mu: Tensor, log_sigma: Tensor, graphs: int) -> Tensor:
    r""":math:`\log \sum_k \pi_k \prod_i \mathcal N(z_i; \mu_{ik}, \sigma_{ik}^2)` per graph ``(B,)``."""
    M, K, _ = mu.shape
    comp = _diag_normal_logpdf(z[:, None, :], mu, log_sigma).reshape(graphs, M // graphs, K).sum(1)  # (B, K)
    return torch.logsumexp(torch.log_softmax(logits.reshape(graphs, M // graphs, K).mean(1), -1) + comp, -1)


def _diag_normal_logpdf(z: Tensor, mu: Tensor, log_sigma: Tensor) -> Tensor:
    return (-0.5 * ((z - mu) / log_sigma.exp()).pow(2) - log_sigma - 0.5 * LOG_2PI).sum(-1)


def _mixture_logpdf(z: Tensor, logits: Tensor, mu: Tensor, log_sigma: Tensor) -> Tensor:
    comp = _diag_normal_logpdf(z[:, None, :], mu, log_sigma)  # (M, K)
    return torch.logsumexp(torch.log_softmax(logits, -1) + comp, -1)
