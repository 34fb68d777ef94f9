"""The rule-based lifecycle stage: what a business can compute from observables alone.

STAN's paper describes users' lifecycle stages by business rules; this project uses median splits
(as the paper does), with a tenure cut for new users:

* ``new``     -- tenure (days since signup) below ``NEW_USER_DAYS``;
* ``loyal``   -- otherwise, 30-day CVR above the median of the scored users;
* ``stick``   -- otherwise, 30-day long-stay rate above the median;
* ``wander``  -- everyone else.

Medians are taken per day over the users the rule scores (non-new users with impressions in the
window). The feature repository computes the same rule in SQL; this numpy version is the
reference it is tested against, and what the simulator's behaviour test uses.
"""

from __future__ import annotations

import numpy as np

from stan_model.schema import LIFECYCLE_STAGES

NEW_USER_DAYS = 7
WINDOW_DAYS = 30
NEW, WANDER, STICK, LOYAL = (LIFECYCLE_STAGES.index(s) for s in ("new", "wander", "stick", "loyal"))


def rule_based_stage(
    tenure_days: np.ndarray,
    impressions: np.ndarray,
    long_stays: np.ndarray,
    orders: np.ndarray,
) -> np.ndarray:
    """Stage index per user from tenure and windowed counts (all arrays of one shape, one day).

    Users with no impressions in the window and tenure past the new-user cut get ``-1`` (unscored).
    """
    tenure_days = np.asarray(tenure_days)
    impressions = np.asarray(impressions, dtype=np.float64)
    stage = np.full(tenure_days.shape, -1, dtype=np.int8)
    is_new = tenure_days < NEW_USER_DAYS
    scored = ~is_new & (impressions > 0)
    stage[is_new] = NEW
    if scored.any():
        cvr = np.divide(orders, impressions, out=np.zeros_like(impressions), where=impressions > 0)
        lsr = np.divide(
            long_stays, impressions, out=np.zeros_like(impressions), where=impressions > 0
        )
        cvr_median = np.median(cvr[scored])
        lsr_median = np.median(lsr[scored])
        loyal = scored & (cvr > cvr_median)
        stick = scored & ~loyal & (lsr > lsr_median)
        stage[scored] = WANDER
        stage[stick] = STICK
        stage[loyal] = LOYAL
    return stage


def windowed_sum(daily: np.ndarray, window: int) -> np.ndarray:
    """Trailing sum over the last ``window`` columns, inclusive, of a (users, days) matrix."""
    csum = np.cumsum(daily, axis=1, dtype=np.float64)
    out = csum.copy()
    out[:, window:] -= csum[:, :-window]
    return out
