"""Benchmark: test quality of every model on one simulated world, several seeds (issue #3).

Simulates the preset world into a temporary home, builds the dataset ONCE, then trains and
evaluates every model with ``stan_model.training.run_experiment`` on that same dataset, for every
seed: identical features, split, trainer settings (Adam 1e-3, batch 2048, early stopping on the
validation days, at most ``--epochs`` epochs) and threads. Models:

  mlp_single, mlp_shared, mmoe, ple   the baselines
  stan_no_beta                        STAN with ``no_beta=True`` (the paper's "STAN w/o Beta")
  stan                                STAN, default config (the paper as written)
  torch_rechub_ple                    peer check: torch-rechub 0.9.0's PLE with our PLE's
                                      config, trained by our trainer (bench/rechub_peer.py)

Parameter budget: a baseline whose default config has fewer parameters than default STAN is
widened (``budget_of``, i.e. ``match_budget``: its ``widened`` width knob) to STAN's count; a
baseline that already has at least STAN's count keeps its default -- the benchmark never narrows
(weakens) a baseline. The peer gets exactly our PLE's final config.

Reports per task AUC and NDCG@5 (mean, sample std over seeds, per seed), RelaImpr against
mlp_single (the paper's base), the latent-stage probe's balanced accuracy, parameter counts,
training samples/s, and the issue's acceptance checks; writes ``--out`` (JSON), the same name
with ``.md`` (a paper-shaped table) and ``.png`` (AUC per task and model). Results are saved
after every run, and a rerun with the same settings reuses the runs already in ``--out``.

    python bench/quality.py --preset small --seeds 0 1 2 --out bench/results/quality.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine  # bench/machine.py (a script's own folder is on sys.path)
from rechub_peer import FAMILY as PEER
from rechub_peer import FAMILY_NO_BN as PEER_NO_BN
from rechub_peer import RechubPLEConfig, registered

from stan_model.data.dataset import build_dataset
from stan_model.data.simulator import write_world
from stan_model.data.world_config import WorldConfig
from stan_model.io import config_to_dict
from stan_model.metrics import rela_impr
from stan_model.models import build_model, config_class
from stan_model.training import TrainConfig, match_budget, run_experiment

log = logging.getLogger("bench.quality")

MODELS = ("mlp_single", "mlp_shared", "mmoe", "ple", "stan_no_beta", "stan")
ALL = (*MODELS, PEER)  # the default set
CHOICES = (*ALL, PEER_NO_BN)  # and the BatchNorm diagnostic of the peer, on request
FAMILY = {"stan_no_beta": "stan"}  # benchmark key -> model family (default: the key)
OVERRIDES = {"stan_no_beta": {"no_beta": True}}
BASE = "mlp_single"  # RelaImpr's base, as in the paper
LABEL = {
    "mlp_single": "MLP-Single",
    "mlp_shared": "MLP-Shared",
    "mmoe": "MMoE",
    "ple": "PLE",
    "stan_no_beta": "STAN w/o Beta",
    "stan": "STAN",
    PEER: "PLE (torch-rechub 0.9.0)",
    PEER_NO_BN: "PLE (torch-rechub, BatchNorm removed: diagnostic)",
}
SHORT = {**LABEL, PEER: "rechub PLE", PEER_NO_BN: "rechub PLE\nw/o BatchNorm"}  # plot labels
PEER_AUC_TOL = 0.003  # acceptance 2: |our PLE - rechub PLE| test AUC per task


def stat(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "per_seed": [float(v) for v in arr]}


def plan_configs(spec) -> tuple[int, dict[str, dict]]:
    """STAN's parameter count and, per benchmark key, the model config it trains with."""
    stan_params = build_model("stan", spec).num_parameters()
    plans: dict[str, dict] = {}
    for key in MODELS:
        family = FAMILY.get(key, key)
        config = config_class(family)()
        default_params = build_model(family, spec, config).num_parameters()
        budget = None
        if family != "stan" and default_params < stan_params:
            budget = stan_params  # widen to STAN's budget
            config = match_budget(family, spec, config, stan_params)
        plans[key] = {
            "family": family,
            "overrides": OVERRIDES.get(key, {}),
            "budget_of": budget,
            "default_parameters": default_params,
            "config": config,
        }
    # The peer: exactly our PLE's final config (widths included), no budget matching of its own.
    peer_cfg = RechubPLEConfig.from_ple(plans["ple"]["config"])
    plans[PEER] = {
        "family": PEER,
        "overrides": {
            "expert_dims": list(peer_cfg.expert_dims),
            "tower": list(peer_cfg.tower),
            "embed_dim": peer_cfg.embed_dim,
            "n_levels": peer_cfg.n_levels,
            "task_experts": peer_cfg.task_experts,
            "shared_experts": peer_cfg.shared_experts,
            "dropout": peer_cfg.dropout,
        },
        "budget_of": None,
        "default_parameters": None,
        "config": peer_cfg,
    }
    plans[PEER_NO_BN] = {**plans[PEER], "family": PEER_NO_BN}
    return stan_params, plans


