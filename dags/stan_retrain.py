"""
### stan_retrain

Retrains STAN when the day's lifecycle features land (the `stanflow-lifecycle-features` asset),
or by hand with parameters: the Kubeflow pipeline builds the training set from Feast point in
time, validates it, trains PLE and STAN on identical data and budget, evaluates both, gates, and
promotes STAN only if it beats PLE (or on a forced promotion with a written reason). The run
summary and HTML report land in `$STANFLOW_HOME/runs/<run_id>/`.

Pipeline mode: the KFP local runner in this worker by default; a Kubeflow Pipelines cluster when
`kfp_mode` is `cluster` (host from `STANFLOW_KFP_HOST`), where `trainjob_workers` > 0 trains each
model as a distributed Kubeflow PyTorchJob.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Asset, Param, dag, get_current_context, task

FEATURES = Asset("stanflow-lifecycle-features")


@dag(
    dag_id="stan_retrain",
    schedule=[FEATURES],
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["stanflow", "training", "kubeflow"],
    default_args={"owner": "ml-platform", "retries": 2, "retry_delay": dt.timedelta(minutes=5)},
    params={
        "date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Last day of the training window (default: the run's day).",
        ),
        "window_days": Param(
            14,
            type="integer",
            minimum=5,  # components.runner.MIN_WINDOW_DAYS
            maximum=90,
            description="Days of impressions in the training set.",
        ),
        "epochs": Param(3, type="integer", minimum=1, maximum=50),
        "seed": Param(0, type="integer", minimum=0),
        "force_promote": Param(
            False, type="boolean", description="Promote even if the gate rejects (needs a reason)."
        ),
        "override_reason": Param("", type="string", maxLength=500),
        "kfp_mode": Param("local", enum=["local", "cluster"]),
        "trainjob_workers": Param(
            0,
            type="integer",
            minimum=0,
            maximum=64,
            description="Cluster mode: train each model as a Kubeflow PyTorchJob on a master and "
            "this many worker pods (needs STANFLOW_HOME_PVC). 0: inside the pipeline component.",
        ),
        "models": Param(
            ["stan", "ple"],
            type="array",
            items={"enum": ["stan", "ple", "mmoe", "mlp_single", "mlp_shared"]},
            uniqueItems=True,
            allOf=[{"contains": {"const": "stan"}}, {"contains": {"const": "ple"}}],
            description="Models to train: STAN and PLE always (the gate compares them); "
            "mmoe, mlp_single, mlp_shared are extra baselines, reported and not gated.",
        ),
    },
)
def stan_retrain():
    @task
    def resolve_run() -> dict:
        """The data day and the checked parameters of this run."""
        from components.runner import PipelineParams
        from stan_model.data import raw_store
        from stanflow.settings import get_settings

        ctx = get_current_context()
        params, settings = ctx["params"], get_settings()
        if params["date"]:
            day = params["date"]
        elif ctx.get("logical_date") is not None:
            day = ctx["logical_date"].date().isoformat()
        else:  # asset-triggered runs have no logical date: the latest day with raw data
            day = raw_store.partition_days(settings.home)[-1].isoformat()
        pipeline = PipelineParams(  # raises ValueError naming the bad parameter
            home=str(settings.home),
            logical_date=day,
            window_days=params["window_days"],
            epochs=params["epochs"],
            seed=params["seed"],
            registry_uri=settings.resolved_registry_uri,
            force_promote=params["force_promote"],
            override_reason=params["override_reason"],
            extra_models=[m for m in params["models"] if m not in ("stan", "ple")],
            trainjob_workers=params["trainjob_workers"],
        )
        if pipeline.trainjob_workers and params["kfp_mode"] != "cluster":
            raise ValueError(
                "trainjob_workers > 0 launches Kubeflow PyTorchJobs: set kfp_mode=cluster"
            )
        return {"params": pipeline.__dict__, "mode": params["kfp_mode"], "run_id": ctx["run_id"]}

    @task
    def run_training_pipeline(run: dict) -> dict:
        """Train, evaluate, gate and promote (KFP local runner, or submit to the cluster)."""
        from components.runner import PipelineParams, run_local, submit_and_wait
        from stanflow.settings import get_settings

        params = PipelineParams(**run["params"])
        if run["mode"] == "cluster":
            return submit_and_wait(params, get_settings().kfp_host)
        result = run_local(params)
        return {
            "run_dir": result["run_dir"],
            "decision": result["decision"]["decision"],
            "timings_s": result["timings_s"],  # the missing feature partitions it built first
        }

    @task
    def report(run: dict, result: dict) -> str:
        """`runs/<run_id>/summary.json` and `report.html`."""
        from components.daily import write_run_report

        return str(write_run_report(run, result))

    run = resolve_run()
    report(run, run_training_pipeline(run))


stan_retrain()
