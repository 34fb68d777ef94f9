"""Behavioural tests of the architectures: minimum functionality, invariance, direction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stan_model.io import with_overrides
from stan_model.models import MODELS, STANConfig, build_model
from stan_model.models.stan import task_weights
from stan_model.training import TrainConfig, predict, train

SMALL = {  # small widths keep the suite fast; the behaviour does not depend on them
    "mlp_single": {"embed_dim": 8, "hidden": [64, 32]},
    "mlp_shared": {"embed_dim": 8, "bottom": [64, 32], "tower": [16]},
    "mmoe": {"embed_dim": 8, "n_experts": 4, "expert_dims": [32, 16], "tower": [16]},
    "ple": {"embed_dim": 8, "expert_dims": [32, 16], "tower": [16]},
    "stan": {
        "backbone.embed_dim": 8,
        "backbone.expert_dims": [32, 16],
        "backbone.tower": [16],
        "state_hidden": 16,
    },
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(family, data, extra=None):
    torch.manual_seed(0)
    config = with_overrides(MODELS[family][1](), {**SMALL[family], **(extra or {})})
    model = build_model(family, data.spec, config)
    train_rows = torch.from_numpy(data.splits["train"])
    model.init_base_rates(
        data.bundle.labels[train_rows].mean(0), data.bundle.pseudo[train_rows].mean(0)
    )
    return model


def _bce(model, bundle) -> float:
    """Sum over tasks of the mean BCE (what the models report as their ``bce`` part)."""
    logits = torch.from_numpy(predict(model, bundle))
    per_element = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, bundle.labels, reduction="none"
    )
    return float(per_element.mean(0).sum())


@pytest.mark.parametrize("family", list(MODELS))
def test_loss_falls_on_tiny(family, tiny_data):
    model = _model(family, tiny_data)
    before = _bce(model, tiny_data.split("train"))  # base-rate init already sits near 0.77
    result = train(
        model, tiny_data, TrainConfig(epochs=2, batch_size=1024, patience=5, progress=False)
    )
    during_last_epoch = result.history[-1]["train"]["bce"]
    assert during_last_epoch < 0.99 * before, (before, during_last_epoch)
    assert result.history[-1]["train"]["bce"] < result.history[0]["train"]["bce"]
    assert result.history[-1]["valid_mean_auc"] > 0.6


@pytest.mark.parametrize("family", list(MODELS))
def test_predictions_do_not_depend_on_batch_composition(family, tiny_data):
    extra = {"dropout": 0.5} if family != "stan" else {"backbone.dropout": 0.5}
    model = _model(family, tiny_data, extra).eval()  # dropout on, to prove eval turns it off
    bundle = tiny_data.bundle
    alone = model(bundle.batch(torch.arange(100, 164))).logits
    rows = torch.cat([torch.arange(5000, 5100), torch.arange(100, 164).flip(0)])
    mixed = model(bundle.batch(rows)).logits[100:].flip(0)
    torch.testing.assert_close(alone, mixed, atol=1e-5, rtol=1e-5)
    by_small_batches = predict(model, bundle.take(torch.arange(0, 300)), batch_size=7)
    by_one_batch = predict(model, bundle.take(torch.arange(0, 300)), batch_size=300)
    np.testing.assert_allclose(by_small_batches, by_one_batch, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "config",
    [
        STANConfig(),
        STANConfig.design_directions(),
        STANConfig(no_beta=True),
        STANConfig(beta_max_count=20.0, resample_gamma=False),
    ],
    ids=["default-paper", "design-directions", "no-beta", "capped-beta-mean"],
)
def test_users_with_higher_preference_get_higher_mean_gamma(config):
    torch.manual_seed(0)
    levels = torch.tensor([0.01, 0.05, 0.2, 0.5, 0.8])
    draws = 4000
    pref = torch.full((len(levels) * draws, 3), 0.1)
    pref[:, 0] = levels.repeat_interleave(draws)  # task 0: five users, increasing y~
    history = torch.full((len(pref),), 12.0)  # the same history length for everyone
    gamma = task_weights(pref, history, config)[:, 0].view(len(levels), draws).mean(1)
    assert torch.all(gamma[1:] > gamma[:-1]), gamma


def _learns(param: torch.Tensor) -> bool:
    return param.grad is not None and bool(param.grad.abs().sum() > 0)


ROUTED = {"state_to_gates": True, "state_to_towers": True}


@pytest.mark.parametrize(
    ("switches", "state_learns", "score_learns"),
    [
        ({}, True, True),  # the paper: the stage loss trains the whole branch
        ({"no_stage_loss": True}, False, False),  # nothing reaches the branch (gamma detached)
        ({"no_stage_loss": True, **ROUTED}, True, False),  # routing alone trains e_k
        ({"no_stage_loss": True, "state_to_gates": True}, True, False),
        ({"unit_task_weights": True, "scale_stage_loss": True}, True, True),
        ({"no_beta": True, "detach_gamma": False, "no_stage_loss": True}, True, True),  # via gamma
        (
            {"resample_gamma": False, "attention_residual": True, "normalise_gamma": True},
            True,
            True,
        ),
        ({"beta_max_count": 50.0, "detach_gamma": False, "no_stage_loss": True}, True, True),
    ],
)
def test_every_stan_switch_runs_and_trains_what_it_should(
    switches, state_learns, score_learns, tiny_data
):
    model = _model("stan", tiny_data, switches)
    out = model(tiny_data.bundle.batch(torch.arange(0, 512)), with_loss=True)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert _learns(model.branch.state.layers[0].weight) == state_learns
    assert _learns(model.branch.score.weight) == score_learns


@pytest.mark.parametrize("no_stage_loss", [False, True])
def test_stan_loss_is_the_sum_of_its_parts(no_stage_loss, tiny_data):
    model = _model("stan", tiny_data, {"unit_task_weights": True, "no_stage_loss": no_stage_loss})
    out = model(tiny_data.bundle.batch(torch.arange(0, 512)), with_loss=True)
    expected = out.parts["bce"] + (0.0 if no_stage_loss else out.parts["stage"])
    assert out.loss.item() == pytest.approx(float(expected), rel=1e-5)
    assert out.parts["stage"] > 0


def _plain_branch(branch, emb, dense):
    """STAN's user-state branch as the plain composition of torch ops (the module docstring's
    steps 1-4), against which the hand-written forward and backward are held."""
    dense_u = dense[:, branch.dense_idx, None] * branch.dense_vec + branch.dense_bias
    u = torch.cat([emb.index_select(1, branch.sparse_idx), dense_u], dim=1)  # (B, Fu, E)
    b, f, e = u.shape
    q, k, v = branch.qkv(u).split(e, dim=2)
    attn = torch.softmax(q @ k.transpose(1, 2) * branch.scale, dim=2)  # over keys
    u = u + attn @ v if branch.residual else attn @ v
    w = branch.task_attention
    s = [
        (u * torch.softmax(u @ w.weight[j] + w.bias[j], dim=1)).flatten(1)  # over fields
        for j in range(w.weight.shape[0])
    ]
    layer = branch.state.layers[0]
    state = torch.stack(
        [torch.relu(x @ wj + bj) for x, wj, bj in zip(s, layer.weight, layer.bias, strict=True)],
        dim=1,
    )  # (B, K, H)
    score = branch.score
    pref = torch.stack(
        [state[:, j] @ score.weight[j, :, 0] + score.bias[j, 0, 0] for j in range(len(s))], 1
    )
    return state, pref


@pytest.mark.parametrize("residual", [False, True])
def test_user_state_branch_matches_the_plain_composition(residual, tiny_data):
    """Outputs and every gradient (embeddings, all branch parameters) of the fused branch are
    those of the plain composition, in float64, with a non-zero task-attention bias (which
    the softmax over fields cancels: its gradient is zero either way)."""
    model = _model("stan", tiny_data, {"attention_residual": residual}).double()
    branch = model.branch
    with torch.no_grad():
        branch.task_attention.bias.normal_()
        branch.dense_bias.normal_(std=0.1)
    batch = tiny_data.bundle.batch(torch.arange(0, 96))
    emb = model.inputs.embed(batch.sparse).detach().requires_grad_()
    dense = batch.dense.double()
    gen = torch.Generator().manual_seed(0)

    def run(forward):
        model.zero_grad(set_to_none=True)
        emb.grad = None
        state, pref = forward(branch, emb, dense)
        g_state = torch.randn(state.shape, generator=gen.manual_seed(1), dtype=torch.float64)
        g_pref = torch.randn(pref.shape, generator=gen.manual_seed(2), dtype=torch.float64)
        ((state * g_state).sum() + (pref * g_pref).sum()).backward()
        grads = {n: p.grad for n, p in branch.named_parameters()}
        return {"state": state.detach(), "pref": pref.detach(), "emb": emb.grad, **grads}

    fused, plain = run(type(branch).forward), run(_plain_branch)
    assert set(fused) == set(plain)
    for name, want in plain.items():
        assert fused[name] is not None, name
        torch.testing.assert_close(fused[name], want, rtol=1e-10, atol=1e-12, msg=name)
    assert float(plain["task_attention.bias"].abs().max()) < 1e-12


def test_user_state_branch_gradcheck(tiny_data):
    """The hand-written backward against finite differences, with only the score used (the
    default STAN) and with only the state used (state routing)."""
    model = _model("stan", tiny_data).double()
    branch = model.branch
    batch = tiny_data.bundle.batch(torch.arange(0, 6))
    emb = model.inputs.embed(batch.sparse).detach().requires_grad_()
    dense = batch.dense.double()
    params = [branch.qkv.weight, branch.task_attention.weight, branch.dense_vec]
    assert torch.autograd.gradcheck(lambda e, *_: branch(e, dense)[1], (emb, *params))
    assert torch.autograd.gradcheck(lambda e, *_: branch(e, dense)[0], (emb, *params))


def test_user_state_branch_runs_in_float32_under_bf16_autocast(tiny_data):
    model = _model("stan", tiny_data)
    batch = tiny_data.bundle.batch(torch.arange(0, 64))
    emb = model.inputs.embed(batch.sparse)
    with torch.no_grad():
        want = model.branch(emb, batch.dense)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model.branch(emb, batch.dense)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, w, rtol=0, atol=0)
