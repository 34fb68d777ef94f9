"""STAN (RecSys 2023, arXiv 2306.12232): a PLE backbone plus a user-state branch.

The user-state branch ("left-hand side" of the paper's figure), per sample:

1. ``U`` (B, Fu, E): the user's field embeddings -- the user-side sparse fields, looked up in the
   backbone's own fused table (shared, as the paper says), and each user-side dense history
   feature as a field ``value * v_f + b_f``.
2. Field self-attention: ``U' = softmax(Q K^T / sqrt(E)) V`` with Q, K, V linear in ``U``
   (``attention_residual`` adds ``U``).
3. Per-task attention ``s_k = U' * softmax_fields(U' W_k)``: for every embedding dimension, a
   softmax over the user's fields (which fields matter for task k).
4. ``e_k = ReLU(MLP_k(flatten(s_k)))`` -- the *state-aware embedding* -- and the preference score
   ``y~_k = sigmoid(w_k . e_k)``.

Loss (paper): ``sum_k [ gamma_k * BCE(y^_k, y_k) + (l_k - y~_k)^2 ]`` with ``l_k`` the user's
historical rate of task k before the sample (``Batch.pseudo``, built leakage-free by
:mod:`stan_model.data.dataset`) and ``gamma_k ~ Beta(alpha, beta)``, ``alpha = 1 + sum_c y~ c``,
``beta = 1 + sum_c (1 - y~) c`` over the user's samples in time order, ``c = 1, 2, ...``.

**What gamma is here, and the choices the paper leaves open** (each a switch in
:class:`STANConfig`; the default is the paper as written, :meth:`STANConfig.design_directions`
the variant built from DESIGN.md's "directions worth trying"):

* *The walk in closed form.* A sample at position ``n`` of its user's history (``Batch.history``)
  gets ``alpha = 1 + y~ S``, ``beta = 1 + (1 - y~) S`` with ``S = n (n + 1) / 2 = sum_{c<=n} c``,
  using the current ``y~`` for the user's earlier samples too. This is exact when ``y~`` is the
  same across a user's history, needs no per-user state (so it is batch-composition independent,
  resumable and DDP-safe), and always uses a fresh ``y~`` instead of one from a stale pass.
* *Detached* (``detach_gamma``, default on): otherwise the model could lower its loss by lowering
  its own weights (driving ``y~`` down wherever the BCE is high).
* *Redrawn every step* (``resample_gamma``, default on): a fresh Beta draw per sample per step,
  as the paper's "resampling" says; off uses the Beta mean.
* *Capped effective count* (``beta_max_count``; DESIGN "numerical traps"): the uncapped ``S``
  reaches ~1e4 after 150 impressions, so the draw is nearly deterministic (gamma ~ y~); capping
  it keeps a user-adaptive spread. Default 0: uncapped, as the paper.
* *Normalised* (``normalise_gamma``, default off as in the paper): gamma divided by its batch
  mean per task, then by its mean over the sample's tasks, so it redistributes weight among a
  user's tasks instead of between users, and does not scale each task's loss by the task's base
  rate (DESIGN: un-normalised gamma starves new users and wanderers and tilts the shared experts
  toward click).
* *Stage loss scaled per task* (``scale_stage_loss``, default off): each task's squared error
  divided by ``p(1 - p)`` of the batch's pseudo-labels, so the rare task's ~1e-4 loss still
  trains its score.
* *Where the user-state embedding feeds* (``state_to_gates`` / ``state_to_towers``, default
  off): the paper uses it only through gamma; ``e_k`` can also join task k's gate inputs (every
  level) and tower input -- stage-aware routing. The main loss then trains the branch too.
* Ablations: ``no_beta`` (the paper's "STAN w/o Beta": gamma = y~), ``unit_task_weights``
  (gamma = 1: stage loss only), ``no_stage_loss``.

**Why the default is the paper as written.** We expected the DESIGN directions to win and built
them first; one measurement on the ``small`` world (seed 0, budget-matched PLE, test AUC
ctr / stay / cvr) said otherwise: PLE .7467 / .8904 / .8857; paper-faithful STAN .7452 / .8905 /
.8853; with state routing .7413 / .8913 / .8879; ``design_directions()`` .7386 / .8892 / .8816.
Routing and the capped, normalised gamma each cost ~0.003 CTR AUC; nothing beat PLE beyond one
run's noise (two PLE runs of widths 136 / 138 differ by up to .0034). So the default is the
variant that measured best and needs no invented parts; every direction stays one switch away for
the multi-seed study. The preference score learns to copy the user's historical rate
(correlation 0.9996 with the pseudo-label on test days), which the backbone already sees as an
input: gamma ~ y~ ~ l.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from stan_model.data.tensors import Batch, FeatureSpec
from stan_model.models.layers import FeatureInput, MultiTaskModel, Output, StackedLinear, StackedMLP
from stan_model.models.ple import PLEBackbone, PLEConfig


def _stan_backbone() -> PLEConfig:
    # Narrower experts than PLE's default (136): the user-state branch spends the difference.
    return PLEConfig(expert_dims=(128, 64))


@dataclass
class STANConfig:
    backbone: PLEConfig = field(default_factory=_stan_backbone)  # the PLE part (embeddings too)
    state_hidden: int = 32  # width of each task's state-aware embedding e_k
    attention_residual: bool = False  # U' = U + Attn(U) instead of the paper's Attn(U)
    no_beta: bool = False  # "STAN w/o Beta": gamma = y~ directly
    unit_task_weights: bool = False  # gamma = 1: isolates the stage loss (and state routing)
    no_stage_loss: bool = False  # drop (l_k - y~_k)^2; y~ then learns only via state routing
    detach_gamma: bool = True  # no gradient through gamma: the model cannot shrink its own weights
    resample_gamma: bool = True  # a fresh Beta draw every step (False: the Beta mean)
    beta_max_count: float = 0.0  # cap on S = n(n+1)/2, the Beta's effective count (0: uncapped)
    normalise_gamma: bool = False  # per task over the batch, then over the sample's tasks
    scale_stage_loss: bool = False  # divide task k's stage loss by p_k (1 - p_k) of its targets
    stage_loss_weight: float = 1.0  # weight of the summed stage losses against the task losses
    state_to_gates: bool = False  # e_k joins task k's gate input at every CGC level
    state_to_towers: bool = False  # e_k joins task k's tower input

    def __post_init__(self) -> None:
        if self.no_beta and self.unit_task_weights:
            raise ValueError("STANConfig: choose no_beta or unit_task_weights, not both")

    def widened(self, width: int) -> STANConfig:
        return replace(self, backbone=self.backbone.widened(width))

    @classmethod
    def faithful(cls) -> STANConfig:
        """The paper as written (the default): gamma only in the loss, uncapped and
        un-normalised, plain squared stage loss, U' = Attn(U)."""
        return cls(
            attention_residual=False,
            beta_max_count=0.0,
            normalise_gamma=False,
            scale_stage_loss=False,
            state_to_gates=False,
            state_to_towers=False,
        )

    @classmethod
    def design_directions(cls) -> STANConfig:
        """DESIGN.md's directions at once: capped (100) and normalised gamma, per-task scaled
        stage loss, state-aware embeddings routed into gates and towers, attention residual."""
        return cls(
            attention_residual=True,
            beta_max_count=100.0,
            normalise_gamma=True,
            scale_stage_loss=True,
            state_to_gates=True,
            state_to_towers=True,
        )


