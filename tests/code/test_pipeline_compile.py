"""The compiled pipeline: recompiling reproduces the committed golden YAML, and kfp loads it."""

import pytest
import yaml
from kfp import components as kfp_components

from components.pipeline import PACKAGE_PATH, PIPELINE_NAME, compile_pipeline
from components.runner import PipelineParams


def test_recompiling_reproduces_the_golden_yaml(tmp_path):
    fresh = compile_pipeline(tmp_path / "pipeline.yaml")
    assert fresh.read_text() == PACKAGE_PATH.read_text(), (
        "components/stan_training_pipeline.yaml is stale: run `stanflow pipeline compile`"
    )


def test_golden_yaml_loads_with_kfp_and_has_the_gated_promotion():
    loaded = kfp_components.load_component_from_file(str(PACKAGE_PATH))
    assert loaded.name == PIPELINE_NAME
    spec = yaml.safe_load(PACKAGE_PATH.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert {"build-training-set", "train-model", "train-model-2", "gate", "condition-2"} <= set(
        tasks
    )
    condition = tasks["condition-2"]["triggerPolicy"]["condition"]
    assert "promote" in condition
    promote_tasks = spec["components"]["comp-condition-2"]["dag"]["tasks"]
    assert list(promote_tasks) == ["promote"]
    # Extra baselines: a loop over the extra_models parameter (train, then evaluate each).
    loop = tasks["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--extra_models"
    assert set(spec["components"]["comp-for-loop-1"]["dag"]["tasks"]) == {
        "train-model-3",
        "evaluate-model-3",
    }
    families = {
        t["inputs"]["parameters"]["family"]["runtimeValue"]["constant"]
        for name, t in tasks.items()
        if name.startswith("train-model")
    }
    assert families == {"ple", "stan"}


def test_pipeline_params_are_validated():
    with pytest.raises(ValueError, match="Invalid isoformat|isoformat"):
        PipelineParams(home="/x", logical_date="yesterday")
    with pytest.raises(ValueError, match="window_days"):
        PipelineParams(home="/x", logical_date="2026-01-10", window_days=2)
    with pytest.raises(ValueError, match="extra_models"):
        PipelineParams(home="/x", logical_date="2026-01-10", extra_models=["stan"])
    with pytest.raises(ValueError, match="override_reason"):
        PipelineParams(home="/x", logical_date="2026-01-10", force_promote=True)