def run_one(home, data, key: str, plan: dict, seed: int, train_overrides: dict) -> dict:
    t0 = time.perf_counter()
    summary = run_experiment(
        home,
        plan["family"],
        seed=seed,
        overrides=plan["overrides"],
        train_overrides=train_overrides,
        data=data,
        budget_of=plan["budget_of"],
    )
    test = summary["test"]
    return {
        "model": key,
        "seed": seed,
        "num_parameters": summary["num_parameters"],
        "config": summary["config"],
        "best_epoch": summary["best_epoch"],
        "epochs_run": summary["epochs_run"],
        "best_valid_mean_auc": summary["best_valid_mean_auc"],
        "samples_per_s": summary["samples_per_s"],
        "wall_s": round(time.perf_counter() - t0, 1),
        "test_auc": test["auc"],
        "test_ndcg@5": test["ndcg@5"],
        "test_logloss": test["logloss"],
        "probe_balanced_accuracy": test.get("probe", {}).get("balanced_accuracy", float("nan")),
        "auc_by_latent_stage": test.get("auc_by_latent_stage"),
    }


def aggregate(runs: list[dict], tasks: tuple[str, ...], seeds: list[int]) -> dict:
    by = {(r["model"], r["seed"]): r for r in runs}
    done = [k for k in CHOICES if all((k, s) in by for s in seeds)]
    table: dict[str, dict] = {}
    for key in done:
        rows = [by[(key, s)] for s in seeds]
        table[key] = {
            t: {
                "auc": stat([r["test_auc"][t] for r in rows]),
                "ndcg@5": stat([r["test_ndcg@5"][t] for r in rows]),
            }
            for t in tasks
        }
    if BASE in table:
        for key in done:
            for t in tasks:
                model_auc, base_auc = table[key][t]["auc"], table[BASE][t]["auc"]
                table[key][t]["rela_impr_pct"] = {
                    "mean": rela_impr(model_auc["mean"], base_auc["mean"]),  # of the mean AUCs
                    "per_seed": [
                        rela_impr(m, b)
                        for m, b in zip(model_auc["per_seed"], base_auc["per_seed"], strict=True)
                    ],
                }
    extras = {
        "probe": {k: stat([by[(k, s)]["probe_balanced_accuracy"] for s in seeds]) for k in done},
        "parameters": {k: by[(k, seeds[0])]["num_parameters"] for k in done},
        "samples_per_s": {k: stat([by[(k, s)]["samples_per_s"] for s in seeds]) for k in done},
        "epochs_run": {k: [by[(k, s)]["epochs_run"] for s in seeds] for k in done},
        "best_epoch": {k: [by[(k, s)]["best_epoch"] for s in seeds] for k in done},
    }
    return {"table": table, **extras}


