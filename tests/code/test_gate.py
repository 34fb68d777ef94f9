"""The promotion gate: each way to fail is caught and named; a clear win is promoted."""

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from components.gate import GatePolicy, ModelMetrics, decide
from components.gate.bootstrap import paired_auc_lift, paired_mean_lift, weighted_auc

TASKS = ("ctr", "stay", "cvr")
POLICY = GatePolicy.default()


def metrics(auc=0.80, ndcg=0.50, stage_auc=None, **per_task):
    """Metrics with the same values on every task, some tasks overridden via per_task."""
    tasks = {t: {"auc": auc, "ndcg@5": ndcg} for t in TASKS}
    for task, values in per_task.items():
        tasks[task] = {**tasks[task], **values}
    stage_auc = stage_auc or {}
    by_stage = {
        s: {t: {"auc": stage_auc.get((s, t), tasks[t]["auc"])} for t in TASKS}
        for s in ("new", "wander", "stick", "loyal")
    }
    return ModelMetrics(tasks, by_stage, {s: 5_000 for s in by_stage})


PLE = metrics()


def failed_names(decision):
    return {c.name for c in decision.failed}


def test_promotes_when_stan_beats_ple_everywhere():
    d = decide(metrics(auc=0.81, ndcg=0.52), PLE, POLICY, champion=metrics(auc=0.805))
    assert d.decision == "promote", d.reasons
    assert not d.failed
    assert any(r.startswith("PASS margin auc") for r in d.reasons)


def test_rejects_a_task_below_the_margin():
    stan = metrics(auc=0.81, ndcg=0.52, cvr={"auc": 0.80})  # cvr AUC ties PLE: no strict win
    d = decide(stan, PLE, POLICY)
    assert d.decision == "reject"
    assert failed_names(d) == {"margin auc"}
    assert "2/3 tasks, need 3" in next(r for r in d.reasons if "margin auc" in r)


def test_rejects_a_seesaw():
    # NDCG wins on two tasks (enough) but collapses on the third.
    stan = metrics(auc=0.81, ndcg=0.52, stay={"ndcg@5": 0.40})
    d = decide(stan, PLE, POLICY)
    assert d.decision == "reject"
    assert failed_names(d) == {"seesaw ndcg@5 stay"}


def test_rejects_a_lifecycle_stage_regression():
    stan = metrics(auc=0.81, ndcg=0.52, stage_auc={("wander", "cvr"): 0.70})
    d = decide(stan, PLE, POLICY)
    assert d.decision == "reject"
    assert failed_names(d) == {"stage wander cvr"}


def test_small_stages_are_reported_but_not_gated():
    stan = metrics(auc=0.81, ndcg=0.52, stage_auc={("new", "ctr"): 0.60})
    stan.stage_samples["new"] = 10
    d = decide(stan, PLE, POLICY)
    assert d.decision == "promote"
    assert any("stage new ctr" in r and "not gated" in r for r in d.reasons)


def test_rejects_when_worse_than_the_champion():
    d = decide(metrics(auc=0.81, ndcg=0.52), PLE, POLICY, champion=metrics(auc=0.83))
    assert d.decision == "reject"
    assert failed_names(d) == {"champion ctr", "champion stay", "champion cvr"}


def test_every_check_is_listed_with_numbers():
    d = decide(metrics(auc=0.79, ndcg=0.40), PLE, POLICY, champion=metrics(auc=0.9))
    names = {c.name for c in d.checks}
    assert {
        "margin auc",
        "margin ndcg@5",
        "seesaw auc ctr",
        "stage loyal stay",
        "champion cvr",
    } <= names
    assert len(d.reasons) == len(d.checks)
    assert all(any(ch.isdigit() for ch in r) for r in d.reasons)


def test_override_needs_a_reason_and_is_recorded():
    with pytest.raises(ValueError, match="written override reason"):
        decide(metrics(auc=0.7), PLE, POLICY, force_promote=True, override_reason="  ")
    d = decide(metrics(auc=0.7), PLE, POLICY, force_promote=True, override_reason="hotfix #12")
    assert d.decision == "promote" and d.overridden
    assert d.failed  # the failed checks stay on record
    assert d.to_dict()["reasons"][-1].endswith("hotfix #12")


def test_ci_lower_bound_policy_needs_intervals_and_uses_them():
    strict = POLICY.model_copy(update={"use_ci_lower_bound": True})
    stan = metrics(auc=0.81, ndcg=0.52)
    with pytest.raises(ValueError, match="no interval"):
        decide(stan, PLE, strict)
    wide = {t: {"auc": (-0.002, 0.02), "ndcg@5": (0.001, 0.04)} for t in TASKS}
    d = decide(stan, PLE, strict, intervals=wide)
    assert d.decision == "reject" and failed_names(d) == {"margin auc"}
    tight = {t: {"auc": (0.004, 0.016), "ndcg@5": (0.001, 0.04)} for t in TASKS}
    assert decide(stan, PLE, strict, intervals=tight).decision == "promote"


def test_mismatched_tasks_are_an_error():
    other = ModelMetrics({"ctr": {"auc": 0.8, "ndcg@5": 0.5}})
    with pytest.raises(ValueError, match="differ"):
        decide(other, PLE, POLICY)


def test_policy_file_typo_is_refused(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"rules": {"auc": {"margn": 0.01}}}))
    with pytest.raises(ValueError, match="(?s)policy.yaml.*margn"):
        GatePolicy.from_yaml(path)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(20, 300))
def test_weighted_auc_matches_sklearn(seed, n):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(size=n), 1)  # rounding makes ties
    assert weighted_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    weights = rng.integers(0, 4, n).astype(float)
    weights[:2] = 1
    expected = roc_auc_score(labels, scores, sample_weight=weights)
    assert weighted_auc(labels, scores, weights) == pytest.approx(expected)


def test_paired_bootstrap_separates_a_real_lift_from_none():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 500, 20_000)
    labels = rng.integers(0, 2, 20_000)
    base = labels + rng.normal(0, 1.5, 20_000)
    better = labels + rng.normal(0, 1.0, 20_000)
    real = paired_auc_lift(users, labels, better, base, resamples=100)
    assert real.low > 0 and real.low <= real.lift <= real.high
    same = paired_auc_lift(users, labels, base, base, resamples=50)
    assert same.low == same.high == same.lift == 0
    noisy = paired_mean_lift(users, base, base + rng.normal(0, 1, 20_000), resamples=100)
    assert noisy.low < 0 < noisy.high
