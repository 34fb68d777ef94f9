"""Benchmark: where does lifecycle-aware learning pay? STAN − PLE test lift against world knobs.

DESIGN.md asks the quality benchmark to show *where* STAN's user-state branch helps, beside the
paper-shaped table. This sweeps two knobs of the simulated world, one at a time from the preset:

* ``heterogeneity`` h: every per-stage behaviour parameter (click / watch / order base rates
  and item drivers) becomes ``mean + h · (value − mean)`` over the four stages: h = 0 makes the
  stages behave alike (only activity and transitions differ), h = 1 is the preset, h > 1
  exaggerates how differently new, wandering, sticky and loyal users act;
* ``initial_user_share`` s: the share of users who signed up before the first day; a lower
  share means more users with short histories (new users), where a lifecycle model should help.

Each world is simulated into a temporary home, its dataset built once, and PLE (widened to
STAN's parameter count, as everywhere) and STAN (default, the paper as written) trained on it
with the same trainer, seed, epochs and threads. One seed per world: read lifts below ~0.003
AUC as noise (bench/results/quality.md measures the seed spread).

    python bench/stan_lift.py --out bench/results/stan_lift.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
from machine import machine  # bench/machine.py (a script's own folder is on sys.path)

from stan_model.data.dataset import build_dataset
from stan_model.data.simulator import write_world
from stan_model.data.world_config import WorldConfig
from stan_model.models import build_model, config_class
from stan_model.training import run_experiment

log = logging.getLogger("bench.stan_lift")
STAGES = ("new", "wander", "stick", "loyal")


def with_heterogeneity(cfg: WorldConfig, h: float) -> WorldConfig:
    """``cfg`` with every per-stage behaviour parameter pulled to (h < 1) or pushed from (h > 1)
    its mean over the stages."""
    if h == 1.0:
        return cfg  # exactly the preset (no rounding), so both sweeps share its run
    behaviour = cfg.behaviour.model_dump()
    for name, value in behaviour.items():
        if isinstance(value, dict) and set(value) == set(STAGES):
            mean = sum(value.values()) / len(STAGES)
            behaviour[name] = {s: mean + h * (v - mean) for s, v in value.items()}
    return cfg.with_overrides(behaviour=behaviour)


def train_pair(home: Path, seed: int, epochs: int, threads: int) -> dict:
    """PLE (STAN's parameter budget) and STAN on the world under ``home``: test metrics."""
    data = build_dataset(home)
    stan_params = build_model("stan", data.spec, config_class("stan")()).num_parameters()
    overrides = {"epochs": epochs, "threads": threads, "progress": False}
    out = {"rows": {k: len(v) for k, v in data.splits.items()}}
    for family in ("ple", "stan"):
        started = time.perf_counter()
        summary = run_experiment(
            home,
            family,
            seed=seed,
            data=data,
            train_overrides=overrides,
            budget_of=stan_params if family != "stan" else None,
            probe=False,
        )
        test = summary["test"]
        out[family] = {
            "auc": test["auc"],
            "ndcg@5": test["ndcg@5"],
            "auc_by_latent_stage": test.get("auc_by_latent_stage"),
            "num_parameters": summary["num_parameters"],
            "epochs_run": summary["epochs_run"],
            "seconds": round(time.perf_counter() - started, 1),
        }
    out["lift"] = {
        metric: {t: out["stan"][metric][t] - out["ple"][metric][t] for t in out["stan"][metric]}
        for metric in ("auc", "ndcg@5")
    }
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for ax, (knob, runs) in zip(axes, result["sweeps"].items(), strict=True):
        xs = [r["value"] for r in runs]
        for task in runs[0]["lift"]["auc"]:
            ax.plot(xs, [r["lift"]["auc"][task] for r in runs], marker="o", label=task)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel(knob)
        ax.set_ylabel("test AUC: STAN − PLE")
        ax.legend(frameon=False)
    fig.suptitle(f"STAN − PLE lift against world knobs ({result['preset']}, seed {result['seed']})")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", help="the world to vary (default: small)")
    parser.add_argument("--n-users", type=int, default=2000, help="users per world (default 2000)")
    parser.add_argument(
        "--heterogeneity", type=float, nargs="+", default=[0.0, 1.0, 2.0], help="values of h"
    )
    parser.add_argument(
        "--initial-user-share", type=float, nargs="+", default=[0.3, 0.7], help="values of s"
    )
    parser.add_argument("--epochs", type=int, default=3, help="most epochs per model (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/stan_lift.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)

    base = WorldConfig.preset(args.preset).with_overrides(n_users=args.n_users)
    worlds = [("heterogeneity", h, with_heterogeneity(base, h)) for h in args.heterogeneity]
    worlds += [
        ("initial_user_share", s, base.with_overrides(initial_user_share=s))
        for s in args.initial_user_share
    ]
    result = {
        "preset": args.preset,
        "n_users": args.n_users,
        "seed": args.seed,
        "epochs": args.epochs,
        "threads": args.threads,
        "machine": machine(),
        "baseline_world": {"heterogeneity": 1.0, "initial_user_share": base.initial_user_share},
        "sweeps": {},
    }
    started = time.perf_counter()
    done: dict[str, dict] = {}  # the preset world appears in both sweeps: train it once
    for i, (knob, value, cfg) in enumerate(worlds, 1):
        log.info("world %d/%d: %s = %s", i, len(worlds), knob, value)
        key = cfg.model_dump_json()
        if key not in done:
            with tempfile.TemporaryDirectory() as tmp:
                report = write_world(cfg, Path(tmp))
                done[key] = {"impressions": report.events}
                done[key].update(train_pair(Path(tmp), args.seed, args.epochs, args.threads))
        run = {"value": value, **done[key]}
        result["sweeps"].setdefault(knob, []).append(run)
        lift = run["lift"]["auc"]
        log.info("  AUC lift %s", {t: round(v, 4) for t, v in lift.items()})
    result["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    plot(result, args.out.with_suffix(".png"))
    log.info("wrote %s and %s", args.out, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