def acceptance(agg: dict, tasks: tuple[str, ...], seeds: list[int]) -> dict:
    table, out = agg["table"], {}
    if "stan" in table and "ple" in table:
        stan, ple = table["stan"], table["ple"]

        def verdict(pick) -> dict:
            auc_wins = {t: pick(stan[t]["auc"]) > pick(ple[t]["auc"]) for t in tasks}
            ndcg_wins = {t: pick(stan[t]["ndcg@5"]) > pick(ple[t]["ndcg@5"]) for t in tasks}
            return {
                "auc_wins": auc_wins,
                "ndcg@5_wins": ndcg_wins,
                "holds": all(auc_wins.values()) and sum(ndcg_wins.values()) >= 2,
            }

        per_seed = {str(s): verdict(lambda d, i=i: d["per_seed"][i]) for i, s in enumerate(seeds)}
        mean = verdict(lambda d: d["mean"])
        out["1_stan_beats_ple"] = {
            "rule": "STAN test AUC > PLE on every task (mean and every seed); NDCG@5 on >= 2 tasks",
            "mean": mean,
            "per_seed": per_seed,
            "holds": mean["holds"] and all(v["holds"] for v in per_seed.values()),
        }
    if "ple" in table and PEER in table:
        diff = {t: table["ple"][t]["auc"]["mean"] - table[PEER][t]["auc"]["mean"] for t in tasks}
        seed_diff = {
            t: [
                a - b
                for a, b in zip(
                    table["ple"][t]["auc"]["per_seed"],
                    table[PEER][t]["auc"]["per_seed"],
                    strict=True,
                )
            ]
            for t in tasks
        }
        out["2_ple_matches_rechub"] = {
            "rule": f"|our PLE - torch-rechub PLE| mean test AUC <= {PEER_AUC_TOL} on every task",
            "ours_minus_rechub": diff,
            "ours_minus_rechub_per_seed": seed_diff,
            "holds": all(abs(d) <= PEER_AUC_TOL for d in diff.values()),
        }
        if PEER_NO_BN in table:  # diagnostic, not part of the acceptance
            out["2_ple_matches_rechub"]["ours_minus_rechub_without_batchnorm"] = {
                t: table["ple"][t]["auc"]["mean"] - table[PEER_NO_BN][t]["auc"]["mean"]
                for t in tasks
            }
    probe = agg["probe"]
    if "stan" in probe and "ple" in probe:
        out["3_stan_probe_beats_ple"] = {
            "rule": "STAN's latent-stage probe balanced accuracy > PLE's (mean over seeds)",
            "stan": probe["stan"]["mean"],
            "ple": probe["ple"]["mean"],
            "holds": probe["stan"]["mean"] > probe["ple"]["mean"],
        }
    return out


def _fmt(d: dict, digits: int = 4) -> str:
    return f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"