def task_weights(pref: torch.Tensor, history: torch.Tensor, cfg: STANConfig) -> torch.Tensor:
    """gamma (B, K) from preference scores y~ (B, K) and history positions n (B,)."""
    if cfg.unit_task_weights:
        return torch.ones_like(pref)
    p = pref.detach() if cfg.detach_gamma else pref
    if cfg.no_beta:
        gamma = p
    else:
        n = history.double()[:, None]  # (B, 1); float64: S reaches 1e10 on long histories
        count = n * (n + 1) / 2  # sum of the counter c = 1..n
        if cfg.beta_max_count > 0:
            count = count.clamp(max=cfg.beta_max_count)
        alpha = 1 + p.double() * count
        beta = 1 + (1 - p.double()) * count
        if cfg.resample_gamma:
            # validate_args=False: alpha, beta >= 1 by construction; the checks cost a pass.
            dist = torch.distributions.Beta(alpha, beta, validate_args=False)
            gamma = (dist.sample() if cfg.detach_gamma else dist.rsample()).to(pref.dtype)
        else:
            gamma = (alpha / (alpha + beta)).to(pref.dtype)
    if cfg.normalise_gamma:
        gamma = gamma / gamma.mean(0, keepdim=True).clamp_min(1e-8)
        gamma = gamma / gamma.mean(1, keepdim=True).clamp_min(1e-8)
    return gamma


