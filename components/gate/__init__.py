"""The promotion gate: promote STAN only when it beats PLE offline, honestly.

``decide(candidate, baseline, policy, champion=None)`` checks, per the YAML policy
(:mod:`components.gate.policy`): every task's lift over the baseline clears its margin
(optionally the lower bound of a paired bootstrap interval, :mod:`components.gate.bootstrap`),
no task falls below the baseline by more than the seesaw tolerance, no lifecycle stage regresses
by more than its tolerance, and the candidate is not worse than the current champion. The result
lists every check with its numbers; a manual override needs a written reason and is recorded.
"""

from components.gate.decide import Check, GateDecision, ModelMetrics, decide
from components.gate.policy import GatePolicy, MetricRule

__all__ = ["Check", "GateDecision", "GatePolicy", "MetricRule", "ModelMetrics", "decide"]
