"""The gate's decision: every check, its numbers, pass or fail, and the verdict.

Lifts are ``candidate - baseline`` in absolute metric points. A metric's margin check uses the
point lift, or the lower bound of the paired bootstrap interval when the policy asks for it
(intervals come from :func:`components.gate.bootstrap.paired_lift_interval`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from components.gate.policy import GatePolicy

Interval = tuple[float, float]


@dataclass
class ModelMetrics:
    """What the gate needs of one model, all on the same test data."""

    tasks: dict[str, dict[str, float]]  # task -> metric -> value
    # stage -> task -> metric -> value
    by_stage: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    stage_samples: dict[str, int] = field(default_factory=dict)  # stage -> test samples


@dataclass
class Check:
    name: str  # e.g. "margin auc", "seesaw ndcg@5 ctr", "stage wander ctr", "champion ctr"
    passed: bool
    detail: str  # the numbers, in words

    def reason(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.detail}"


@dataclass
class GateDecision:
    decision: Literal["promote", "reject"]
    checks: list[Check]
    overridden: bool = False
    override_reason: str | None = None

    @property
    def reasons(self) -> list[str]:
        lines = [c.reason() for c in self.checks]
        if self.overridden:
            lines.append(f"OVERRIDE promote despite failed checks: {self.override_reason}")
        return lines

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        return {
            "decision": self.decision,
            "reasons": self.reasons,
            "checks": [asdict(c) for c in self.checks],
            "overridden": self.overridden,
            "override_reason": self.override_reason,
        }


def _metric(m: ModelMetrics, task: str, metric: str, who: str) -> float:
    try:
        return float(m.tasks[task][metric])
    except KeyError as exc:
        raise ValueError(f"gate: the {who}'s metrics lack {metric!r} for task {task!r}") from exc


def _margin_checks(cand, base, policy, intervals, tasks) -> list[Check]:
    checks = []
    for metric, rule in policy.rules.items():
        need = len(tasks) if rule.min_tasks == "all" else min(rule.min_tasks, len(tasks))
        wins, parts = [], []
        for task in tasks:
            lift = _metric(cand, task, metric, "candidate") - _metric(
                base, task, metric, "baseline"
            )
            evidence = lift
            text = f"{task} {lift:+.4f}"
            if policy.use_ci_lower_bound:
                try:
                    low, high = intervals[task][metric]
                except KeyError as exc:
                    raise ValueError(
                        f"gate: policy uses CI lower bounds but no interval for {task}/{metric}"
                    ) from exc
                evidence = low
                text += f" [{low:+.4f}, {high:+.4f}]"
            if evidence > rule.margin:
                wins.append(task)
            parts.append(text)
        what = "CI lower bound" if policy.use_ci_lower_bound else "lift"
        checks.append(
            Check(
                f"margin {metric}",
                len(wins) >= need,
                f"{what} > {rule.margin:g} on {len(wins)}/{len(tasks)} tasks, need {need} "
                f"({'; '.join(parts)})",
            )
        )
        for task in tasks:
            lift = _metric(cand, task, metric, "candidate") - _metric(
                base, task, metric, "baseline"
            )
            checks.append(
                Check(
                    f"seesaw {metric} {task}",
                    lift >= -rule.seesaw_tolerance,
                    f"lift {lift:+.4f}, tolerance -{rule.seesaw_tolerance:g}",
                )
            )
    return checks


def _stage_checks(cand: ModelMetrics, base: ModelMetrics, policy: GatePolicy, tasks) -> list[Check]:
    checks = []
    metric = policy.stage_metric
    for stage in sorted(set(cand.by_stage) & set(base.by_stage)):
        samples = cand.stage_samples.get(stage, 0)
        for task in tasks:
            c = cand.by_stage[stage].get(task, {}).get(metric)
            b = base.by_stage[stage].get(task, {}).get(metric)
            if c is None or b is None:
                continue
            lift = c - b
            if samples < policy.stage_min_samples:
                checks.append(
                    Check(
                        f"stage {stage} {task}",
                        True,
                        f"{metric} lift {lift:+.4f}; not gated: {samples} samples "
                        f"< {policy.stage_min_samples}",
                    )
                )
                continue
            checks.append(
                Check(
                    f"stage {stage} {task}",
                    lift >= -policy.stage_tolerance,
                    f"{metric} lift {lift:+.4f}, tolerance -{policy.stage_tolerance:g}",
                )
            )
    return checks


def _champion_checks(cand, champion, policy, tasks) -> list[Check]:
    if champion is None:
        return [Check("champion", True, "no current champion")]
    metric = policy.champion_metric
    checks = []
    for task in tasks:
        c = _metric(cand, task, metric, "candidate")
        ch = _metric(champion, task, metric, "champion")
        checks.append(
            Check(
                f"champion {task}",
                c - ch >= -policy.champion_tolerance,
                f"{metric} {c:.4f} vs champion {ch:.4f} ({c - ch:+.4f}), "
                f"tolerance -{policy.champion_tolerance:g}",
            )
        )
    return checks


def decide(
    candidate: ModelMetrics,
    baseline: ModelMetrics,
    policy: GatePolicy,
    champion: ModelMetrics | None = None,
    intervals: dict[str, dict[str, Interval]] | None = None,
    force_promote: bool = False,
    override_reason: str | None = None,
) -> GateDecision:
    """Run every check of ``policy``; promote only if all pass (or on a reasoned override)."""
    tasks = sorted(candidate.tasks)
    if set(tasks) != set(baseline.tasks):
        raise ValueError(
            f"gate: candidate tasks {tasks} differ from baseline tasks {sorted(baseline.tasks)}"
        )
    if force_promote and not (override_reason and override_reason.strip()):
        raise ValueError("gate: force_promote needs a written override reason")
    checks = _margin_checks(candidate, baseline, policy, intervals or {}, tasks)
    checks += _stage_checks(candidate, baseline, policy, tasks)
    checks += _champion_checks(candidate, champion, policy, tasks)
    passed = all(c.passed for c in checks)
    if passed or not force_promote:
        return GateDecision("promote" if passed else "reject", checks)
    return GateDecision("promote", checks, overridden=True, override_reason=override_reason.strip())
