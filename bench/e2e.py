"""Benchmark: `make run` end to end, wall time by stage.

Runs the real daily cycle -- `make -s run` (or, with --via cli, the command the Makefile's
recipe runs: `.venv/bin/stanflow daily 2> $STANFLOW_HOME/run.log`) -- in a fresh temporary
STANFLOW_HOME, so the world is simulated first, exactly as on a first `make run`. The total
wall time is measured from outside (process start, imports, `airflow db migrate`, DAG parsing
and every task included) and split into the stages of the run's `summary.json` `timings_s`:

  simulate, features, validate, materialize, training_set, train_ple, train_stan, evaluate,
  gate_promote, report, and orchestration = total - the sum of those stages,

so the stages add up to the total (`features` includes the training window's missing feature
days that a first run builds before the pipeline). `orchestration` is split further into the
KFP local runner (its task time less the components' own seconds: a Python process per
component, imports, artifact bookkeeping, promote), the other Airflow tasks (resolve_run), and
what lies outside every task (process start, imports, db migrate, DAG parsing, dag-run
bookkeeping, the summary). The JSON states which `timings_s` keys make up each stage.

Targets: `make run` <= 10 minutes on 2 cores; orchestration overhead -- everything but
training and evaluation (train_ple + train_stan + evaluate) -- <= 25 % of the total.

Progress (the tasks and epochs as they start) is printed from the run's log, which is kept at
`<home>/run.log`. The temporary home is deleted at the end unless --keep; when the run fails,
its logs are copied to a `stanflow-e2e-failed-*` folder in the temp directory, the JSON says
where, and the exit status is 1. The environment is the caller's, less any STANFLOW_* and
AIRFLOW* variables (the run sees only STANFLOW_HOME and STANFLOW_PRESET); thread settings such
as OMP_NUM_THREADS pass through untouched and are recorded. The JSON is written on failure too.
Other work on the machine inflates every figure: run it on an idle machine (the load average
before and after the run is recorded, and a busy start is warned about).

    python bench/e2e.py                        # -> bench/results/e2e.json and e2e.png
    python bench/e2e.py --preset tiny --keep   # a quick check; keep the home to inspect
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from machine import machine  # bench/machine.py (a script's own folder is on sys.path)

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
TARGET_TOTAL_S = 600.0  # make run <= 10 minutes on 2 cores
TARGET_OVERHEAD_SHARE = 0.25  # everything but training and evaluation <= 25 % of the total
_WORK_TO_OVERHEAD = TARGET_OVERHEAD_SHARE / (1 - TARGET_OVERHEAD_SHARE)  # overhead allowed per s

FEATURES_DAG = "stan_lifecycle_features"
RETRAIN_DAG = "stan_retrain"
# The stages -> the `timings_s` keys of summary.json that make them up. The KFP
# component seconds (training_set, train_*, evaluate_*, gate) are measured inside each component
# (components/kfp_components.py); the `<dag>.<task>` ones are Airflow task-instance durations.
STAGE_KEYS = {
    "simulate": ["simulate"],
    "features": [
        f"{FEATURES_DAG}.check_raw_partition",
        f"{FEATURES_DAG}.build_features",
        "backfill_features",  # the training window's missing days, built before the pipeline
    ],
    "validate": [f"{FEATURES_DAG}.validate_features"],
    "materialize": [f"{FEATURES_DAG}.materialize"],
    "training_set": ["training_set"],
    "train_ple": ["train_ple"],
    "train_stan": ["train_stan"],
    "evaluate": ["evaluate_ple", "evaluate_stan"],
    "gate_promote": ["gate"],
    "report": [f"{RETRAIN_DAG}.report"],
}
# Stages that are the work itself; all the rest counts as orchestration overhead.
WORK_STAGES = ("train_ple", "train_stan", "evaluate")
PIPELINE_TASK = f"{RETRAIN_DAG}.run_training_pipeline"
# What run_training_pipeline's task time holds besides the KFP local runner's own work.
IN_PIPELINE_TASK = [
    "backfill_features",
    *STAGE_KEYS["training_set"],
    *STAGE_KEYS["train_ple"],
    *STAGE_KEYS["train_stan"],
    *STAGE_KEYS["evaluate"],
    *STAGE_KEYS["gate_promote"],
]
ORCHESTRATION_PARTS = {
    "kfp_local_runner": f"{PIPELINE_TASK} minus the seconds its components record and "
    "backfill_features: one Python process per component (interpreter start, imports), the KFP "
    "executor and artifact bookkeeping, the promote component",
    "airflow_other_tasks": f"{RETRAIN_DAG}.resolve_run",
    "outside_tasks": "total minus every Airflow task and the simulation: make, process start and "
    "imports, airflow db migrate, DAG parsing, dag.test() run bookkeeping, the printed summary",
}

NOTES = [
    "features: the first task's duration also holds part of dag.test()'s start of Airflow's "
    "in-process execution API (a few seconds), and build_features the first import of Feast "
    "in the process (materialize then finds it loaded)",
    "train_*: the component's own seconds -- loading the training set, training, and the "
    "valid/test scoring run_experiment does after the last epoch; evaluate: both models' "
    "evaluate components",
    "unmapped_timings_s: timings_s keys no stage takes (extra baselines; their seconds lie in "
    "orchestration.kfp_local_runner)",
]
PROGRESS = [  # (pattern in run.log, how to say it)
    (re.compile(r"\[DAG TEST\] starting task_id=(\w+)"), "task {0}"),
    (re.compile(r"Executing task .*?'([\w-]+)'"), "  pipeline component {0}"),
    (re.compile(r"epoch (\d+)/(\d+):"), "    epoch {0}/{1}"),
]


def say(started: float, text: str) -> None:
    print(f"[e2e {time.perf_counter() - started:6.0f} s] {text}", flush=True)


def _clean_env(home: Path, preset: str) -> tuple[dict[str, str], list[str]]:
    env, dropped = {}, []
    for key, value in os.environ.items():
        if key.startswith(("STANFLOW_", "AIRFLOW")):
            dropped.append(key)
        else:
            env[key] = value
    env.update({"STANFLOW_HOME": str(home), "STANFLOW_PRESET": preset})
    return env, sorted(dropped)


def _command(via: str, home: Path) -> tuple[list[str], Path | None]:
    """The command line, and the file its stderr goes to (None: the Makefile redirects it)."""
    if via == "make":
        return ["make", "-s", "run"], None
    return [str(BIN / "stanflow"), "daily"], home / "run.log"


def _check_setup(via: str) -> None:
    if not (BIN / "stanflow").exists():
        sys.exit(f"{BIN / 'stanflow'} missing: run `make setup` first")
    if via == "make":
        # `make run` depends on `setup`; a stale stamp would time a reinstall.
        up_to_date = subprocess.run(["make", "-q", "setup"], cwd=REPO, capture_output=True)
        if up_to_date.returncode != 0:
            sys.exit("`make setup` is not up to date (pyproject.toml changed): run it first")


class _Progress(threading.Thread):
    """Follows run.log and prints the tasks, components and epochs as they start."""

    def __init__(self, log: Path, started: float):
        super().__init__(daemon=True)
        self.log, self.started, self.stop = log, started, threading.Event()
        self.last: tuple | None = None

    def run(self) -> None:
        offset, pending = 0, ""
        while not self.stop.is_set():
            self.stop.wait(1.0)
            try:
                with open(self.log, "rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except OSError:
                continue
            offset += len(chunk)
            lines = (pending + chunk.decode("utf-8", "replace")).replace("\r", "\n").split("\n")
            pending = lines.pop()
            for line in lines:
                for pattern, text in PROGRESS:
                    m = pattern.search(line)
                    if m and (pattern, m.groups()) != self.last:
                        self.last = (pattern, m.groups())
                        say(self.started, text.format(*m.groups()))
                        break


def _stop(proc: subprocess.Popen, grace_s: float = 15.0) -> int:
    """End the run's whole process group: SIGTERM, then SIGKILL for whatever is left (Airflow's
    task runner may carry on after a SIGTERM; a component process may outlive its parent)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        rc = proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        rc = None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait() if rc is None else rc


