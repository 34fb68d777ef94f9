"""One pipeline run as a machine-readable summary (``summary.json``) and a static HTML report.

``write_summary`` reads a run folder (``<pipeline_root>/<run>/``: the training set, both models,
both evaluations, the gate's record) into one JSON document: the data split, the validation
result, every metric of STAN and PLE, the gate's decision and the registered version.
``write_report`` turns that summary into ``report.html`` with PNG figures beside it (relative
links, no scripts, nothing fetched): the metrics table, the gate's reasons, AUC per lifecycle
stage, the training curves and a PCA projection of STAN's user-state embeddings.

Plain functions (an Airflow task or the CLI calls them); heavy imports stay inside; figures use
matplotlib's object API on the Agg canvas, never pyplot's global state.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
from pathlib import Path
from urllib.parse import quote

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
FAMILIES = ("stan", "ple")  # candidate first, then the baseline it must beat
COLOURS = {"stan": "#1f77b4", "ple": "#ff7f0e"}
MAX_PROJECTED = 2000  # (user, day) rows in the embedding projection: readable, fast on a CPU


def _json_safe(value):
    """``value`` with NaN and infinities as None and numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _by_family(run_dir: Path, component: str, artifact: str, file: str) -> dict[str, Path]:
    """``{family: artifact folder}`` over ``<component>``, ``<component>-2``, … of the run.

    Extra baselines run inside the pipeline's loop, under ``for-loop-*/<component>-N``.
    """
    found = {}
    folders = sorted(run_dir.glob(f"{component}*")) + sorted(
        run_dir.glob(f"for-loop-*/{component}*")
    )
    for folder in folders:
        path = folder / artifact / file
        if path.is_file():
            found[json.loads(path.read_text())["family"]] = path.parent
    missing = [f for f in FAMILIES if f not in found]
    if missing:
        raise FileNotFoundError(
            f"{run_dir}: no {component}*/{artifact}/{file} of family {', '.join(missing)}; "
            "is this a finished stan-training-pipeline run folder?"
        )
    return found


def _data_split(dataset: Path, model_dir: Path) -> dict:
    """Rows and users per split, split as the model was trained (its saved DatasetConfig)."""
    import numpy as np
    import pyarrow.parquet as pq

    from stan_model.data.dataset import DatasetConfig
    from stan_model.data.table_dataset import split_rows, table_days

    saved = json.loads((model_dir / "model.json").read_text()).get("metadata", {})
    names = {f.name for f in dataclasses.fields(DatasetConfig)}
    cfg = DatasetConfig(**{k: v for k, v in saved.get("dataset", {}).items() if k in names})
    table = pq.read_table(dataset, columns=["user_id", "event_timestamp"])
    days, day = table_days(table)
    users = table["user_id"].to_numpy()
    out = {"rows": table.num_rows, "users": len(np.unique(users))}
    for name, rows in split_rows(day, len(days), cfg).items():
        out[name] = {
            "rows": len(rows),
            "users": len(np.unique(users[rows])),
            "first_day": days[int(day[rows].min())].isoformat() if len(rows) else None,
            "last_day": days[int(day[rows].max())].isoformat() if len(rows) else None,
        }
    return out


