"""Offline metrics: AUC, NDCG@k over (user, day) lists, RelaImpr, per-stage breakdowns, and the
linear probe of the paper's understanding experiment. All vectorised numpy (the probe: torch).

* :func:`auc` -- exact ROC AUC by the rank-sum (Mann-Whitney) formula with average ranks for
  tied scores (a tied positive/negative pair counts 1/2). NaN when a class is absent.
* :func:`ndcg_at_k` -- NDCG@k with linear gains (the 0/1 label), discount ``1 / log2(rank + 1)``,
  averaged over lists that hold at least one positive (a list without positives has no ideal
  ordering; it is left out, not counted as 0 or 1). The caller chooses the lists; evaluation
  groups by (user, day). Tied scores get the expected DCG over their orderings (as
  scikit-learn's ``ndcg_score`` does), so the metric does not depend on input order.
* :func:`rela_impr` -- the paper's RelaImpr: ``((AUC_model - 0.5) / (AUC_base - 0.5) - 1)``,
  in percent.
* :func:`linear_probe` -- how well a linear classifier reads the latent lifecycle stage from a
  model's user representations, trained on half the users and scored on the other half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    first = np.r_[True, ordered[1:] != ordered[:-1]]
    run = np.cumsum(first) - 1  # tie group of each sorted position
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(scores)]
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[run]
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact, tie-aware ROC AUC of ``scores`` for the 0/1 ``labels``."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = _average_ranks(s)[y].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def ndcg_at_k(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int = 5
) -> tuple[float, int]:
    """Mean NDCG@k over the lists (rows sharing ``groups``) with a positive; and their number."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    g = np.asarray(groups).ravel()
    if len(y) == 0:
        return float("nan"), 0
    order = np.lexsort((-s, g))  # by list, best score first
    y, s, g = y[order], s[order], g[order]
    n = len(y)
    new_list = np.r_[True, g[1:] != g[:-1]]
    list_id = np.cumsum(new_list) - 1
    list_start = np.flatnonzero(new_list)
    pos = np.arange(n) - list_start[list_id]  # 0-based rank within the list
    discount = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(2, pos.max() + 3)))]  # D[p]
    cut = np.minimum  # positions past k get no discount

    # DCG, tie-aware: a run of tied scores shares its mean gain over its positions' discounts.
    new_run = new_list | np.r_[True, s[1:] != s[:-1]]
    run_id = np.cumsum(new_run) - 1
    run_first = pos[new_run]
    run_len = np.bincount(run_id)
    run_gain = np.bincount(run_id, weights=y) / run_len
    run_disc = discount[cut(run_first + run_len, k)] - discount[cut(run_first, k)]
    dcg = np.bincount(list_id[new_run], weights=run_gain * run_disc)

    # Ideal DCG: labels sorted descending within each list.
    ideal = np.lexsort((-y, list_id))
    gain_at = y[ideal]
    ideal_disc = discount[cut(pos + 1, k)] - discount[cut(pos, k)]
    idcg = np.bincount(list_id, weights=gain_at * ideal_disc)
    has_pos = idcg > 0
    if not has_pos.any():
        return float("nan"), 0
    return float(np.mean(dcg[has_pos] / idcg[has_pos])), int(has_pos.sum())


def rela_impr(model_auc: float, base_auc: float) -> float:
    """The paper's RelaImpr in percent: ``((model - 0.5) / (base - 0.5) - 1) * 100``."""
    return ((model_auc - 0.5) / (base_auc - 0.5) - 1.0) * 100.0


def auc_by_stage(
    labels: np.ndarray, scores: np.ndarray, stage: np.ndarray, names: tuple[str, ...]
) -> dict[str, float]:
    """AUC within each stage (index into ``names``); NaN where a stage lacks a class."""
    return {name: auc(labels[stage == i], scores[stage == i]) for i, name in enumerate(names)}


@dataclass
class ProbeResult:
    accuracy: float  # share of held-out rows whose stage is predicted exactly
    balanced_accuracy: float  # mean per-stage recall: not inflated by the majority stage
    n_train: int
    n_test: int


def linear_probe(
    features: np.ndarray,
    stages: np.ndarray,
    users: np.ndarray,
    n_classes: int,
    seed: int = 0,
    l2: float = 1e-3,
    steps: int = 200,
) -> ProbeResult:
    """Multinomial logistic regression from ``features`` to ``stages``, split by user.

    Users are split at random in half (no user on both sides); features are z-scored with the
    training half's statistics; L-BFGS fits the weights with an L2 penalty.
    """
    rng = np.random.default_rng(seed)
    unique = np.unique(users)
    train_users = unique[rng.random(len(unique)) < 0.5]
    train = np.isin(users, train_users)
    x = torch.as_tensor(features, dtype=torch.float64)
    y = torch.as_tensor(stages, dtype=torch.long)
    mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-6)
    x = (x - mean) / std
    xt, yt = x[train], y[train]
    w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xt @ w + b, yt) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (x[~train] @ w + b).argmax(1).numpy()
    truth = stages[~train]
    recalls = [np.mean(pred[truth == c] == c) for c in range(n_classes) if np.any(truth == c)]
    return ProbeResult(
        accuracy=float(np.mean(pred == truth)) if len(truth) else float("nan"),
        balanced_accuracy=float(np.mean(recalls)) if recalls else float("nan"),
        n_train=int(train.sum()),
        n_test=int((~train).sum()),
    )