def run_daily(via: str, home: Path, preset: str, timeout_s: float, quiet: bool) -> dict:
    """Run the daily cycle in ``home``; return how it went, timed from outside."""
    env, dropped = _clean_env(home, preset)
    cmd, stderr_file = _command(via, home)
    home.mkdir(parents=True)
    started = time.perf_counter()
    say(started, f"running `{' '.join(cmd)}` with STANFLOW_HOME={home} STANFLOW_PRESET={preset}")
    progress = _Progress(home / "run.log", started)
    if not quiet:
        progress.start()
    lines: list[str] = []
    status = "ok"
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(open(stderr_file, "wb")) if stderr_file else subprocess.DEVNULL
        stdout_log = stack.enter_context(open(home / "stdout.log", "w"))
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,  # its own process group: a timeout or Ctrl-C ends all of it
        )

        def pump() -> None:  # the run's stdout: echoed, kept, and saved beside run.log
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                stdout_log.write(line + "\n")
                stdout_log.flush()
                if not quiet:
                    say(started, f"| {line}")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            rc, status = _stop(proc), "timeout"
        except KeyboardInterrupt:
            _stop(proc)
            raise
        finally:
            total = time.perf_counter() - t0
            progress.stop.set()
            reader.join(timeout=5)
    if status == "ok" and rc != 0:
        status = "failed"
    say(started, f"finished: {status} (exit {rc}) in {total:.1f} s")
    return {
        "command": cmd,
        "cwd": str(REPO),
        "env_dropped": dropped,
        "status": status,
        "returncode": rc,
        "total_s": round(total, 3),
        "stdout": lines,
    }


