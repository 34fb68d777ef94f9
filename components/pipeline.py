"""``stan-training-pipeline``: wiring only (STYLE.md). PLE and STAN train on the same training set
with the same budget, both are evaluated on the same test days, the gate decides, and promotion
runs only under ``dsl.If`` on a positive decision.

``compile_pipeline()`` writes the IR YAML committed beside this file
(``stan_training_pipeline.yaml``); a test recompiles it and compares.
"""

from pathlib import Path

from kfp import compiler, dsl

from components.kfp_components import build_training_set, evaluate_model, gate, promote, train_model

PIPELINE_NAME = "stan-training-pipeline"
PACKAGE_PATH = Path(__file__).with_name("stan_training_pipeline.yaml")


@dsl.pipeline(name=PIPELINE_NAME, description="Train PLE and STAN, evaluate, gate, promote.")
def stan_training_pipeline(
    home: str,
    logical_date: str,
    window_days: int = 14,
    epochs: int = 3,
    seed: int = 0,
    registry_uri: str = "",
    policy_path: str = "",
    force_promote: bool = False,
    override_reason: str = "",
    extra_models: list[str] = [],  # noqa: B006 -- KFP reads the default from the signature
    trainjob_workers: int = 0,
):
    data = build_training_set(home=home, logical_date=logical_date, window_days=window_days)
    data.set_display_name("training set (Feast, point in time)")
    training_set = data.outputs["training_set"]

    def train_and_evaluate(family, name: str):
        """One family trained on the training set, then scored on its test days."""
        trained = train_model(
            home=home,
            family=family,
            seed=seed,
            epochs=epochs,
            training_set=training_set,
            trainjob_workers=trainjob_workers,
        )
        trained.set_display_name(f"train {name}")
        evaluated = evaluate_model(
            home=home, model=trained.outputs["model"], training_set=training_set
        )
        evaluated.set_display_name(f"evaluate {name}")
        return trained, evaluated

    models, evaluations = {}, {}
    for family in ("ple", "stan"):
        models[family], evaluations[family] = train_and_evaluate(family, family)
    # More baselines for the report (mmoe, mlp_single, mlp_shared): trained on the same data
    # with the same budget and evaluated, but not gated.
    with dsl.ParallelFor(extra_models, name="extra-models") as family:
        train_and_evaluate(family, "extra baseline")
    decided = gate(
        home=home,
        registry_uri=registry_uri,
        policy_path=policy_path,
        force_promote=force_promote,
        override_reason=override_reason,
        training_set=data.outputs["training_set"],
        stan_model=models["stan"].outputs["model"],
        stan_evaluation=evaluations["stan"].outputs["evaluation"],
        ple_evaluation=evaluations["ple"].outputs["evaluation"],
    )
    with dsl.If(decided.outputs["Output"] == "promote", name="gate-passed"):
        promote(
            home=home,
            registry_uri=registry_uri,
            override_reason=override_reason,
            decision=decided.outputs["decision"],
        )


def compile_pipeline(path: Path = PACKAGE_PATH) -> Path:
    """Compile the pipeline to IR YAML at ``path`` (default: the committed golden file)."""
    compiler.Compiler().compile(stan_training_pipeline, str(path))
    return path
