"""`stanflow train` and `stanflow evaluate`: help, a run on tiny, errors a user can cause."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from stan_model.models import MODELS
from stanflow.cli import main
from stanflow.cli_models import MODEL_NAMES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_cli_knows_every_model_family():
    assert set(MODEL_NAMES) == set(MODELS)


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_help_is_real_sentences(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "world under the data home" in result.output
    assert "--model" in result.output


def test_train_then_evaluate_on_tiny(tiny_world, tmp_path):
    out = tmp_path / "stan-model"
    runner = CliRunner()
    args = [
        "--home",
        str(tiny_world),
        "train",
        "--model",
        "stan",
        "--epochs",
        "1",
        "--batch-size",
        "4096",
        "--no-progress",
        "--out",
        str(out),
        "--checkpoints",
        str(tmp_path / "ckpt"),
        "--set",
        "backbone.embed_dim=4",
        "--set",
        "backbone.expert_dims=[16,8]",
        "--set",
        "state_hidden=8",
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "stan (seed 0)" in result.output and "NDCG@5" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.json",
        "model.json",
        "model.safetensors",
    ]
    assert (tmp_path / "ckpt" / "state.json").exists()
    trained = json.loads((out / "metrics.json").read_text())
    assert trained["config"]["backbone"]["expert_dims"] == [16, 8]

    report = tmp_path / "eval.json"
    result = runner.invoke(
        main,
        ["--home", str(tiny_world), "evaluate", "--model-dir", str(out), "--json", str(report)],
    )
    assert result.exit_code == 0, result.output
    assert "AUC by rule-based stage" in result.output
    scored = json.loads(report.read_text())
    # The saved model, rebuilt from safetensors, scores exactly what training reported.
    assert scored["auc"] == pytest.approx(trained["test"]["auc"], abs=1e-6)
    assert set(scored["auc_by_latent_stage"]["cvr"]) == {"new", "wander", "stick", "loyal"}


def test_a_bad_override_names_the_field(tiny_world, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "--home",
            str(tiny_world),
            "train",
            "--model",
            "ple",
            "--out",
            str(tmp_path),
            "--set",
            "n_experts=3",
        ],
    )
    assert result.exit_code == 1
    assert "unknown field 'n_experts'" in result.output
    result = CliRunner().invoke(
        main, ["--home", str(tiny_world), "train", "--model", "ple", "--set", "oops"]
    )
    assert result.exit_code == 2 and "FIELD=VALUE" in result.output


def test_evaluate_without_a_world_says_what_to_do(tmp_path):
    result = CliRunner().invoke(
        main, ["--home", str(tmp_path / "empty"), "evaluate", "--model-dir", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "model.json" in result.output
