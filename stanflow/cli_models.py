"""`stanflow train` and `stanflow evaluate`: the models on the world under STANFLOW_HOME.

Both call the library (`stan_model.training.run_experiment`, `stan_model.training.evaluate`);
torch is imported inside the commands so `stanflow --help` stays instant. Under
`torchrun --nproc-per-node N -m stanflow.cli train ...` training runs as DistributedDataParallel
(gloo); only rank 0 prints and writes.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

# The families of stan_model.models.MODELS (kept literal here so --help needs no torch import).
MODEL_NAMES = ("stan", "ple", "mmoe", "mlp_single", "mlp_shared")


def _parse_sets(sets: tuple[str, ...]) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"--set {item!r}: expected FIELD=VALUE, e.g. no_beta=true")
        try:
            overrides[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            overrides[key.strip()] = raw
    return overrides


def _summary_lines(metrics: dict, tasks: list[str]) -> list[str]:
    ndcg_key = next(k for k in metrics if k.startswith("ndcg@"))
    lines = [f"  {'task':10s} {'AUC':>8s} {ndcg_key.upper():>9s} {'logloss':>9s}"]
    for t in tasks:
        lines.append(
            f"  {t:10s} {metrics['auc'][t]:8.4f} {metrics[ndcg_key][t]:9.4f} "
            f"{metrics['logloss'][t]:9.5f}"
        )
    if "probe" in metrics:
        lines.append(
            f"  latent-stage probe: balanced accuracy {metrics['probe']['balanced_accuracy']:.3f}"
        )
    return lines


@click.command()
@click.option(
    "--model",
    "model_name",
    type=click.Choice(MODEL_NAMES),
    required=True,
    help="Architecture: stan, ple, mmoe, mlp_single or mlp_shared.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Most epochs to train; early stopping on the validation day may stop sooner.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the initial weights, shuffling and random draws.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="Global batch size (split across ranks under torchrun).",
)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate.")
@click.option(
    "--patience",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Epochs without a better validation AUC before stopping.",
)
@click.option("--bf16", is_flag=True, help="Train and score under bfloat16 autocast.")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: this process's GPU when CUDA is available (NCCL under torchrun), else the CPU "
    "(gloo).",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="CPU threads per process (0: one per core). Use 1 on a machine shared with other jobs.",
)
@click.option(
    "--test-days",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Last days of the world held out as the test set.",
)
@click.option(
    "--valid-days",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Days before the test days used for early stopping.",
)
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Override a model-config field (repeatable), e.g. --set no_beta=true "
    "--set backbone.n_levels=1 --set 'expert_dims=[64,32]'.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model folder: model.safetensors, model.json, metrics.json "
    "(default: <home>/models/<model>-seed<seed>).",
)
@click.option(
    "--checkpoints",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Epoch checkpoints (default: <home>/checkpoints/<name of the model folder>). "
    "Rerunning with the same folder resumes from its last completed epoch.",
)
@click.option("--fresh", is_flag=True, help="Delete the checkpoints and start over.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar per epoch.")
@click.pass_context
def train(
    ctx,
    model_name,
    epochs,
    seed,
    batch_size,
    lr,
    patience,
    bf16,
    device,
    threads,
    test_days,
    valid_days,
    sets,
    out,
    checkpoints,
    fresh,
    progress,
) -> None:
    """Train one model on the world under the data home and score it on the test days.

    Writes model.safetensors, model.json (family, config, feature vocabulary, tasks) and
    metrics.json (validation and test metrics, per-epoch history) into the model folder, keeps
    epoch checkpoints apart (--checkpoints), then prints the test AUC and NDCG@5 per task.
    """
    from stan_model.data.dataset import DatasetConfig
    from stan_model.training import run_experiment
    from stan_model.training.distributed import (
        barrier,
        init_distributed,
        resolve_device,
        shutdown_distributed,
    )

    home = ctx.obj["settings"].home
    out = out or home / "models" / f"{model_name}-seed{seed}"
    checkpoints = checkpoints or home / "checkpoints" / out.name
    overrides = _parse_sets(sets)
    dist_ctx = init_distributed(resolve_device(device))
    if fresh and checkpoints.exists() and dist_ctx.is_main:
        import shutil

        shutil.rmtree(checkpoints)
    barrier(dist_ctx)  # no rank reads the checkpoints before rank 0 has removed them
    train_overrides = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "patience": patience,
        "bf16": bf16,
        "device": device,
        "threads": threads,
        "progress": progress,
    }
    dataset_config = DatasetConfig(test_days=test_days, valid_days=valid_days)
    try:
        result = run_experiment(
            home,
            model_name,
            seed=seed,
            overrides=overrides,
            train_overrides=train_overrides,
            dataset_config=dataset_config,
            out_dir=out,
            checkpoint_dir=checkpoints,
        )
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        shutdown_distributed()
    if "test" not in result:  # a non-zero rank under torchrun: rank 0 reports
        return
    tasks = list(result["test"]["auc"])
    click.echo(
        f"{model_name} (seed {seed}): {result['num_parameters']:,} parameters, best epoch "
        f"{result['best_epoch']} of {result['epochs_run']}, "
        f"{result['samples_per_s']:,.0f} training samples/s"
    )
    click.echo(f"test days ({result['test']['n_samples']:,} impressions):")
    for line in _summary_lines(result["test"], tasks):
        click.echo(line)
    click.echo(f"model folder: {out}")


@click.command()
@click.option(
    "--model-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="A model folder written by `stanflow train`.",
)
@click.option(
    "--split",
    type=click.Choice(["test", "valid"]),
    default="test",
    show_default=True,
    help="Which days to score.",
)
@click.option(
    "--k",
    "k",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Cut-off of NDCG@k (lists: one per user and day).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every metric to this JSON file.",
)
@click.pass_context
def evaluate(ctx, model_dir, split, k, json_path) -> None:
    """Score a saved model on the world under the data home.

    Rebuilds the dataset with the split the model was trained with and prints per-task AUC,
    NDCG@k and log loss, AUC per lifecycle stage, and the latent-stage probe on simulated worlds.
    """
    from stan_model.data.dataset import DatasetConfig, build_dataset
    from stan_model.io import config_from_dict, load_model
    from stan_model.training import evaluate as evaluate_model

    home = ctx.obj["settings"].home
    try:
        loaded = load_model(model_dir)
        dataset_config = config_from_dict(DatasetConfig, loaded.metadata.get("dataset", {}))
        data = build_dataset(home, dataset_config)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if data.spec != loaded.spec:
        raise click.ClickException(
            f"{model_dir} was trained on a world with other features or vocabularies than the "
            f"one under {home}; evaluate it on the world it was trained on (--home)"
        )
    metrics = evaluate_model(loaded.model, data, split, k=k)
    click.echo(f"{loaded.family} from {model_dir} on the {split} days of {home}:")
    for line in _summary_lines(metrics, list(data.spec.tasks)):
        click.echo(line)
    by_stage = metrics["auc_by_rule_stage"]
    click.echo(
        "  AUC by rule-based stage: "
        + "; ".join(
            f"{t}: " + ", ".join(f"{s} {v:.3f}" for s, v in stages.items())
            for t, stages in by_stage.items()
        )
    )
    if json_path is not None:
        json_path.write_text(json.dumps(metrics, indent=2, default=float) + "\n")
        click.echo(f"metrics written to {json_path}")
