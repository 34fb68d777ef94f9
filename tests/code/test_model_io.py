"""Model files (safetensors + JSON, never unpickled), config overrides, parameter budgets."""

from __future__ import annotations

import json

import pytest
import torch

from stan_model.io import CONFIG_FILE, MODEL_FILE, load_model, save_model, with_overrides
from stan_model.models import MODELS, PLEConfig, STANConfig, build_model
from stan_model.models.layers import StackedBatchNorm
from stan_model.training import match_budget

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("family", list(MODELS))
def test_safetensors_round_trip(family, tiny_data, tmp_path, monkeypatch):
    torch.manual_seed(3)
    config = with_overrides(
        MODELS[family][1](),
        {"embed_dim": 4} if family != "stan" else {"backbone.embed_dim": 4, "no_beta": True},
    )
    model = build_model(family, tiny_data.spec, config)
    with torch.no_grad():  # one training-mode pass: BatchNorm running statistics leave 0 / 1
        model(tiny_data.bundle.batch(slice(64, 192)))
    model.eval()
    save_model(tmp_path, family, model, {"note": "round trip"})
    assert (tmp_path / MODEL_FILE).exists()
    info = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert info["family"] == family and info["spec"]["tasks"] == ["ctr", "stay", "cvr"]

    def no_unpickling(*args, **kwargs):
        raise AssertionError("loading a model must not call torch.load")

    monkeypatch.setattr(torch, "load", no_unpickling)
    loaded = load_model(tmp_path)
    assert loaded.config == config and loaded.spec == tiny_data.spec
    assert loaded.metadata == {"note": "round trip"}
    batch = tiny_data.bundle.batch(slice(0, 64))
    with torch.no_grad():
        assert torch.equal(model(batch).logits, loaded.model(batch).logits)


@pytest.mark.parametrize("family", ["ple", "stan"])
def test_a_format_1_model_file_loads_without_batch_norm(family, tiny_data, tmp_path):
    """Format 1 predates the ``batch_norm`` field: its models had no BatchNorm and still load."""
    overrides = {"batch_norm": False} if family == "ple" else {"backbone.batch_norm": False}
    model = build_model(family, tiny_data.spec, with_overrides(MODELS[family][1](), overrides))
    save_model(tmp_path, family, model.eval())
    info = json.loads((tmp_path / CONFIG_FILE).read_text())
    config = info["config"] if family == "ple" else info["config"]["backbone"]
    del config["batch_norm"]
    info["format"] = 1
    (tmp_path / CONFIG_FILE).write_text(json.dumps(info))
    loaded = load_model(tmp_path)
    net = loaded.config if family == "ple" else loaded.config.backbone
    assert net.batch_norm is False
    info["format"] = 99
    (tmp_path / CONFIG_FILE).write_text(json.dumps(info))
    with pytest.raises(ValueError, match="model format 99; this stanflow reads formats 1, 2"):
        load_model(tmp_path)


def test_stacked_batch_norm_is_batchnorm1d_per_map():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 5) * 2 + 1  # a batch of 64, 3 maps, 5 features
    stacked, reference = StackedBatchNorm(3, 5), [torch.nn.BatchNorm1d(5) for _ in range(3)]
    for mode in ("train", "eval"):
        for m in (stacked, *reference):
            m.train(mode == "train")
        expected = torch.stack([bn(x[:, i]) for i, bn in enumerate(reference)], dim=1)
        torch.testing.assert_close(stacked(x), expected)
    torch.testing.assert_close(
        stacked.running_var[:, 0], torch.stack([bn.running_var for bn in reference])
    )


def test_overrides_are_checked():
    cfg = with_overrides(
        STANConfig(),
        {"backbone.n_levels": "1", "no_beta": "true", "backbone.expert_dims": [32, 16]},
    )
    assert cfg.backbone.n_levels == 1 and cfg.no_beta is True
    assert cfg.backbone.expert_dims == (32, 16)
    assert STANConfig().no_beta is False  # the default object is untouched
    with pytest.raises(ValueError, match="unknown field 'n_level'"):
        with_overrides(STANConfig(), {"backbone.n_level": 1})
    with pytest.raises(ValueError, match="not both"):
        with_overrides(STANConfig(), {"no_beta": True, "unit_task_weights": True})


def test_ple_and_stan_parameter_budgets_match_at_the_defaults(tiny_data):
    spec = tiny_data.spec
    ple, stan = build_model("ple", spec), build_model("stan", spec)
    n_ple, n_stan = ple.num_parameters(), stan.num_parameters()
    assert abs(n_ple - n_stan) / n_stan < 0.10
    # The stronger statement: also without the (shared-size) embedding tables -- the budget STAN
    # spends on its branch went into PLE's experts.
    emb_ple, emb_stan = ple.inputs.table.weight.numel(), stan.inputs.table.weight.numel()
    assert emb_ple == emb_stan
    assert abs((n_ple - emb_ple) - (n_stan - emb_stan)) / (n_stan - emb_stan) < 0.10
    # ... and PLE is not the smaller one by shrinking: its experts are wider than STAN's.
    assert PLEConfig().expert_dims[0] > STANConfig().backbone.expert_dims[0]


def test_match_budget_widens_a_baseline_to_a_stan_variant(tiny_data):
    spec = tiny_data.spec
    big_stan = build_model("stan", spec, with_overrides(STANConfig(), {"state_hidden": 128}))
    target = big_stan.num_parameters()
    matched = match_budget("ple", spec, PLEConfig(), target)
    n = build_model("ple", spec, matched).num_parameters()
    assert abs(n - target) / target < 0.01
    assert matched.expert_dims[0] > PLEConfig().expert_dims[0]