def markdown(payload: dict) -> str:
    tasks, seeds = payload["tasks"], payload["seeds"]
    table = {**payload["models"], **payload["peer"]}
    w = payload["world"]
    s = payload["settings"]
    lines = [
        f"# Quality benchmark: `{w['preset']}` world, seeds {', '.join(map(str, seeds))}",
        "",
        f"World: {w['users']:,} users, {w['items']:,} items, {w['days']} days, "
        f"{w['impressions']:,} impressions (train {w['rows']['train']:,} / valid "
        f"{w['rows']['valid']:,} / test {w['rows']['test']:,} rows; test = last "
        f"{s['dataset']['test_days']} days). Trainer for every model: Adam lr {s['train']['lr']}, "
        f"batch {s['train']['batch_size']}, at most {s['train']['epochs']} epochs, early stopping "
        f"on the validation day's mean AUC (patience {s['train']['patience']}, best epoch kept), "
        f"{s['train']['threads']} torch thread. "
        f"Mean ± sample std over {len(seeds)} seeds; per-seed values in `quality.json`.",
        "",
    ]
    if s.get("epochs_note"):
        lines += [s["epochs_note"], ""]
    head = ["model", "params"]
    head += [f"AUC {t}" for t in tasks] + [f"NDCG@5 {t}" for t in tasks]
    head += [f"RelaImpr {t}" for t in tasks] + ["probe¹", "samples/s²", "epochs³"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in CHOICES:
        if key not in table:
            continue
        row = [LABEL[key], f"{payload['parameters'][key]:,}"]
        row += [_fmt(table[key][t]["auc"]) for t in tasks]
        row += [_fmt(table[key][t]["ndcg@5"], 3) for t in tasks]
        row += [
            f"{table[key][t]['rela_impr_pct']['mean']:+.2f} %"
            if "rela_impr_pct" in table[key][t]
            else "—"
            for t in tasks
        ]
        row += [
            _fmt(payload["probe_detail"][key], 3),
            f"{payload['samples_per_s'][key]['mean']:,.0f}",
            "/".join(map(str, payload["epochs_run"][key])),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        "¹ balanced accuracy of the linear probe reading the simulator's latent lifecycle stage "
        "from the model's user representation (test days; users split in half).  ",
        "² training rows per second (forward + backward + Adam), one torch thread, on a 2-core "
        "machine shared with other jobs: indicative only.  ",
        "³ epochs run per seed (early stopping); RelaImpr = ((AUC − 0.5)/(AUC_MLP-Single − 0.5) − "
        "1) × 100 % of the mean AUCs. NDCG@5: one list per (user, day), lists with a positive.",
        "",
        "Parameter budget: " + s["budget_policy"],
        "",
        "## Acceptance (issue #3)",
        "",
    ]
    acc = payload["acceptance"]
    if "1_stan_beats_ple" in acc:
        a1 = acc["1_stan_beats_ple"]

        def line(name: str, v: dict) -> str:
            auc = ", ".join(f"{t} {'✓' if ok else '✗'}" for t, ok in v["auc_wins"].items())
            nd = ", ".join(f"{t} {'✓' if ok else '✗'}" for t, ok in v["ndcg@5_wins"].items())
            return (
                f"- {name}: STAN > PLE in AUC on {auc}; in NDCG@5 on {nd} → "
                f"**{'holds' if v['holds'] else 'fails'}**"
            )

        lines.append(f"1. {a1['rule']}: **{'HOLDS' if a1['holds'] else 'DOES NOT HOLD'}**")
        lines.append(line("mean", a1["mean"]))
        lines += [line(f"seed {s_}", v) for s_, v in a1["per_seed"].items()]
    if "2_ple_matches_rechub" in acc:
        a2 = acc["2_ple_matches_rechub"]
        diffs = ", ".join(
            f"{t} {d:+.4f} (per seed "
            + " / ".join(f"{x:+.4f}" for x in a2["ours_minus_rechub_per_seed"][t])
            + ")"
            for t, d in a2["ours_minus_rechub"].items()
        )
        lines.append(
            f"2. {a2['rule']}: ours − rechub = {diffs} → "
            f"**{'HOLDS' if a2['holds'] else 'DOES NOT HOLD'}**"
        )
        if "ours_minus_rechub_without_batchnorm" in a2:
            nobn = a2["ours_minus_rechub_without_batchnorm"]
            lines.append(
                "   - diagnostic (not the acceptance): against rechub's PLE with its BatchNorm "
                "layers replaced by identities, ours − rechub = "
                + ", ".join(f"{t} {d:+.4f}" for t, d in nobn.items())
                + f" ({'all' if all(abs(d) <= PEER_AUC_TOL for d in nobn.values()) else 'not all'}"
                f" within {PEER_AUC_TOL})."
            )
    if "3_stan_probe_beats_ple" in acc:
        a3 = acc["3_stan_probe_beats_ple"]
        lines.append(
            f"3. {a3['rule']}: STAN {a3['stan']:.3f} vs PLE {a3['ple']:.3f} → "
            f"**{'HOLDS' if a3['holds'] else 'DOES NOT HOLD'}**"
        )
    lines += ["", "## Peer check: what could not be matched exactly", ""]
    lines += [f"- {n}" for n in payload["peer_notes"]]
    lines += [
        "",
        f"Wall time: {payload['runs_wall_s'] / 60:.1f} min of training and evaluation over all "
        f"{len(payload['runs'])} runs; this invocation {payload['wall_s'] / 60:.1f} min"
        + (
            f" (it reused {len(s['reused_runs'])} runs saved by an earlier one with the same "
            "settings)"
            if s.get("reused_runs")
            else ""
        )
        + f"; {payload['machine']['cores']} cores ({payload['machine']['cpu']}).",
        "",
    ]
    return "\n".join(lines)


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = payload["tasks"]
    table = {**payload["models"], **payload["peer"]}
    keys = [k for k in CHOICES if k in table]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4.2))
    for ax, t in zip(np.atleast_1d(axes), tasks, strict=True):
        means = [table[k][t]["auc"]["mean"] for k in keys]
        stds = [table[k][t]["auc"]["std"] for k in keys]
        ax.bar(range(len(keys)), means, yerr=stds, capsize=3, color="tab:blue")
        for i, k in enumerate(keys):
            ax.scatter([i] * len(payload["seeds"]), table[k][t]["auc"]["per_seed"], s=8, c="k")
        lo = min(min(table[k][t]["auc"]["per_seed"]) for k in keys)
        hi = max(max(table[k][t]["auc"]["per_seed"]) for k in keys)
        ax.set_ylim(lo - 0.3 * (hi - lo) - 1e-3, hi + 0.2 * (hi - lo) + 1e-3)
        ax.set_xticks(
            range(len(keys)),
            [SHORT[k] for k in keys],
            rotation=60,
            fontsize=7,
            ha="right",
        )
        ax.set_title(f"test AUC: {t}")
    fig.suptitle(f"{payload['world']['preset']} world, seeds {payload['seeds']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PEER_NOTES = [
    "BatchNorm: torch-rechub's `MLP` puts a `BatchNorm1d` after every linear layer of the "
    "experts, the towers and the gates (linear → BatchNorm → softmax); ours does the same "
    "(`batch_norm`, on by default for every model), with the same momentum and eps.",
    "Matched: the same tensors (one rechub `SparseFeature` per sparse field with our vocabulary "
    "size and embedding size, one `DenseFeature` per dense feature), levels, task-specific and "
    "shared expert counts, expert widths, tower widths, dropout, embedding initialisation "
    "N(0, 0.05) (rechub's default is N(0, 1e-4)), PyTorch's default linear initialisation (the "
    "same distribution as ours), task heads starting at the base rate's log-odds, our loss "
    "(sum of per-task BCE-with-logits; rechub's prediction layer is built as `regression`, the "
    "identity, so the net returns logits), and our trainer, seeds, optimizer, batch, epochs, "
    "early stopping and evaluation (it runs through `run_experiment`).",
    "Diagnostic (`--models torch_rechub_ple_no_bn`, not in the default set): the same rechub "
    "net with every `BatchNorm1d` swapped for the identity after construction; before our "
    "models had BatchNorm, it showed that BatchNorm was the whole of the peer gap.",
    "Layout: rechub runs each expert, gate and tower as its own module in Python loops, ours as "
    "stacked batched matmuls; this changes speed and the random draw order of the "
    "initialisation, not the architecture.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="small", help="world preset to simulate (small)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument(
        "--epochs",
        type=int,
        default=TrainConfig.epochs,
        help=f"max epochs for EVERY model; early stopping may end sooner ({TrainConfig.epochs})",
    )
    parser.add_argument(
        "--epochs-note",
        default="",
        help="a sentence recorded in the JSON and the .md, e.g. why --epochs was lowered",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 on shared CPUs)")
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(ALL),
        choices=list(CHOICES),
        help=f"models to train (default: all but {PEER_NO_BN}, a diagnostic of the peer)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/quality.json"))
    parser.add_argument(
        "--home", type=Path, help="world home to simulate into and keep (default: a temp dir)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="ignore runs already saved in --out (default: reuse)"
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp)
        cfg = WorldConfig.preset(args.preset)
        log.info("simulating the %s world into %s", args.preset, home)
        report = write_world(cfg, home)
        data = build_dataset(home)
        return _bench(args, cfg, report, home, data, t_start)


