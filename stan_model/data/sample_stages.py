"""Lifecycle stages per (user, day) for the model dataset: the rule-based stage, computed from
history only, and the simulator's latent stage (evaluation only, never a feature)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from stan_model.data import raw_store
from stan_model.data.tensors import vocabulary_codes
from stan_model.lifecycle import WINDOW_DAYS, rule_based_stage, windowed_sum
from stan_model.schema import read_table


def rule_stage_matrix(
    users: np.ndarray,
    day: np.ndarray,
    long_stay: np.ndarray,
    order: np.ndarray,
    signup_day: np.ndarray,
    n_days: int,
) -> np.ndarray:
    """(users, days) rule-based stage as of the end of the *previous* day (-1: unscored)."""
    n_users = len(signup_day)
    daily = np.zeros((3, n_users, n_days))
    np.add.at(daily, (0, users, day), 1.0)
    np.add.at(daily, (1, users, day), long_stay)
    np.add.at(daily, (2, users, day), order)
    imp, ls, orders = (windowed_sum(m, WINDOW_DAYS) for m in daily)
    stage = np.full((n_users, n_days), -1, dtype=np.int8)
    zeros = np.zeros(n_users)
    for d in range(n_days):  # the day loop: one rule evaluation per day over all users
        if d == 0:
            stage[:, 0] = rule_based_stage(-1 - signup_day, zeros, zeros, zeros)
        else:
            stage[:, d] = rule_based_stage(
                d - 1 - signup_day, imp[:, d - 1], ls[:, d - 1], orders[:, d - 1]
            )
    return stage


def latent_stage_matrix(home: Path, days: list[dt.date], user_ids: np.ndarray) -> np.ndarray | None:
    if not raw_store.truth_partition(home, days[0]).exists():
        return None
    stage = np.full((len(user_ids) + 1, len(days)), -1, dtype=np.int8)
    for j, d in enumerate(days):
        path = raw_store.truth_partition(home, d)
        if path.exists():
            truth = read_table(path, "truth")
            codes = vocabulary_codes(truth["user_id"].to_numpy(), user_ids)
            stage[codes, j] = truth["latent_stage"].to_numpy()
    stage[0] = -1  # users missing from the users table
    return stage