class _UserStateFunction(torch.autograd.Function):
    """The whole user-state branch as one autograd node, forward and backward written out.

    The same function and gradients as the plain composition of torch ops (the tests hold it,
    in float64, to 1e-12), in fewer passes over the (B, Fu, K, E) intermediates: no autograd
    bookkeeping per op, no ``split``/``cat`` of the q, k, v and per-task pieces, the products
    ``s_k = U' * P_k`` written task-major straight into the state MLP's input, and no pass for
    the task-attention bias, which a softmax over fields cancels (its gradient is exactly
    zero). Runs in the embeddings' dtype with autocast off: under bf16 autocast the branch is
    float32, whose small GEMMs and field softmaxes measured faster than bf16 ones on CPUs."""

    @staticmethod
    def forward(ctx, emb, dense, branch, *params):
        ctx.set_materialize_grads(False)
        dense_vec, dense_bias, w_qkv, w_task, _b_task, w_state, b_state, w_score, b_score = params
        sparse_idx, dense_idx = branch.sparse_idx, branch.dense_idx
        b, e, fs = emb.shape[0], emb.shape[2], sparse_idx.numel()
        f, (k, _, h) = fs + dense_idx.numel(), w_state.shape
        with torch.autocast(emb.device.type, enabled=False):
            u = emb.new_empty(b, f, e)  # the user's fields: sparse embeddings, then dense ones
            u[:, :fs] = emb.index_select(1, sparse_idx)
            du = dense.index_select(1, dense_idx).to(emb.dtype)  # (B, Du)
            torch.addcmul(dense_bias, du.unsqueeze(2), dense_vec, out=u[:, fs:])
            qkv = torch.mm(u.view(b * f, e), w_qkv.t()).view(b, f, 3 * e)
            q, key, v = qkv[..., :e], qkv[..., e : 2 * e], qkv[..., 2 * e :]
            # Scores held transposed (B, keys, queries): the softmax over keys runs over dim 1,
            # several times faster on CPUs than over a 12-long last dim.
            attn = torch.softmax(torch.bmm(key, q.transpose(1, 2)).mul_(branch.scale), dim=1)
            u2 = torch.bmm(attn.transpose(1, 2), v)  # (B, F, E)
            if branch.residual:
                u2.add_(u)
            w_t = w_task.transpose(0, 1).reshape(e, k * e)  # every task's W_k side by side
            probs = torch.softmax(torch.mm(u2.view(b * f, e), w_t).view(b, f, k, e), dim=1)
            s = emb.new_empty(b, k, f, e)  # s_k = U' * P_k, task-major
            torch.mul(u2.unsqueeze(1), probs.permute(0, 2, 1, 3), out=s)
            hidden = emb.new_empty(b, k * h)
            for j in range(k):
                out = hidden[:, j * h : (j + 1) * h]
                torch.addmm(b_state[j, 0], s[:, j].reshape(b, f * e), w_state[j], out=out)
            state = hidden.clamp_min_(0).view(b, k, h)
            pref = torch.baddbmm(b_score, state.transpose(0, 1), w_score).view(k, b).t()
        ctx.save_for_backward(u, du, qkv, attn, u2, probs, s, state, w_qkv, w_t, w_state, w_score)
        ctx.branch, ctx.emb_shape, ctx.b_task_shape = branch, emb.shape, _b_task.shape
        return state, pref

    @staticmethod
    def backward(ctx, g_state, g_pref):
        u, du, qkv, attn, u2, probs, s, state, w_qkv, w_t, w_state, w_score = ctx.saved_tensors
        branch = ctx.branch
        (b, f, e), (k, _, h) = u.shape, w_state.shape
        fs = branch.sparse_idx.numel()
        with torch.autocast(u.device.type, enabled=False):
            g_pref = u.new_zeros(b, k) if g_pref is None else g_pref.to(u.dtype)
            g_w_score = torch.bmm(state.permute(1, 2, 0), g_pref.t().unsqueeze(2))  # (K, H, 1)
            g_b_score = g_pref.sum(0).view(k, 1, 1)
            gh = g_pref.unsqueeze(2) * w_score.view(1, k, h)  # (B, K, H)
            if g_state is not None:
                gh.add_(g_state)
            gh = torch.ops.aten.threshold_backward(gh, state, 0)  # ReLU
            g_b_state = gh.sum(0).view(k, 1, h)
            g_w_state = torch.empty_like(w_state)
            gs = u.new_empty(b, k, f, e)
            for j in range(k):
                torch.mm(s[:, j].reshape(b, f * e).t(), gh[:, j], out=g_w_state[j])
                torch.mm(gh[:, j], w_state[j].t(), out=gs[:, j].view(b, f * e))
            g_probs = u.new_empty(b, f, k, e)
            torch.mul(gs.permute(0, 2, 1, 3), u2.unsqueeze(2), out=g_probs)
            g_u2 = (gs * probs.permute(0, 2, 1, 3)).sum(1)  # (B, F, E)
            g_t = torch._softmax_backward_data(g_probs, probs, 1, probs.dtype).view(b * f, k * e)
            g_w_task = torch.mm(u2.view(b * f, e).t(), g_t).view(e, k, e).transpose(0, 1)
            g_u2.view(b * f, e).addmm_(g_t, w_t.t())
            q, key, v = qkv[..., :e], qkv[..., e : 2 * e], qkv[..., 2 * e :]
            g_v = torch.bmm(attn, g_u2)
            g_scores = torch._softmax_backward_data(
                torch.bmm(v, g_u2.transpose(1, 2)), attn, 1, attn.dtype
            ).mul_(branch.scale)
            g_qkv = torch.cat(
                [torch.bmm(g_scores.transpose(1, 2), key), torch.bmm(g_scores, q), g_v], dim=2
            ).view(b * f, 3 * e)
            g_w_qkv = torch.mm(g_qkv.t(), u.view(b * f, e))
            g_u = torch.mm(g_qkv, w_qkv).view(b, f, e)
            if branch.residual:
                g_u.add_(g_u2)
            g_emb = u.new_zeros(ctx.emb_shape)
            g_emb.index_copy_(1, branch.sparse_idx, g_u[:, :fs])
            g_dense_u = g_u[:, fs:]  # (B, Du, E)
            g_dense_vec = (g_dense_u * du.unsqueeze(2)).sum(0)
            g_dense_bias = g_dense_u.sum(0)
            g_b_task = u.new_zeros(ctx.b_task_shape)  # cancelled by the softmax over fields
        return (
            g_emb,
            None,
            None,
            g_dense_vec,
            g_dense_bias,
            g_w_qkv,
            g_w_task.contiguous(),
            g_b_task,
            g_w_state,
            g_b_state,
            g_w_score,
            g_b_score,
        )


