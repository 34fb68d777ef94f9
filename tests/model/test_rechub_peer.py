"""The quality benchmark's peer (bench/rechub_peer.py): torch-rechub's PLE behind our model
interface trains a step, goes through run_experiment like our models, and is built to our PLE's
config (the parameter counts differ by rechub's BatchNorm layers only)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from stan_model.models import MODELS, build_model
from stan_model.models.layers import StackedBatchNorm
from stan_model.training import TrainConfig, run_experiment
from stan_model.training.evaluation import evaluate

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def peer():
    if "rechub_peer" not in sys.modules:
        spec = importlib.util.spec_from_file_location("rechub_peer", BENCH / "rechub_peer.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["rechub_peer"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["rechub_peer"]


def test_the_peer_is_our_ple_config_batchnorm_included(peer, tiny_data):
    """The same parameters as our PLE, BatchNorm's scales and shifts included (ours puts one
    after the same layers as torch-rechub's MLP does)."""
    with peer.registered() as family:
        model = build_model(family, tiny_data.spec)
    ours = build_model("ple", tiny_data.spec)
    batchnorm = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm1d) for p in m.parameters()
    )
    our_batchnorm = sum(
        p.numel() for m in ours.modules() if isinstance(m, StackedBatchNorm) for p in m.parameters()
    )
    assert batchnorm > 0 and batchnorm == our_batchnorm
    assert model.num_parameters() == ours.num_parameters()
    assert family not in MODELS  # the registration is scoped to the block


def test_the_peer_trains_a_step_and_scores(peer, tiny_data):
    torch.manual_seed(0)
    model = peer.RechubPLE(tiny_data.spec, peer.RechubPLEConfig())
    rows = torch.from_numpy(tiny_data.splits["train"])
    rate = tiny_data.bundle.labels[rows].mean(0)
    model.init_base_rates(rate, tiny_data.bundle.pseudo[rows].mean(0))
    batch = tiny_data.bundle.batch(rows[:512])
    model.eval()
    start = model(batch).logits
    assert start.shape == (512, len(tiny_data.spec.tasks))
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    out = model(batch, with_loss=True)
    assert torch.isfinite(out.loss)
    optimizer.zero_grad()
    out.loss.backward()
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    scores = evaluate(model, tiny_data, "test", probe=True)
    for task in tiny_data.spec.tasks:
        assert 0.0 <= scores["auc"][task] <= 1.0
        assert 0.0 <= scores["ndcg@5"][task] <= 1.0
    assert scores["probe"]["n"] > 0


def test_run_experiment_trains_the_peer_like_our_models(peer, tiny_world, tiny_data):
    with peer.registered() as family:
        summary = run_experiment(
            tiny_world,
            family,
            seed=0,
            overrides={"expert_dims": [32, 16], "tower": [16]},
            train_overrides={"epochs": 1, "progress": False, "threads": 1},
            data=tiny_data,
            probe=False,
        )
    assert summary["model"] == family
    assert summary["config"]["expert_dims"] == (32, 16)
    assert summary["epochs_run"] == summary["train_config"]["epochs"] == 1
    assert summary["train_config"]["batch_size"] == TrainConfig().batch_size  # our trainer's
    assert summary["test"]["mean_auc"] > 0.5