def _bench(args, cfg, report, home, data, t_start) -> int:
    from tqdm import tqdm

    tasks = data.spec.tasks
    seeds = list(args.seeds)
    keys = [k for k in CHOICES if k in args.models]
    train_overrides = {"epochs": args.epochs, "threads": args.threads, "progress": False}
    tcfg = dataclasses.asdict(TrainConfig(**train_overrides))
    settings = {
        "train": {k: v for k, v in tcfg.items() if k not in ("seed", "progress", "resume")},
        "dataset": dataclasses.asdict(data.config),
        "epochs_note": args.epochs_note,
    }
    world = {
        "preset": args.preset,
        "world_seed": cfg.seed,
        "users": cfg.n_users,
        "items": cfg.n_items,
        "days": cfg.n_days,
        "impressions": int(report.events),
        "rows": {k: int(len(v)) for k, v in data.splits.items()},
    }
    with registered():
        stan_params, plans = plan_configs(data.spec)
        settings["stan_parameters"] = stan_params
        settings["budget_policy"] = (
            f"default STAN has {stan_params:,} parameters; a baseline with fewer is widened to "
            "that count with `match_budget` (its `widened` width); one with at least as many "
            "keeps its default (never narrowed): "
            + "; ".join(
                f"{LABEL[k]} {'widened' if p['budget_of'] else 'default'} "
                f"{_width(p['config'])}"
                + (f" (default {p['default_parameters']:,} params)" if p["budget_of"] else "")
                for k, p in plans.items()
                if k in MODELS and p["family"] != "stan"
            )
            + f"; the peer uses our PLE's config ({_width(plans[PEER]['config'])})."
        )
        settings["configs"] = {k: config_to_dict(p["config"]) for k, p in plans.items()}
        runs = _previous_runs(args, world, settings)
        settings["reused_runs"] = [f"{r['model']} seed {r['seed']}" for r in runs]
        todo = [(s, k) for s in seeds for k in keys]
        bar = tqdm(todo, desc="quality runs", unit="run", file=sys.stderr)
        for seed, key in bar:
            if any(r["model"] == key and r["seed"] == seed for r in runs):
                continue
            bar.set_postfix_str(f"{key} seed {seed}")
            log.info("training %s, seed %d", key, seed)
            run = run_one(home, data, key, plans[key], seed, train_overrides)
            runs.append(run)
            log.info(
                "%s seed %d: test AUC %s; %d epochs; %.0f samples/s; %.0f s",
                key,
                seed,
                ", ".join(f"{t} {a:.4f}" for t, a in run["test_auc"].items()),
                run["epochs_run"],
                run["samples_per_s"],
                run["wall_s"],
            )
            _write(args, world, settings, seeds, tasks, runs, t_start, final=False)
    payload = _write(args, world, settings, seeds, tasks, runs, t_start, final=True)
    print(markdown(payload))
    return 0