class UserStateBranch(nn.Module):
    """User fields -> per-task state-aware embeddings e (B, K, H) and score logits (B, K).

    The forward is :class:`_UserStateFunction`, one autograd node; the modules below hold its
    parameters (``qkv`` the attention's Q, K, V maps, ``task_attention`` the per-task W_k,
    ``state`` the per-task one-layer MLPs, ``score`` the per-task score heads)."""

    def __init__(self, spec: FeatureSpec, embed_dim: int, hidden: int, residual: bool):
        super().__init__()
        self.register_buffer("sparse_idx", torch.tensor(spec.user_sparse), persistent=False)
        self.register_buffer("dense_idx", torch.tensor(spec.user_dense), persistent=False)
        n_fields, e, k = len(spec.user_sparse) + len(spec.user_dense), embed_dim, len(spec.tasks)
        self.dense_vec = nn.Parameter(torch.randn(len(spec.user_dense), e) * 0.05)
        self.dense_bias = nn.Parameter(torch.zeros(len(spec.user_dense), e))
        self.qkv = nn.Linear(e, 3 * e, bias=False)
        # The bias b_k of U' W_k + b_k is the paper's, but a softmax over fields cancels it:
        # kept for model files and parameter counts, its gradient is zero.
        self.task_attention = StackedLinear(k, e, e)
        self.state = StackedMLP(k, n_fields * e, (hidden,))
        self.score = StackedLinear(k, hidden, 1)
        self.residual, self.scale = residual, 1.0 / math.sqrt(e)

    def forward(self, emb: torch.Tensor, dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``emb`` (B, F, E) every sparse field's embedding, ``dense`` (B, D) the dense
        features -> state (B, K, H), score logits (B, K)."""
        layer = self.state.layers[0]
        params = (
            self.dense_vec,
            self.dense_bias,
            self.qkv.weight,
            self.task_attention.weight,
            self.task_attention.bias,
            layer.weight,
            layer.bias,
            self.score.weight,
            self.score.bias,
        )
        return _UserStateFunction.apply(emb, dense, self, *params)


class STANObjective(nn.Module):
    """``sum_k mean_b gamma_bk BCE_bk + weight * sum_k stage_k`` (see the module docstring)."""

    def __init__(self, cfg: STANConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, logits: torch.Tensor, pref_logit: torch.Tensor, batch: Batch) -> Output:
        cfg = self.cfg
        bce = F.binary_cross_entropy_with_logits(logits.float(), batch.labels, reduction="none")
        pref = torch.sigmoid(pref_logit.float())  # (B, K) y~
        gamma = task_weights(pref, batch.history, cfg)
        task_loss = (gamma * bce).mean(0).sum()
        stage = ((batch.pseudo - pref) ** 2).mean(0)  # (K,)
        if cfg.scale_stage_loss:
            p = batch.pseudo.mean(0).clamp(1e-4, 1 - 1e-4)
            stage = stage / (p * (1 - p))
        stage_loss = stage.sum() * cfg.stage_loss_weight
        loss = task_loss if cfg.no_stage_loss else task_loss + stage_loss
        g = gamma.detach()
        parts = {
            "bce": bce.detach().mean(0).sum(),
            "stage": stage_loss.detach(),
            "gamma_cv": (g.std(0) / g.mean(0).clamp_min(1e-8)).mean(),
        }
        return Output(logits=logits, loss=loss, parts=parts)


class STAN(MultiTaskModel):
    def __init__(self, spec: FeatureSpec, config: STANConfig):
        super().__init__(spec)
        self.config = config
        e, h = config.backbone.embed_dim, config.state_hidden
        self.inputs = FeatureInput(spec, e)
        self.branch = UserStateBranch(spec, e, h, config.attention_residual)
        self.backbone = PLEBackbone(
            self.n_tasks,
            self.inputs.out_dim,
            config.backbone,
            gate_context=h if config.state_to_gates else 0,
            tower_context=h if config.state_to_towers else 0,
        )
        self.objective = STANObjective(config)

    @torch.no_grad()
    def init_base_rates(self, label_rate: torch.Tensor, pseudo_rate: torch.Tensor) -> None:
        super().init_base_rates(label_rate, pseudo_rate)
        self.branch.score.bias.copy_(torch.logit(pseudo_rate.clamp(1e-4, 1 - 1e-4)).view(-1, 1, 1))

    def _run(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb = self.inputs.embed(batch.sparse)  # (B, F, E)
        x = torch.cat([emb.flatten(1), batch.dense], dim=1)  # (B, F*E + D)
        # The branch runs in float32 even under bf16 autocast (see _UserStateFunction).
        state, pref_logit = self.branch(emb, batch.dense)  # (B, K, H), (B, K)
        logits = self.backbone(
            x,
            gate_context=state if self.config.state_to_gates else None,
            tower_context=state if self.config.state_to_towers else None,
        )
        return logits, pref_logit, state

    def logits(self, batch: Batch) -> torch.Tensor:
        return self._run(batch)[0]

    def forward(self, batch: Batch, with_loss: bool = False) -> Output:
        logits, pref_logit, _ = self._run(batch)
        return self.objective(logits, pref_logit, batch) if with_loss else Output(logits=logits)

    def preference(self, batch: Batch) -> torch.Tensor:
        """The preference scores y~ (B, K)."""
        return torch.sigmoid(self._run(batch)[1])

    def user_representation(self, batch: Batch) -> torch.Tensor:
        """The state-aware embeddings of all tasks, (B, K * H)."""
        state = self._run(batch)[2]  # (B, K, H)
        return state.flatten(1)
