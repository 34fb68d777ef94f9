"""What a simulated world looks like, measured against its ground truth.

Used by the simulator's behaviour tests and by anyone checking a new world config: per latent
stage task rates, and how often the rule-based stage (:mod:`stan_model.lifecycle`) agrees with
the latent stage.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stan_model.data import raw_store
from stan_model.lifecycle import NEW_USER_DAYS, WINDOW_DAYS, rule_based_stage, windowed_sum
from stan_model.schema import LIFECYCLE_STAGES, read_table

_US_PER_DAY = 86_400_000_000


@dataclass
class UserDayPanel:
    """Dense (users, days) matrices of one world: counts per user-day and the latent stage."""

    days: list[dt.date]
    impressions: np.ndarray
    clicks: np.ndarray
    long_stays: np.ndarray
    orders: np.ndarray
    latent_stage: np.ndarray  # -1 before signup
    signup_day: np.ndarray  # (users,) day index, negative before the window
    event_user: np.ndarray  # per impression, for per-impression rates
    event_day: np.ndarray
    event_click: np.ndarray
    event_long_stay: np.ndarray
    event_order: np.ndarray


def _day_index(ts: pa.ChunkedArray, first: dt.date) -> np.ndarray:
    epoch_day = (first - dt.date(1970, 1, 1)).days
    return pc.cast(ts, pa.int64()).to_numpy() // _US_PER_DAY - epoch_day


def load_panel(home: str | Path, long_stay_threshold_s: float = 30.0) -> UserDayPanel:
    home = Path(home)
    days = raw_store.partition_days(home)
    events = raw_store.read_events(home, days)
    users = read_table(raw_store.users_path(home), "users")
    n_users, n_days = int(pc.max(users["user_id"]).as_py()) + 1, len(days)
    user = events["user_id"].to_numpy()
    day = _day_index(events["event_ts"], days[0])
    click = events["click"].to_numpy()
    long_stay = (events["stay_seconds"].to_numpy() >= long_stay_threshold_s).astype(np.int8)
    order = events["order"].to_numpy()

    def matrix(weights: np.ndarray) -> np.ndarray:
        out = np.zeros((n_users, n_days))
        np.add.at(out, (user, day), weights)
        return out

    stage = np.full((n_users, n_days), -1, dtype=np.int8)
    for j, d in enumerate(days):
        truth = read_table(raw_store.truth_partition(home, d), "truth")
        stage[truth["user_id"].to_numpy(), j] = truth["latent_stage"].to_numpy()
    return UserDayPanel(
        days=days,
        impressions=matrix(np.ones(len(user))),
        clicks=matrix(click),
        long_stays=matrix(long_stay),
        orders=matrix(order),
        latent_stage=stage,
        signup_day=_day_index(users["signup_ts"], days[0]),
        event_user=user,
        event_day=day,
        event_click=click,
        event_long_stay=long_stay,
        event_order=order,
    )


def stage_rates(panel: UserDayPanel) -> dict[str, dict[str, float]]:
    """Per latent stage: impressions, CTR, long-stay rate and CVR (all per impression)."""
    stage = panel.latent_stage[panel.event_user, panel.event_day]
    out = {}
    for index, name in enumerate(LIFECYCLE_STAGES):
        m = stage == index
        out[name] = {
            "impressions": int(m.sum()),
            "ctr": float(panel.event_click[m].mean()) if m.any() else float("nan"),
            "long_stay_rate": float(panel.event_long_stay[m].mean()) if m.any() else float("nan"),
            "cvr": float(panel.event_order[m].mean()) if m.any() else float("nan"),
        }
    return out


def rule_agreement(
    panel: UserDayPanel, warmup_days: int = NEW_USER_DAYS
) -> tuple[float, np.ndarray]:
    """Share of active user-days whose rule-based stage equals the latent stage, and the confusion.

    The rule sees 30-day windows through the end of the day; the first ``warmup_days`` are left
    out because windows there hold too little history. Confusion rows: latent, columns: rule.
    """
    imp = windowed_sum(panel.impressions, WINDOW_DAYS)
    ls = windowed_sum(panel.long_stays, WINDOW_DAYS)
    orders = windowed_sum(panel.orders, WINDOW_DAYS)
    confusion = np.zeros((len(LIFECYCLE_STAGES), len(LIFECYCLE_STAGES)), dtype=np.int64)
    for j in range(warmup_days, len(panel.days)):
        rule = rule_based_stage(j - panel.signup_day, imp[:, j], ls[:, j], orders[:, j])
        latent = panel.latent_stage[:, j]
        m = (
            (panel.impressions[:, j] > 0)
            & (rule >= 0)
            & (latent >= 0)
            & (latent < len(LIFECYCLE_STAGES))
        )
        np.add.at(confusion, (latent[m], rule[m]), 1)
    return float(np.trace(confusion) / max(confusion.sum(), 1)), confusion