def _width(config) -> str:
    for name in ("expert_dims", "hidden", "bottom"):
        if hasattr(config, name):
            return f"{name}={list(getattr(config, name))}"
    return ""


def _previous_runs(args, world: dict, settings: dict) -> list[dict]:
    """Runs saved in ``--out`` by an earlier invocation with the same world, trainer settings
    and model config (``--fresh`` ignores them)."""
    if args.fresh or not args.out.exists():
        return []
    try:
        old = json.loads(args.out.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    if old.get("world") != world or old.get("settings", {}).get("train") != settings["train"]:
        log.info("%s holds runs of another world or trainer setting: starting afresh", args.out)
        return []
    # A run is reused only when its model was built with the very config it would get now.
    new_configs = json.loads(json.dumps(settings["configs"]))
    old_configs = old.get("settings", {}).get("configs", {})
    runs = [
        r
        for r in old.get("runs", [])
        if r["model"] in args.models
        and r["model"] in new_configs
        and old_configs.get(r["model"]) == new_configs[r["model"]]
    ]
    log.info("reusing %d of the %d runs in %s", len(runs), len(old.get("runs", [])), args.out)
    return runs


def _write(args, world, settings, seeds, tasks, runs, t_start, final: bool) -> dict:
    agg = aggregate(runs, tasks, seeds)
    table = agg["table"]
    payload = {
        "benchmark": "quality",
        "complete": final,
        "machine": machine(),
        "world": world,
        "seeds": seeds,
        "tasks": list(tasks),
        "settings": settings,
        "models": {k: v for k, v in table.items() if k not in (PEER, PEER_NO_BN)},
        "peer": {k: table[k] for k in (PEER, PEER_NO_BN) if k in table},
        "probe": {k: v["mean"] for k, v in agg["probe"].items()},
        "probe_detail": agg["probe"],
        "parameters": agg["parameters"],
        "samples_per_s": agg["samples_per_s"],
        "epochs_run": agg["epochs_run"],
        "best_epoch": agg["best_epoch"],
        "acceptance": acceptance(agg, tasks, seeds),
        "peer_notes": PEER_NOTES,
        "wall_s": round(time.perf_counter() - t_start, 1),  # this invocation
        "runs_wall_s": round(sum(r["wall_s"] for r in runs), 1),  # every run, reused ones too
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2, default=_json_default)
    args.out.write_text(text + "\n")
    if final:
        args.out.with_suffix(".md").write_text(markdown(payload))
        if not args.no_plot and table:
            plot(payload, args.out.with_suffix(".png"))
        log.info("wrote %s, %s", args.out, args.out.with_suffix(".md"))
    return payload


def _json_default(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
