"""``stanflow pipeline``: compile, run locally, or submit the Kubeflow training pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from components.runner import EXTRA_MODELS  # the module imports only the standard library


def _params(
    ctx,
    *,
    date,
    window_days,
    epochs,
    seed,
    policy,
    force_promote,
    reason,
    extra_models=(),
    trainjob_workers=0,
):
    """The checked PipelineParams from the shared options (``_options``) of run and submit."""
    from components.runner import PipelineParams
    from stan_model.data import raw_store

    settings = ctx.obj["settings"]
    if date is None:
        days = raw_store.partition_days(settings.home)
        if not days:
            raise click.ClickException(
                f"{settings.home}: no raw data; run `stanflow simulate` first"
            )
        date = days[-1].isoformat()
    try:
        return PipelineParams(
            home=str(settings.home),
            logical_date=date,
            window_days=window_days,
            epochs=epochs,
            seed=seed,
            registry_uri=settings.registry_uri or "",
            policy_path=str(policy) if policy else "",
            force_promote=force_promote,
            override_reason=reason or "",
            extra_models=list(extra_models),
            trainjob_workers=trainjob_workers,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


_options = [
    click.option(
        "--date",
        help="Logical date YYYY-MM-DD: the last day of the window "
        "(default: the latest raw partition).",
    ),
    click.option(
        "--window-days",
        type=int,
        default=14,
        show_default=True,
        help="Days of impressions in the training set; the last day tests, the one "
        "before validates.",
    ),
    click.option(
        "--epochs",
        type=int,
        default=3,
        show_default=True,
        help="Maximum epochs (early stopping on the validation day).",
    ),
    click.option("--seed", type=int, default=0, show_default=True),
    click.option(
        "--policy",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Gate policy YAML (default: components/gate/default_policy.yaml).",
    ),
    click.option(
        "--force-promote",
        is_flag=True,
        help="Promote even if the gate rejects; needs --reason, which is recorded.",
    ),
    click.option("--reason", help="Written reason for --force-promote."),
    click.option(
        "--extra-model",
        "extra_models",
        multiple=True,
        type=click.Choice(EXTRA_MODELS),
        help="Also train and report this baseline (same data and budget; not gated). Repeatable.",
    ),
]


def _with_options(func):
    for option in reversed(_options):
        func = option(func)
    return func


@click.group()
def pipeline() -> None:
    """The Kubeflow training pipeline: PLE and STAN trained on one training set, gated, promoted."""


@pipeline.command("compile")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the IR YAML (default: components/stan_training_pipeline.yaml).",
)
def compile_cmd(out: Path | None) -> None:
    """Compile the pipeline to KFP IR YAML (the committed golden file by default)."""
    from components.pipeline import PACKAGE_PATH, compile_pipeline

    click.echo(f"compiled {compile_pipeline(out or PACKAGE_PATH)}")


@pipeline.command("run")
@_with_options
@click.option("--json", "as_json", is_flag=True, help="Print the gate's whole record as JSON.")
@click.pass_context
def run_cmd(ctx, as_json, **options) -> None:
    """Run the pipeline offline with the KFP local runner (artifacts under <home>/pipeline_root).

    Builds any missing feature partitions of the window first, then: training set (Feast, point
    in time, validated) -> train PLE and STAN -> evaluate both -> gate -> promote if it passed.
    """
    from components.runner import run_local

    result = run_local(_params(ctx, **options))
    record = result["decision"]
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    click.echo(f"run: {result['run_dir']}")
    reused = ", the same model was already registered" if record.get("reused_version") else ""
    click.echo(f"gate: {record['decision'].upper()}  (STAN version {record['version']}{reused})")
    for line in record["reasons"]:
        click.echo(f"  {line}")


@pipeline.command("submit")
@click.option("--host", help="KFP API URL (default: STANFLOW_KFP_HOST).")
@click.option("--experiment", default="stanflow", show_default=True)
@click.option(
    "--trainjob-workers",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Train each model as a Kubeflow PyTorchJob on a master and this many worker pods "
    "(needs STANFLOW_HOME_PVC; infra/README.md). 0: inside the pipeline's component.",
)
@_with_options
@click.pass_context
def submit_cmd(ctx, host, experiment, **options) -> None:
    """Send the compiled pipeline to a Kubeflow Pipelines cluster with kfp.Client.

    Components run there on the project image; STANFLOW_HOME must then name storage the
    cluster's pods can read (a mounted volume).
    """
    from components.pipeline import PACKAGE_PATH
    from components.runner import submit

    host = host or ctx.obj["settings"].kfp_host
    if not host:
        raise click.UsageError("no KFP host: pass --host or set STANFLOW_KFP_HOST")
    run_id = submit(PACKAGE_PATH, host, _params(ctx, **options), experiment)
    click.echo(f"submitted run {run_id} to {host}")


@pipeline.command("train-step")
@click.option(
    "--training-set",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The training set (Parquet) the pipeline's first step wrote.",
)
@click.option(
    "--family", required=True, type=click.Choice(["stan", "ple", *EXTRA_MODELS]), help="Model."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the model, its metrics and step.json.",
)
@click.pass_context
def train_step_cmd(ctx, training_set, family, seed, epochs, out) -> None:
    """The pipeline's training step on its own: what each pod of a distributed training job
    runs (under torchrun; rank 0 writes the model and step.json into --out).

    Baselines get STAN's parameter budget, as in the pipeline."""
    from components.steps import train_model
    from components.trainjob import STEP_FILE
    from stan_model.training.distributed import init_distributed

    home = str(ctx.obj["settings"].home)
    meta = train_model(str(training_set), home, family, seed, epochs, str(out))
    if init_distributed().is_main:
        (out / STEP_FILE).write_text(json.dumps(meta, indent=2, default=float) + "\n")
        click.echo(f"{family}: best valid mean AUC {meta['best_valid_mean_auc']:.4f} -> {out}")