def write_summary(
    run_dir: Path,
    out_dir: Path,
    *,
    run_id: str,
    logical_date: str,
    timings_s: dict,
    validation: dict,
    champion_uri: str | None,
    extra: dict | None = None,
    home: str | Path | None = None,
) -> dict:
    """Build the run's summary from ``run_dir`` and write it to ``out_dir/summary.json``.

    ``timings_s`` (seconds per stage), ``validation`` (the training set's GX result:
    ``success`` and ``failed_expectations``) and ``champion_uri`` come from the caller; ``extra``
    adds top-level keys (never replacing one). ``home``: the pipeline's data home (default: the
    one STAN's model records it was trained from).
    """
    from components.registry.factory import storage_from_uri
    from components.registry.registry import VERSIONS_PREFIX

    run_dir = Path(run_dir)
    models = _by_family(run_dir, "train-model", "model", "model.json")
    evaluations = _by_family(run_dir, "evaluate-model", "evaluation", "evaluation.json")
    # STAN and PLE first, then any extra baselines of the run (reported, not gated).
    families = (*FAMILIES, *sorted(f for f in evaluations if f not in FAMILIES))
    ev = {f: json.loads((evaluations[f] / "evaluation.json").read_text()) for f in families}
    record = json.loads((run_dir / "gate" / "decision").read_text())
    data = _data_split(run_dir / "build-training-set" / "training_set", models["stan"])
    if data["test"]["rows"] != ev["stan"]["n_samples"]:
        raise ValueError(
            f"{run_dir}: the split gives {data['test']['rows']} test rows but STAN was evaluated "
            f"on {ev['stan']['n_samples']}; the training set or the DatasetConfig changed"
        )
    tasks = list(ev["stan"]["auc"])
    saved = json.loads((models["stan"] / "model.json").read_text()).get("metadata", {})
    summary = {
        "run_id": run_id,
        "logical_date": logical_date,
        "run_dir": str(run_dir),
        "home": str(home) if home else saved.get("world"),
        "tasks": tasks,
        "data": data,
        "validation": validation,
        "metrics": {
            f: {t: {"auc": ev[f]["auc"][t], "ndcg@5": ev[f]["ndcg@5"][t]} for t in tasks}
            for f in families
        },
        "metrics_by_stage": {f: ev[f]["auc_by_rule_stage"] for f in families},
        # Simulated worlds only (the simulator's truth); null on real data.
        "metrics_by_latent_stage": (
            {f: ev[f]["auc_by_latent_stage"] for f in families}
            if all("auc_by_latent_stage" in ev[f] for f in families)
            else None
        ),
        "probe": {f: ev[f].get("probe") for f in families},
        "gate": {
            "decision": record["decision"],
            "reasons": record["reasons"],
            "overridden": record.get("overridden", False),
            "override_reason": record.get("override_reason"),
            "intervals": record.get("intervals", {}),
        },
        "model_version": record["version"],
        "registry_uri": record["registry_uri"],
        "model_uri": storage_from_uri(record["registry_uri"]).location(
            f"{VERSIONS_PREFIX}/{record['version']}"
        ),
        "champion_uri": champion_uri,
        "timings_s": timings_s,
    }
    clash = sorted(set(extra or {}) & set(summary))
    if clash:
        raise ValueError(f"write_summary: extra keys {clash} would replace summary fields")
    summary = _json_safe({**summary, **(extra or {})})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary, indent=2, allow_nan=False)
    (out_dir / SUMMARY_FILE).write_text(text + "\n", encoding="utf-8")
    return summary


# -- figures ---------------------------------------------------------------------------------


def _figure(width: float, height: float, panels: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, panels, squeeze=False)[0]