def _sum(timings: dict, keys: list[str]) -> float:
    return sum(float(timings.get(k, 0.0)) for k in keys)


def attribute(total: float, timings: dict) -> dict:
    """Stages that add up to ``total``: the issue's list, then the orchestration remainder."""
    stages = {name: round(_sum(timings, keys), 3) for name, keys in STAGE_KEYS.items()}
    mapped = {k for keys in STAGE_KEYS.values() for k in keys}
    # resolve_run and run_training_pipeline (which holds the components) enter the breakdown.
    mapped |= {PIPELINE_TASK, f"{RETRAIN_DAG}.resolve_run"}
    unmapped = {k: v for k, v in timings.items() if k not in mapped}
    stages["orchestration"] = round(total - sum(stages.values()), 3)
    in_pipeline = _sum(timings, IN_PIPELINE_TASK)
    airflow_tasks = _sum(timings, [k for k in timings if k.startswith((FEATURES_DAG, RETRAIN_DAG))])
    parts = {
        "kfp_local_runner": round(float(timings.get(PIPELINE_TASK, 0.0)) - in_pipeline, 3),
        "airflow_other_tasks": round(float(timings.get(f"{RETRAIN_DAG}.resolve_run", 0.0)), 3),
    }
    # The pipeline task holds the components; everything else outside the tasks is left over.
    parts["outside_tasks"] = round(total - stages["simulate"] - airflow_tasks, 3)
    work = sum(stages[s] for s in WORK_STAGES)
    overhead = total - work
    return {
        "stages_s": stages,
        "orchestration_breakdown_s": parts,
        "unmapped_timings_s": unmapped,
        "work_s": round(work, 3),
        "overhead_s": round(overhead, 3),
        "overhead_share": round(overhead / total, 4) if total else None,
        "overhead_share_excluding_simulate": (
            round((overhead - stages["simulate"]) / (total - stages["simulate"]), 4)
            if total > stages["simulate"]
            else None
        ),
    }


