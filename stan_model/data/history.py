"""Leakage-free historical aggregates: what was known about a user or an item before a sample.

Every function here answers, for each row ``i``, a question about the rows ``j`` of the same group
(the same user, the same item, or the whole log) with ``ts_i - window <= ts_j < ts_i``: strictly
earlier in time, so a sample never sees its own label nor anything at or after its own timestamp
(rows sharing a timestamp do not see each other). Everything is vectorised: one sort, one float64
cumulative sum, two ``searchsorted`` calls; no Python loop over rows or groups.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

US_PER_DAY = 86_400_000_000


@dataclass
class PriorWindow:
    """For each row (in the caller's order): rows of its group strictly before it, in the window."""

    count: np.ndarray  # (N,) int64 number of earlier rows in the window
    sums: np.ndarray  # (N, C) float64 column sums of ``values`` over those rows
    last_gap: np.ndarray  # (N,) int64 time since the group's latest earlier row (any age); -1: none


def prior_window(
    group: np.ndarray, ts: np.ndarray, values: np.ndarray, window: int | None
) -> PriorWindow:
    """Windowed sums over each row's strictly earlier rows of the same group.

    ``group``: (N,) integer group key (user, item; a constant for the whole log). ``ts``: (N,)
    int64 times. ``values``: (N, C) numbers to sum. ``window``: in the units of ``ts``; ``None``
    means all of history.
    """
    group = np.asarray(group, dtype=np.int64)
    ts = np.asarray(ts, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64).reshape(len(ts), -1)  # (N, C)
    n = len(ts)
    if n == 0:
        return PriorWindow(np.zeros(0, np.int64), values.copy(), np.zeros(0, np.int64))
    order = np.lexsort((ts, group))
    g, t = group[order], ts[order]
    # One sortable int64 key per row: dense group rank, then time. Groups are spaced further apart
    # than the window reaches, so a window never spills into the previous group.
    rank = np.cumsum(np.r_[False, g[1:] != g[:-1]])
    t0 = t.min()
    span = int(t.max() - t0) + (window or 0) + 1
    if rank[-1] >= (2**62) // span:
        raise ValueError(
            f"prior_window: {rank[-1] + 1} groups over a time span of {span} units overflow an "
            "int64 key; pass coarser timestamps (e.g. seconds instead of microseconds)"
        )
    key = rank * span + (t - t0)
    end = np.searchsorted(key, key, side="left")  # first row at or after ts_i: rows before it count
    group_start = np.searchsorted(key, rank * span, side="left")
    start = group_start if window is None else np.searchsorted(key, key - window, side="left")
    csum = np.zeros((n + 1, values.shape[1]), dtype=np.float64)
    np.cumsum(values[order], axis=0, dtype=np.float64, out=csum[1:])
    has_prev = end > group_start
    gap = np.where(has_prev, t - t[np.maximum(end - 1, 0)], -1)

    out_count = np.empty(n, dtype=np.int64)
    out_sums = np.empty_like(values)
    out_gap = np.empty(n, dtype=np.int64)
    out_count[order] = end - start
    out_sums[order] = csum[end] - csum[start]
    out_gap[order] = gap
    return PriorWindow(out_count, out_sums, out_gap)


def shrunk_rate(
    hits: np.ndarray, count: np.ndarray, prior: np.ndarray, strength: float
) -> np.ndarray:
    """``(hits + strength * prior) / (count + strength)``: the rate, pulled toward ``prior``.

    A group with no history gets exactly ``prior``; with ``strength = 0`` it is the plain mean of
    the earlier labels (the paper's pseudo-label), undefined (here: ``prior``) without history.
    """
    count = np.asarray(count, dtype=np.float64)
    if count.ndim < np.ndim(hits):
        count = count[:, None]
    denom = count + strength
    safe = np.where(denom > 0, denom, 1.0)
    return np.where(denom > 0, (hits + strength * prior) / safe, prior)


def global_prior(ts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row and task, the rate over the whole log strictly before the row's time.

    Beta(1, 1)-smoothed, so the very first rows of a log (nothing earlier) get 0.5 and the prior
    approaches the running population rate within a few hundred impressions.
    """
    prior = prior_window(np.zeros(len(ts), np.int64), ts, labels, window=None)
    return (prior.sums + 0.5) / (prior.count[:, None] + 1.0)