def _plot_stage_auc(summary: dict, path: Path) -> None:
    """One panel per task: AUC per rule-based lifecycle stage, STAN and PLE side by side."""
    import numpy as np

    tasks = summary["tasks"]
    fig, axes = _figure(3.6 * len(tasks), 3.2, len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        stages = list(summary["metrics_by_stage"]["stan"][task])
        x = np.arange(len(stages))
        for i, family in enumerate(FAMILIES):
            auc = [summary["metrics_by_stage"][family][task][s] for s in stages]
            values = [np.nan if v is None else v for v in auc]
            ax.bar(x + (i - 0.5) * 0.4, values, 0.4, label=family.upper(), color=COLOURS[family])
        ax.set_xticks(x, stages)
        ax.set_ylim(0.4, 1.08)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{task}: AUC by rule-based stage")
    axes[0].set_ylabel("test AUC (missing bar: stage lacks a class)")
    axes[0].legend(loc="upper right", ncols=2)
    fig.savefig(path, dpi=100)


def _plot_training(models: dict[str, Path], path: Path) -> None:
    """Validation mean AUC and train loss per epoch of both models (from ``metrics.json``)."""
    fig, (auc_ax, loss_ax) = _figure(9, 3.2, 2)
    epochs = set()
    for family in FAMILIES:
        history = json.loads((models[family] / "metrics.json").read_text())["history"]
        x = [h["epoch"] for h in history]
        epochs.update(x)
        style = {"color": COLOURS[family], "marker": "o", "label": family.upper()}
        auc_ax.plot(x, [h["valid_mean_auc"] for h in history], **style)
        loss_ax.plot(x, [h["train"]["loss"] for h in history], **style)
    auc_ax.set(title="validation mean AUC", xlabel="epoch")
    loss_ax.set(title="train loss (each model's own objective)", xlabel="epoch")
    for ax in (auc_ax, loss_ax):
        ax.set_xticks(sorted(epochs))  # whole epochs (early stopping may end one model sooner)
        ax.legend()
    fig.savefig(path, dpi=100)


def _first_test_impressions(dataset: Path, home: str, prep) -> tuple:
    """Each test (user, day)'s first impression, at most ``MAX_PROJECTED`` of them: their encoded
    rows, rule-based and latent stages. The rows, their order and their encoding are those of
    ``world_for_training_set`` (same sort, split, user codes and draw), but only the picked rows
    are encoded -- not the whole training set (2.8 s on the small world's 450k rows)."""
    import numpy as np
    import pyarrow.parquet as pq

    from stan_model.data import raw_store
    from stan_model.data.dataset import DatasetConfig
    from stan_model.data.sample_stages import latent_stage_matrix
    from stan_model.data.table_dataset import split_rows, table_days, time_order
    from stan_model.data.tensors import vocabulary_codes
    from stan_model.schema import read_table

    table = pq.read_table(dataset)
    tasks = tuple(c.removeprefix("label_") for c in table.column_names if c.startswith("label_"))
    if prep.spec.tasks != tasks:
        raise ValueError(f"model tasks {prep.spec.tasks} differ from the set's {tasks}")
    order = time_order(table)  # world_from_table's row order, without taking every column
    days, day = table_days(table.select(["event_timestamp"]).take(order))
    rows = split_rows(day, len(days), DatasetConfig())["test"]
    user_ids = table["user_id"].to_numpy().astype(np.int64)[order]
    user = vocabulary_codes(user_ids, prep.vocab["user_id"]).astype(np.int64)
    _, first = np.unique(user[rows] * len(days) + day[rows], return_index=True)
    picked = rows[np.sort(first)]  # each (user, day)'s first impression
    if len(picked) > MAX_PROJECTED:
        picked = np.sort(np.random.default_rng(0).choice(picked, MAX_PROJECTED, replace=False))
    subset = table.take(order[picked])
    users = read_table(raw_store.users_path(Path(home)), "users")
    items = read_table(raw_store.items_path(Path(home)), "items")
    bundle = prep.encode(subset, users, items)
    rule = subset["user_lifecycle__lifecycle_stage_id"].to_numpy().astype(np.int8)
    matrix = latent_stage_matrix(Path(home), days, prep.vocab["user_id"])
    latent = None if matrix is None else matrix[user[picked], day[picked]]
    return bundle, rule, latent


def _plot_user_states(run_dir: Path, model_dir: Path, home: str, path: Path) -> str:
    """PCA of STAN's state-aware embeddings on test (user, day) rows, coloured by stage."""
    import numpy as np

    from stan_model.data.table_dataset import Preprocessor
    from stan_model.io import load_model
    from stan_model.schema import LIFECYCLE_STAGES, TRUTH_STAGES
    from stan_model.training.evaluation import user_representations

    loaded = load_model(model_dir)
    dataset = run_dir / "build-training-set" / "training_set"
    bundle, rule_stage, latent_stage = _first_test_impressions(
        dataset, home, Preprocessor.load(model_dir)
    )
    reps = user_representations(loaded.model, bundle)
    centred = reps - reps.mean(axis=0)  # (N, K * H)
    _, sing, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T  # (N, 2)
    share = sing[:2] ** 2 / max(float((sing**2).sum()), 1e-12)
    if latent_stage is not None:
        kind, stage, names = "latent (simulator truth)", latent_stage, TRUTH_STAGES
    else:
        kind, stage, names = "rule-based", rule_stage, LIFECYCLE_STAGES
    fig, (ax,) = _figure(6.4, 5.0)
    for code, name in [(-1, "unscored"), *enumerate(names)]:
        mask = stage == code
        if mask.any():
            ax.scatter(*xy[mask].T, s=8, alpha=0.7, label=f"{name} ({mask.sum()})")
    ax.set(xlabel=f"PC1 ({share[0]:.0%})", ylabel=f"PC2 ({share[1]:.0%})")
    ax.set_title(f"STAN user states, {len(bundle)} test (user, day) rows")
    ax.legend(title=f"{kind} stage", fontsize=8)
    fig.savefig(path, dpi=100)
    return kind


# -- the page --------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1120px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; } th[colspan] { text-align: center; }
td:first-child, th:first-child { text-align: left; }
.promote { color: #fff; background: #2e7d32; padding: 0.1em 0.5em; border-radius: 4px; }
.reject { color: #fff; background: #c62828; padding: 0.1em 0.5em; border-radius: 4px; }
.pass { color: #2e7d32; } .fail { color: #c62828; font-weight: 600; }
img { max-width: 100%; border: 1px solid #eee; } code { font-size: 90%; }
"""


_METRIC_COLUMNS = ["STAN", "PLE", "lift", "lift interval"]


def _fmt(value, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def _table(header: list[str], rows: list[list], group_row: str = "") -> str:
    esc = html.escape
    head = group_row + "<tr>" + "".join(f"<th>{esc(str(h))}</th>" for h in header) + "</tr>"
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def _metrics_rows(summary: dict) -> list[list]:
    from stan_model.metrics import rela_impr

    rows = []
    for task in summary["tasks"]:
        stan, ple = summary["metrics"]["stan"][task], summary["metrics"]["ple"][task]
        ci = summary["gate"]["intervals"].get(task, {})
        row = [task]
        for metric in ("auc", "ndcg@5"):
            a, b = stan[metric], ple[metric]
            lift = None if a is None or b is None else a - b
            low, high = ci.get(metric, (None, None))
            interval = f"[{_fmt(low, '+.4f')}, {_fmt(high, '+.4f')}]"
            row += [_fmt(a), _fmt(b), _fmt(lift, "+.4f"), interval]
            if metric == "auc":
                relative = None if lift is None or b == 0.5 else rela_impr(a, b)
                row.append(_fmt(relative, "+.2f") + " %")
        rows.append(row)
    return rows


def _figure_html(src: str, alt: str, caption: str) -> str:
    esc = html.escape
    return (
        f'<figure><img src="{esc(quote(src))}" alt="{esc(alt)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def write_report(
    summary: dict,
    run_dir: Path,
    out_dir: Path,
    data_docs_index: Path | None,
    *,
    home: str | Path | None = None,
) -> Path:
    """Write ``out_dir/report.html`` and its PNGs for the run ``summary`` describes.

    ``home``: the data home the training set came from (the user-state projection rebuilds its
    test rows); default: the summary's ``home``, the one the models were trained from.
    """
    esc = html.escape
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    home = home or summary.get("home")
    if not home:
        raise ValueError("write_report: no data home; pass home= (the pipeline's home parameter)")
    out_dir.mkdir(parents=True, exist_ok=True)
    models = _by_family(run_dir, "train-model", "model", "model.json")
    _plot_stage_auc(summary, out_dir / "stage_auc.png")
    _plot_training(models, out_dir / "training_curves.png")
    kind = _plot_user_states(run_dir, models["stan"], str(home), out_dir / "user_states.png")

    gate = summary["gate"]
    decision = gate["decision"]
    reasons = "".join(
        f'<li class="{"fail" if r.startswith("FAIL") else "pass"}">{esc(r)}</li>'
        for r in gate["reasons"]
    )
    override = (
        f"<p>Overridden: {esc(str(gate.get('override_reason')))}</p>" if gate["overridden"] else ""
    )
    data = summary["data"]
    splits = [
        [s, data[s]["rows"], data[s]["users"], data[s]["first_day"], data[s]["last_day"]]
        for s in ("train", "valid", "test")
    ]
    validation = summary["validation"]
    failed = "".join(
        f"<li>{esc(f if isinstance(f, str) else json.dumps(f))}</li>"
        for f in validation.get("failed_expectations", [])
    )
    probe = [
        [f.upper(), *(_fmt((p or {}).get(k), ".3f") for k in ("accuracy", "balanced_accuracy"))]
        for f, p in summary["probe"].items()
    ]
    all_models = [
        [f.upper(), *(_fmt(m[t][k]) for k in ("auc", "ndcg@5") for t in summary["tasks"])]
        for f, m in summary["metrics"].items()
    ]
    all_header = ["model", *(f"{k} {t}" for k in ("AUC", "NDCG@5") for t in summary["tasks"])]
    model = [
        ["registered STAN version", summary["model_version"]],
        ["model URI", summary["model_uri"]],
        ["champion URI", summary["champion_uri"] or "none"],
    ]
    timings = [[stage, _fmt(seconds, ".1f")] for stage, seconds in summary["timings_s"].items()]
    docs = ""
    if data_docs_index is not None:
        link = os.path.relpath(Path(data_docs_index).resolve(), out_dir.resolve())
        docs = f'<p><a href="{esc(quote(link))}">Great Expectations Data Docs</a></p>'
    metric_groups = '<tr><th></th><th colspan="5">AUC</th><th colspan="4">NDCG@5</th></tr>'
    header = ["task", *_METRIC_COLUMNS, "RelaImpr", *_METRIC_COLUMNS]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>stanflow run {esc(summary["run_id"])}</title><style>{_CSS}</style></head>
<body>
<h1>Training run {esc(summary["run_id"])}</h1>
<p>Logical date {esc(summary["logical_date"])} &middot; gate:
<span class="{esc(decision)}">{esc(decision.upper())}</span></p>
<h2>Test metrics: STAN vs PLE</h2>
{_table(header, _metrics_rows(summary), metric_groups)}
<p>Lift = STAN &minus; PLE; intervals: paired user bootstrap (gate policy's confidence).</p>
<h2>Every model of the run</h2>
{_table(all_header, all_models)}
<p>Extra baselines (the run's <code>extra_models</code>) are trained on the same data with STAN's
parameter budget and reported; only STAN vs PLE is gated.</p>
<h2>Gate decision: {esc(decision)}</h2>{override}
<ul>{reasons}</ul>
<h2>AUC by lifecycle stage</h2>
{_figure_html("stage_auc.png", "AUC by rule-based stage", "Test AUC per rule-based stage.")}
<h2>Training</h2>
{_figure_html("training_curves.png", "training curves", "Per epoch, from metrics.json.")}
<h2>User states</h2>
{_figure_html("user_states.png", "PCA of user states", f"Coloured by {kind} stage.")}
<p>Linear probe of the latent stage from each model's user representation:</p>
{_table(["model", "accuracy", "balanced accuracy"], probe)}
<h2>Data</h2>
{_table(["split", "rows", "users", "first day", "last day"], splits)}
<p>Training-set validation: {esc("passed" if validation.get("success") else "FAILED")}</p>
<ul>{failed}</ul>{docs}
<h2>Model</h2>
{_table(["", "location"], model)}
<h2>Timings</h2>
{_table(["stage", "seconds"], timings)}
</body></html>
"""
    path = out_dir / REPORT_FILE
    path.write_text(page, encoding="utf-8")
    return path