def targets(total: float, att: dict, cores: int | None) -> dict:
    share = att["overhead_share"]
    work = att["work_s"]
    return {
        "total_wall": {
            "target_s": TARGET_TOTAL_S,
            "measured_s": round(total, 1),
            "meets_target": total <= TARGET_TOTAL_S,
            "missed_by_s": round(max(0.0, total - TARGET_TOTAL_S), 1),
            "missed_by_pct": round(max(0.0, total / TARGET_TOTAL_S - 1) * 100, 1),
            "note": "target is for 2 cores" + ("" if cores == 2 else f"; measured on {cores}"),
        },
        "overhead_share": {
            "target": TARGET_OVERHEAD_SHARE,
            "measured": share,
            "meets_target": share is not None and share <= TARGET_OVERHEAD_SHARE,
            "missed_by_points": round(max(0.0, (share or 0) - TARGET_OVERHEAD_SHARE) * 100, 1),
            # overhead O meets the target when O <= work * 0.25 / 0.75
            "excess_overhead_s": round(
                max(0.0, att["overhead_s"] - work * _WORK_TO_OVERHEAD),
                1,
            ),
            "definition": "(total - train_ple - train_stan - evaluate) / total",
        },
    }


def model_figures(summary: dict) -> dict:
    """Samples/s, epochs and rows of each trained model, from the pipeline's metrics.json."""
    out = {}
    run_dir = Path(summary.get("run_dir", ""))
    for metrics in sorted(run_dir.glob("train-model*/model/metrics.json")):
        m = json.loads(metrics.read_text())
        out[m["model"]] = {
            "samples_per_s": round(float(m["samples_per_s"]), 1),
            "epochs_run": m.get("epochs_run"),
            "epochs_max": (m.get("train_config") or {}).get("epochs"),
            "best_epoch": m.get("best_epoch"),
            "num_parameters": m.get("num_parameters"),
            "world_size": m.get("world_size"),
        }
    return out


