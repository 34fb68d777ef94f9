"""Run the pipeline: locally with the KFP local runner, or on a Kubeflow Pipelines cluster.

``run_local`` builds any missing feature partitions of the window first (the features DAG does
this in production), then runs every component in this environment with
``SubprocessRunner(use_venv=False)``, artifacts under ``<home>/pipeline_root``. ``submit`` sends
the compiled package to a cluster with ``kfp.Client``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

# Idle OpenMP threads sleep instead of spinning. On a small shared machine (2 cores, another
# process busy) spinning torch threads fight over the cores and training ran 8x slower here
# (2,000 instead of 17,000 samples/s); sleeping costs little on a quiet machine. The components
# inherit it from this process; an OMP_WAIT_POLICY already set wins.
OMP_WAIT_POLICY = "PASSIVE"
# Baselines a run may add beside PLE (reported, not gated); the families of stan_model.models.
EXTRA_MODELS = ("mmoe", "mlp_single", "mlp_shared")


# A training day + the model split's validation and test days (stan_model DatasetConfig's
# defaults: 1 and 3; tests/code/test_dags.py holds the two together).
MIN_WINDOW_DAYS = 5


@dataclasses.dataclass
class PipelineParams:
    """The pipeline's parameters (the same names as ``stan_training_pipeline``'s arguments)."""

    home: str
    logical_date: str
    window_days: int = 14
    epochs: int = 3
    seed: int = 0
    registry_uri: str = ""
    policy_path: str = ""
    force_promote: bool = False
    override_reason: str = ""
    extra_models: list[str] = dataclasses.field(default_factory=list)
    trainjob_workers: int = 0  # > 0: each model trains as a Kubeflow PyTorchJob (cluster only)

    def __post_init__(self) -> None:
        dt.date.fromisoformat(self.logical_date)  # raises a clear ValueError on a bad date
        if self.window_days < MIN_WINDOW_DAYS:
            raise ValueError(
                f"window_days must be at least {MIN_WINDOW_DAYS} (a training day, the validation "
                f"day and the 3 test days); got {self.window_days}"
            )
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1; got {self.epochs}")
        if self.force_promote and not self.override_reason.strip():
            raise ValueError("force_promote needs a written override_reason")
        unknown = sorted(set(self.extra_models) - set(EXTRA_MODELS))
        if unknown:
            raise ValueError(
                f"extra_models {unknown} unknown; choose from {', '.join(EXTRA_MODELS)} "
                "(STAN and PLE are always trained)"
            )
        self.extra_models = sorted(set(self.extra_models))
        if self.trainjob_workers < 0:
            raise ValueError(f"trainjob_workers must be 0 or more; got {self.trainjob_workers}")


def ensure_features(home: Path, logical_date: str, window_days: int) -> list[dt.date]:
    """Build the feature partitions the window needs that are missing; return the days built."""
    from components.steps import training_window
    from feature_repo import layout
    from feature_repo.build import build_features

    start, end = training_window(home, logical_date, window_days)
    built = []
    day = start - dt.timedelta(days=1)
    while day < end:
        if not all(layout.feature_partition(home, t, day).exists() for t in layout.FEATURE_TABLES):
            build_features(home, day)
            built.append(day)
        day += dt.timedelta(days=1)
    if built:
        log.info("built missing feature partitions: %s .. %s", built[0], built[-1])
    return built


def run_local(params: PipelineParams, pipeline_root: Path | None = None) -> dict:
    """Run the whole pipeline offline; return the gate's decision record, where things are, and
    the seconds spent building the window's missing feature partitions (``timings_s``)."""
    import os

    from kfp import local

    from components.pipeline import stan_training_pipeline

    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
    home = Path(params.home)
    started = time.perf_counter()
    ensure_features(home, params.logical_date, params.window_days)
    backfill_s = round(time.perf_counter() - started, 3)
    root = Path(pipeline_root or home / "pipeline_root")
    root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True
    )
    before = set(root.iterdir())
    # The local runner prints each task's logs; keep stdout for results (`--json`).
    with contextlib.redirect_stdout(sys.stderr):
        stan_training_pipeline(**dataclasses.asdict(params))
    run_dirs = sorted(set(root.iterdir()) - before)
    if len(run_dirs) != 1:
        raise RuntimeError(f"{root}: expected one new pipeline run folder, found {run_dirs}")
    run_dir = run_dirs[0]
    decision = json.loads((run_dir / "gate" / "decision").read_text())
    # Seconds spent here besides the components (which record their own): the run summary's.
    return {
        "run_dir": str(run_dir),
        "decision": decision,
        "timings_s": {"backfill_features": backfill_s},
    }


def submit(
    package: Path,
    host: str,
    params: PipelineParams,
    experiment: str = "stanflow",
    run_name: str | None = None,
) -> str:
    """Send the compiled ``package`` to the KFP API at ``host``; return the run id."""
    import kfp

    client = kfp.Client(host=host)
    run = client.create_run_from_pipeline_package(
        str(package),
        arguments=dataclasses.asdict(params),
        run_name=run_name or f"stan-retrain-{params.logical_date}",
        experiment_name=experiment,
    )
    return run.run_id


def submit_and_wait(params: PipelineParams, host: str | None, timeout_s: int = 6 * 3600) -> dict:
    """Submit to the cluster at ``host`` and wait for the run to finish; return its state."""
    import kfp

    from components.pipeline import PACKAGE_PATH

    if not host:
        raise ValueError("kfp_mode=cluster needs STANFLOW_KFP_HOST (the KFP API URL)")
    run_id = submit(PACKAGE_PATH, host, params)
    run = kfp.Client(host=host).wait_for_run_completion(run_id, timeout=timeout_s)
    return {"run_id": run_id, "state": str(run.state), "host": host}
