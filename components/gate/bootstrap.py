"""Paired bootstrap intervals of a metric lift, resampling users (DESIGN.md step 7).

Both models are scored on the same resample: one draw of users (with replacement) gives every
sample a weight (how often its user was drawn), and the lift is the weighted metric of the
candidate minus that of the baseline. Resampling users rather than impressions respects that a
user's impressions are correlated. Tie-aware weighted AUC is computed from one sort per model;
each resample then costs a few ``bincount``/``cumsum`` passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LiftInterval:
    lift: float  # on the full data
    low: float
    high: float
    confidence: float
    resamples: int


class _SortedScores:
    """One model's scores sorted once, with tie groups, for repeated weighted AUCs."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray):
        self.order = np.argsort(scores, kind="stable")
        s = scores[self.order]
        self.labels = labels[self.order].astype(np.float64)
        self.group = np.concatenate([[0], np.cumsum(s[1:] != s[:-1])])
        self.n_groups = int(self.group[-1]) + 1 if len(s) else 0

    def auc(self, weights: np.ndarray) -> float:
        w = weights[self.order]
        pos = np.bincount(self.group, w * self.labels, minlength=self.n_groups)
        neg = np.bincount(self.group, w * (1.0 - self.labels), minlength=self.n_groups)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos == 0 or total_neg == 0:
            return float("nan")
        neg_below = np.cumsum(neg) - neg
        return float(np.sum(pos * (neg_below + 0.5 * neg)) / (total_pos * total_neg))


def weighted_auc(
    labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """Tie-aware ROC AUC with per-sample weights (all ones: the ordinary AUC)."""
    labels = np.asarray(labels)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, dtype=np.float64)
    return _SortedScores(np.asarray(scores), labels).auc(weights)


def _user_weights(users: np.ndarray, resamples: int, rng: np.random.Generator):
    """Yield per-sample weights, one array per resample of users with replacement."""
    unique, index = np.unique(users, return_inverse=True)
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, len(unique), len(unique)), minlength=len(unique))
        yield counts[index].astype(np.float64)


def _interval(lift: float, draws: np.ndarray, confidence: float) -> LiftInterval:
    draws = draws[np.isfinite(draws)]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(draws, [alpha, 1.0 - alpha]) if len(draws) else (np.nan, np.nan)
    return LiftInterval(lift, float(low), float(high), confidence, len(draws))


def paired_auc_lift(
    users: np.ndarray,
    labels: np.ndarray,
    candidate: np.ndarray,
    baseline: np.ndarray,
    resamples: int = 200,
    confidence: float = 0.90,
    seed: int = 0,
) -> LiftInterval:
    """Percentile interval of AUC(candidate) - AUC(baseline), users resampled."""
    labels = np.asarray(labels)
    a, b = _SortedScores(np.asarray(candidate), labels), _SortedScores(np.asarray(baseline), labels)
    ones = np.ones(len(labels))
    lift = a.auc(ones) - b.auc(ones)
    rng = np.random.default_rng(seed)
    draws = np.array(
        [a.auc(w) - b.auc(w) for w in _user_weights(np.asarray(users), resamples, rng)]
    )
    return _interval(lift, draws, confidence)


def paired_mean_lift(
    users: np.ndarray,
    candidate: np.ndarray,
    baseline: np.ndarray,
    resamples: int = 200,
    confidence: float = 0.90,
    seed: int = 0,
) -> LiftInterval:
    """Interval of mean(candidate) - mean(baseline) for per-unit values (e.g. NDCG per list)."""
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    rng = np.random.default_rng(seed)
    draws = np.array(
        [
            np.average(diff, weights=w) if w.sum() else np.nan
            for w in _user_weights(np.asarray(users), resamples, rng)
        ]
    )
    return _interval(float(diff.mean()), draws, confidence)


def ndcg_per_list(
    lists: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """NDCG@k of every list that has a positive, and each such list's id (sorted ids).

    Same definition as :func:`stan_model.metrics.ndcg_at_k` (binary gains, lists without a
    positive left out), kept per list so that lists can be resampled.
    """
    order = np.lexsort((-scores, lists))
    ids, lab = lists[order], labels[order].astype(np.float64)
    start = np.r_[True, ids[1:] != ids[:-1]]
    first = np.maximum.accumulate(np.where(start, np.arange(len(ids)), 0))
    rank = np.arange(len(ids)) - first  # 0-based rank within the list by score
    discount = 1.0 / np.log2(rank + 2.0)
    group = np.cumsum(start) - 1
    dcg = np.bincount(group, np.where(rank < k, lab * discount, 0.0))
    positives = np.bincount(group, lab)
    ideal_discount = 1.0 / np.log2(np.arange(k) + 2.0)
    idcg = np.cumsum(ideal_discount)[np.minimum(positives, k).astype(int) - 1]
    has = positives > 0
    return dcg[has] / idcg[has], ids[start][has]