def world_figures(home: Path, summary: dict) -> dict:
    world = json.loads((home / "raw" / "_world.json").read_text())
    data = summary.get("data", {})
    return {
        "impressions": world.get("n_events"),
        "users": world.get("n_users"),
        "items": world.get("n_items"),
        "days": f"{world.get('start_date')} .. {world.get('end_date')}",
        "training_set_rows": data.get("rows"),
        "rows": {k: data[k]["rows"] for k in ("train", "valid", "test") if k in data},
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = result["stages_s"]
    names = list(stages)
    seconds = [stages[n] for n in names]
    total = result["total_s"]
    colors = ["tab:blue" if n in WORK_STAGES else "tab:orange" for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(names) + 1.6))
    bars = ax.barh(names, seconds, color=colors)
    ax.invert_yaxis()
    for bar, s in zip(bars, seconds, strict=True):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {s:.1f} s ({s / total:.0%})",
            va="center",
            fontsize=8,
        )
    ax.set_xlim(0, max(seconds) * 1.3)
    ax.set_xlabel("seconds")
    share = result["overhead_share"]
    ax.set_title(
        f"make run ({result['preset']}): {total:.0f} s total; overhead {share:.0%} "
        f"(target <= {TARGET_OVERHEAD_SHARE:.0%})\nblue: training and evaluation; "
        "orange: everything else",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset",
        default="small",
        choices=["tiny", "small", "wechat"],
        help="world simulated into the fresh home (default: small, make run's)",
    )
    parser.add_argument(
        "--via",
        default="make",
        choices=["make", "cli"],
        help="make: `make -s run`; cli: `.venv/bin/stanflow daily 2> run.log`, "
        "the Makefile recipe's command (default: make)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "bench/results/e2e.json",
        help="result JSON; the chart goes beside it as .png (default: %(default)s)",
    )
    parser.add_argument(
        "--tmp-dir",
        type=Path,
        default=None,
        help="where the temporary home is made (default: the system temp dir)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds before the run is stopped (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args()

    _check_setup(args.via)
    mach = machine()
    load_before = os.getloadavg()
    if load_before[0] > 0.5 * (mach["cores"] or 1):
        print(
            f"[e2e] warning: load average {load_before[0]:.2f} on {mach['cores']} cores; "
            "the timings will be inflated",
            flush=True,
        )
    tmp = Path(tempfile.mkdtemp(prefix="stanflow-e2e-", dir=args.tmp_dir))
    home = tmp / "home"
    result: dict = {
        "benchmark": "e2e_make_run",
        "machine": mach,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git": _git(),
        "preset": args.preset,
        "threads_env": {
            k: os.environ[k]
            for k in sorted(os.environ)
            if k.startswith(("OMP_", "MKL_", "OPENBLAS_", "TORCH_"))
        },
        "load_average_before": [round(x, 2) for x in load_before],
    }
    ok = False
    try:
        run = run_daily(args.via, home, args.preset, args.timeout, args.quiet)
        result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        result.update({k: v for k, v in run.items() if k != "stdout"})
        summaries = sorted((home / "runs").glob("*/summary.json"))
        if run["status"] == "ok" and len(summaries) == 1:
            summary = json.loads(summaries[0].read_text())
            timings = summary["timings_s"]
            att = attribute(run["total_s"], timings)
            result.update(att)
            result["targets"] = targets(run["total_s"], att, mach["cores"])
            result["stage_mapping"] = {
                **STAGE_KEYS,
                "orchestration": "total - the sum of the stages above; split in "
                "orchestration_breakdown_s",
                **{f"orchestration.{k}": v for k, v in ORCHESTRATION_PARTS.items()},
                "notes": NOTES,
            }
            result["timings_s"] = timings
            result["models"] = model_figures(summary)
            result["world"] = world_figures(home, summary)
            result["gate_decision"] = summary["gate"]["decision"]
            ok = True
        elif run["status"] == "ok":
            result["status"] = "failed"
            result["error"] = f"expected one runs/*/summary.json, found {len(summaries)}"
        if not ok:
            result.setdefault("error", f"the run ended {run['status']} (exit {run['returncode']})")
            result["stdout_tail"] = run["stdout"][-30:]
    finally:
        if not ok and home.exists():
            logs = Path(tempfile.mkdtemp(prefix="stanflow-e2e-failed-", dir=args.tmp_dir))
            for name in ("run.log", "stdout.log"):
                if (home / name).exists():
                    shutil.copy2(home / name, logs / name)
            result["log"] = str(logs / "run.log")
            result["stdout_log"] = str(logs / "stdout.log")
        if args.keep:
            result["home"] = str(home)
            print(f"[e2e] kept the home: {home}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"[e2e] wrote {args.out}", flush=True)
    if not ok:
        print(f"[e2e] FAILED: {result.get('error')}; log: {result.get('log')}", flush=True)
        return 1
    png = args.out.with_suffix(".png")
    plot(result, png)
    print(f"[e2e] wrote {png}", flush=True)
    _print_table(result)
    return 0


def _print_table(result: dict) -> None:
    total = result["total_s"]
    print(f"\n{'stage':24s} {'seconds':>9s} {'share':>7s}")
    for name, s in result["stages_s"].items():
        print(f"{name:24s} {s:9.1f} {s / total:7.1%}")
        if name == "orchestration":
            for part, p in result["orchestration_breakdown_s"].items():
                print(f"  {part:22s} {p:9.1f} {p / total:7.1%}")
    print(f"{'total':24s} {total:9.1f}")
    for name, t in result["targets"].items():
        verdict = "meets" if t["meets_target"] else "MISSES"
        print(
            f"{name}: {verdict} target ({t.get('measured_s', t.get('measured'))} vs "
            f"{t.get('target_s', t.get('target'))})"
        )


def _git() -> dict:
    def git(*a: str) -> str:
        r = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


if __name__ == "__main__":
    sys.exit(main())
