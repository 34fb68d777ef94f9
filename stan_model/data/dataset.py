"""A raw world (events + users + items) as model-ready tensors, with a time split.

Every model gets the same inputs (DESIGN: fair baselines):

* sparse fields -- user side: ``user_id``, ``age_bucket``, ``gender``, ``device_os``,
  ``city_tier``, ``tenure_bucket``, ``rule_stage``; item side: ``item_id``, ``category_id``,
  ``author_id``; context: ``hour``, ``position``. Index 0 of every field means unknown.
* dense features (z-scored with the training split's mean and std) -- user side: the user's
  30-day rate of every task, ``log1p`` impressions over 30 days and over the last 24 h, ``log1p``
  hours since the user's previous impression, ``log1p`` tenure days; item side: the item's 30-day
  rate of every task, ``log1p`` item impressions over 30 days (prior popularity), ``log1p``
  duration, price and age in days.

**No leakage.** Every historical number uses only rows strictly before the sample's timestamp
(:mod:`stan_model.data.history`). Rates are shrunk toward a prior: ``(hits + m * p0) / (n + m)``
with ``m = prior_strength`` and ``p0`` the population rate of the whole log strictly before the
sample (0.5 before anything was seen); a user with no history gets exactly ``p0``. The user's
30-day rates are also the stage-loss pseudo-labels (``Batch.pseudo``). The rule-based stage of a
sample on day ``d`` is :func:`stan_model.lifecycle.rule_based_stage` over windows ending with day
``d - 1``. Z-scoring statistics come from the training days only.

**Split** by day: the last ``test_days`` are the test set, the ``valid_days`` before them the
validation set (early stopping), everything earlier (after ``warmup_days``) the training set.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from stan_model.data import raw_store
from stan_model.data.history import US_PER_DAY, global_prior, prior_window, shrunk_rate
from stan_model.data.sample_stages import latent_stage_matrix, rule_stage_matrix
from stan_model.data.tensors import (
    DenseField,
    FeatureSpec,
    SparseField,
    TensorBundle,
    vocabulary_codes,
)
from stan_model.schema import read_table, task_labels

log = logging.getLogger(__name__)

TENURE_EDGES_DAYS = (1, 3, 7, 14, 30, 90, 180, 365)  # tenure buckets: new users finely, then coarse


@dataclass
class DatasetConfig:
    test_days: int = 3  # last days: the held-out test set
    valid_days: int = 1  # days before the test days: early stopping and model selection
    warmup_days: int = 0  # first days that only feed history, never trained on
    window_days: int = 30  # history window of the per-task rates (the paper's online window)
    prior_strength: float = 5.0  # pseudo-impressions pulling a short history toward the prior
    long_stay_threshold_s: float = 30.0  # rule-based stage: what counts as a long stay
    max_position: int = 31  # session positions at or beyond share one bucket


@dataclass
class WorldData:
    """All samples of a world in time order, their tensors, split and evaluation metadata."""

    spec: FeatureSpec
    config: DatasetConfig
    bundle: TensorBundle  # every sample, ordered by time
    user: np.ndarray  # (N,) int64 dense user index: NDCG lists, probes, bootstrap by user
    day: np.ndarray  # (N,) int32 day index into ``days``
    rule_stage: np.ndarray  # (N,) int8 rule-based stage as of the previous day, -1 unscored
    latent_stage: np.ndarray | None  # (N,) int8 simulator truth that day (None: not simulated)
    days: list[dt.date]
    splits: dict[str, np.ndarray]  # "train" / "valid" / "test" -> row indices
    dense_mean: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    dense_std: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))

    def split(self, name: str) -> TensorBundle:
        return self.bundle.take(torch.from_numpy(self.splits[name]))


def return_freed_memory() -> None:
    """Hand memory that numpy and Arrow have freed back to the operating system.

    glibc keeps large freed blocks in its heap and Arrow's pool caches what it freed, so after
    the build's big temporaries the process would stay resident at its high-water mark (4.1 GiB
    for the wechat world, of which 1.5 alive). Trimming makes the resident size follow what is
    alive, which is what a container's memory limit sees."""
    gc.collect()  # arrays held only by reference cycles (closures, frames) go first
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc (macOS, musl): no trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _lookup(table: pa.Table, key: str, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of ``table`` holding each id (and whether it exists)."""
    table_ids = table[key].to_numpy()
    order = np.argsort(table_ids, kind="stable")
    pos = np.minimum(np.searchsorted(table_ids[order], ids), max(len(order) - 1, 0))
    found = table_ids[order][pos] == ids
    return order[pos], found


def _ts_us(column) -> np.ndarray:
    return pc.cast(column, pa.int64()).to_numpy().astype(np.int64)


def _split_days(cfg: DatasetConfig, n_days: int, home: Path) -> tuple[int, int]:
    first_valid = n_days - cfg.test_days - cfg.valid_days
    if cfg.test_days < 1 or cfg.valid_days < 1 or first_valid <= cfg.warmup_days:
        raise ValueError(
            f"{home}: {n_days} days cannot hold warmup_days={cfg.warmup_days}, a training day, "
            f"valid_days={cfg.valid_days} and test_days={cfg.test_days}; simulate more days or "
            "shorten the split"
        )
    return first_valid, n_days - cfg.test_days


def build_dataset(home: str | Path, config: DatasetConfig | None = None) -> WorldData:
    """Read the world under ``home`` and turn it into tensors (see the module docstring)."""
    data = _build_dataset(home, config)
    return_freed_memory()  # the build's temporaries are gone now; its high-water need not stay
    return data


def _build_dataset(home: str | Path, config: DatasetConfig | None) -> WorldData:
    cfg = config or DatasetConfig()
    home = Path(home)
    manifest = raw_store.read_manifest(home)
    partitions = raw_store.partition_days(home)
    if not partitions:
        raise FileNotFoundError(f"{raw_store.events_dir(home)}: no event partitions")
    # Every calendar day from the first partition to the last (a day without events is a day).
    days = [
        partitions[0] + dt.timedelta(days=i)
        for i in range((partitions[-1] - partitions[0]).days + 1)
    ]
    first_valid, first_test = _split_days(cfg, len(days), home)
    events = raw_store.read_events(home, partitions)
    events = events.take(
        pc.sort_indices(events, [("event_ts", "ascending"), ("event_id", "ascending")])
    )
    users = read_table(raw_store.users_path(home), "users")
    items = read_table(raw_store.items_path(home), "items")
    tasks = manifest.tasks
    n = events.num_rows

    ts = _ts_us(events["event_ts"])
    day0_us = (days[0] - dt.date(1970, 1, 1)).days * US_PER_DAY
    day = ((ts - day0_us) // US_PER_DAY).astype(np.int32)
    labels = np.stack([task_labels(events, t).to_numpy() for t in tasks], axis=1).astype(np.float64)
    user_raw = events["user_id"].to_numpy()
    item_raw = events["item_id"].to_numpy()
    user_ids = np.unique(users["user_id"].to_numpy())
    user_code = vocabulary_codes(user_raw, user_ids)
    item_code = vocabulary_codes(item_raw, np.unique(items["item_id"].to_numpy()))
    urow, ufound = _lookup(users, "user_id", user_raw)
    irow, ifound = _lookup(items, "item_id", item_raw)

    def user_attr(name: str) -> np.ndarray:
        values = users[name].to_numpy().astype(np.int64)
        return np.where(ufound, vocabulary_codes(values[urow], np.unique(values)), 0).astype(
            np.int32
        )

    def item_attr(name: str) -> np.ndarray:
        values = items[name].to_numpy().astype(np.int64)
        return np.where(ifound, vocabulary_codes(values[irow], np.unique(values)), 0).astype(
            np.int32
        )

    signup_us = _ts_us(users["signup_ts"])
    tenure_days = np.where(ufound, (ts - signup_us[urow]) / US_PER_DAY, np.nan)
    tenure_bucket = np.where(ufound, 1 + np.digitize(tenure_days, TENURE_EDGES_DAYS), 0)

    # Leakage-free history: strictly earlier rows only (stan_model.data.history).
    window = cfg.window_days * US_PER_DAY
    none = np.zeros((n, 0))
    p0 = global_prior(ts, labels)
    u30 = prior_window(user_raw, ts, labels, window)
    u1 = prior_window(user_raw, ts, none, US_PER_DAY)
    u_all = prior_window(user_raw, ts, none, None)
    i30 = prior_window(item_raw, ts, labels, window)
    user_rate = shrunk_rate(u30.sums, u30.count, p0, cfg.prior_strength)  # (N, K)
    item_rate = shrunk_rate(i30.sums, i30.count, p0, cfg.prior_strength)
    hours_since = np.where(u_all.last_gap >= 0, u_all.last_gap / 3.6e9, 24.0 * cfg.window_days)
    return_freed_memory()  # the history windows' sort keys and indices

    # Rule-based stage per (user, day) from the fixed raw columns, whatever the task set.
    signup_day = np.r_[
        -10_000, (signup_us[np.argsort(users["user_id"].to_numpy())] - day0_us) // US_PER_DAY
    ]
    long_stay = events["stay_seconds"].to_numpy() >= cfg.long_stay_threshold_s
    stage_matrix = rule_stage_matrix(
        user_code, day, long_stay, events["order"].to_numpy(), signup_day, len(days)
    )
    rule_stage = stage_matrix[user_code, day]
    latent = latent_stage_matrix(home, days, user_ids)
    latent_stage = None if latent is None else latent[user_code, day]

    hour = ((ts // 3_600_000_000) % 24 + 1).astype(np.int32)
    position = 1 + np.minimum(events["position"].to_numpy(), cfg.max_position).astype(np.int32)
    del events, long_stay, stage_matrix  # everything needed from them is extracted: free it
    return_freed_memory()
    sparse_cols = {
        ("user_id", "user"): (user_code, len(user_ids) + 1),
        ("age_bucket", "user"): None,
        ("gender", "user"): None,
        ("device_os", "user"): None,
        ("city_tier", "user"): None,
        ("tenure_bucket", "user"): (tenure_bucket, len(TENURE_EDGES_DAYS) + 2),
        ("rule_stage", "user"): (rule_stage.astype(np.int32) + 2, 6),  # -1..3 -> 1..5
        ("item_id", "item"): (item_code, int(items.num_rows) + 1),
        ("category_id", "item"): None,
        ("author_id", "item"): None,
        ("hour", "context"): (hour, 25),
        ("position", "context"): (position, cfg.max_position + 2),
    }
    sparse_fields, sparse = [], np.empty((n, len(sparse_cols)), dtype=np.int32)  # (N, F)
    for j, ((name, side), given) in enumerate(sparse_cols.items()):
        if given is None:
            table = users if side == "user" else items
            codes = user_attr(name) if side == "user" else item_attr(name)
            given = (codes, len(np.unique(table[name].to_numpy())) + 1)
        sparse[:, j] = given[0]
        sparse_fields.append(SparseField(name, int(given[1]), side))

    task_names = [t.name for t in tasks]
    created_us = _ts_us(items["created_ts"])
    # Each dense column is computed when it is stored (a callable), so only one float64 (N,)
    # column exists at a time next to the float32 (N, D) result.
    dense_cols: list[tuple[str, str, Callable[[], np.ndarray]]] = [
        *[
            (f"user_rate_30d_{t}", "user", lambda k=k: user_rate[:, k])
            for k, t in enumerate(task_names)
        ],
        ("user_log_impressions_30d", "user", lambda: np.log1p(u30.count)),
        ("user_log_impressions_1d", "user", lambda: np.log1p(u1.count)),
        ("user_log_hours_since_last", "user", lambda: np.log1p(hours_since)),
        (
            "user_log_tenure_days",
            "user",
            lambda: np.log1p(np.clip(np.nan_to_num(tenure_days), 0, None)),
        ),
        *[
            (f"item_rate_30d_{t}", "item", lambda k=k: item_rate[:, k])
            for k, t in enumerate(task_names)
        ],
        ("item_log_impressions_30d", "item", lambda: np.log1p(i30.count)),
        (
            "item_log_duration_s",
            "item",
            lambda: np.log1p(_item_float(items, "duration_s", irow, ifound)),
        ),
        ("item_log_price", "item", lambda: np.log1p(_item_float(items, "price", irow, ifound))),
        (
            "item_log_age_days",
            "item",
            lambda: np.log1p(
                np.clip(np.where(ifound, (ts - created_us[irow]) / US_PER_DAY, 0.0), 0, None)
            ),
        ),
    ]
    # z-scored with the training rows' mean and std, column by column into one float32 (N, D)
    # array: the same float64 arithmetic per value as standardising a stacked float64 matrix,
    # without its copies (the wechat world's build peaked at 5.8 GiB that way, 3.4 now).
    train_rows = (day >= cfg.warmup_days) & (day < first_valid)
    dense = np.empty((n, len(dense_cols)), dtype=np.float32)
    mean, std = np.empty(len(dense_cols)), np.empty(len(dense_cols))
    for j, (_, _, make) in enumerate(dense_cols):
        column = make()
        train_values = column[train_rows]
        mean[j], std[j] = train_values.mean(), train_values.std()
        std[j] = std[j] if std[j] > 1e-6 else 1.0
        dense[:, j] = (column - mean[j]) / std[j]
        del column, train_values
    return_freed_memory()

    spec = FeatureSpec(
        tasks=tuple(task_names),
        sparse=tuple(sparse_fields),
        dense=tuple(DenseField(name, side) for name, side, _ in dense_cols),
    )
    bundle = TensorBundle(
        sparse=torch.from_numpy(sparse),
        dense=torch.from_numpy(dense),
        labels=torch.from_numpy(labels.astype(np.float32)),
        pseudo=torch.from_numpy(user_rate.astype(np.float32)),
        history=torch.from_numpy((u_all.count + 1).astype(np.float32)),
    )
    rows = np.arange(n)
    splits = {
        "train": rows[train_rows],
        "valid": rows[(day >= first_valid) & (day < first_test)],
        "test": rows[day >= first_test],
    }
    log.info(
        "dataset %s: %d samples (train %d, valid %d, test %d), %d sparse fields, %d dense",
        home,
        n,
        *(len(v) for v in splits.values()),
        len(sparse_fields),
        dense.shape[1],
    )
    return WorldData(
        spec=spec,
        config=cfg,
        bundle=bundle,
        user=user_code.astype(np.int64),
        day=day,
        rule_stage=rule_stage,
        latent_stage=latent_stage,
        days=days,
        splits=splits,
        dense_mean=mean,
        dense_std=std,
    )


def _item_float(items: pa.Table, name: str, row: np.ndarray, found: np.ndarray) -> np.ndarray:
    values = items[name].to_numpy().astype(np.float64)
    return np.where(found, np.clip(values[row], 0, None), 0.0)
