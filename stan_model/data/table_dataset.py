"""A feature-store training set as model tensors, through a fitted, saved :class:`Preprocessor`.

The production path (DESIGN.md step 5): impressions joined point in time to the lifecycle
features through Feast arrive as one Arrow table (``feature_repo.training``): event columns,
``label_<task>`` per task, and ``<view>__<feature>`` columns as of the end of the previous day.
stan_model never imports Feast; it only reads that table's columns by these conventions.

* **Sparse fields** -- user: ``user_id``, profile fields from ``raw/users``, ``lifecycle_stage``
  (rule-based, from the feature store), tenure bucket; item: ``item_id``, ``category_id``,
  ``author_id`` from ``raw/items``; context: hour, session position. Vocabularies are the sorted
  raw values seen when fitting; anything else maps to 0 (unknown).
* **Dense features** -- every numeric ``<view>__<feature>`` column, the ``task_rates_30d`` lists
  expanded to one column per task; counts pass through ``log1p``; then z-scored with the training
  rows' statistics.
* **Pseudo-labels** -- the user's 30-day per-task rates through the previous day
  (``user_lifecycle__task_rates_30d``): strictly before the sample, at day granularity.
* **History position** (STAN's Beta counter) -- 1 + the user's impressions in the 30 days before
  the sample's day + the sample's rank among the user's impressions that day.

The preprocessor (vocabularies, dense statistics) is saved beside the model
(``preprocessor.safetensors`` + ``preprocessor.json``), so a registered model can score any later
training set -- the gate re-scores the champion on the candidate's test days with it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from safetensors.numpy import load_file, save_file

from stan_model.data.dataset import TENURE_EDGES_DAYS, DatasetConfig, WorldData
from stan_model.data.history import US_PER_DAY
from stan_model.data.sample_stages import latent_stage_matrix
from stan_model.data.tensors import (
    DenseField,
    FeatureSpec,
    SparseField,
    TensorBundle,
    vocabulary_codes,
)
from stan_model.schema import LIFECYCLE_STAGES

PREPROCESSOR_ARRAYS = "preprocessor.safetensors"
PREPROCESSOR_JSON = "preprocessor.json"
USER_PROFILE = ("age_bucket", "gender", "device_os", "city_tier")
ITEM_ATTRS = ("category_id", "author_id")
STAGE_VALUES = ("unscored", *LIFECYCLE_STAGES)  # lifecycle_stage strings, code = index + 1
RATES = "task_rates_30d"
USER_RATES = f"user_lifecycle__{RATES}"
USER_IMPRESSIONS_30D = "user_activity__impressions_30d"
MAX_POSITION = 31
_SKIP = {"as_of_date", "lifecycle_stage", "lifecycle_stage_id"}


class TrainingTableError(ValueError):
    """The training table lacks what the model needs; names the column."""


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise TrainingTableError(f"training set: missing column '{name}'")
    return table[name]


def _int(table: pa.Table, name: str) -> np.ndarray:
    return _column(table, name).to_numpy().astype(np.int64)


def _lookup(ids: np.ndarray, table: pa.Table, key: str, attr: str) -> np.ndarray:
    """``attr`` of each id from ``table`` (-1 where the id is absent)."""
    keys = table[key].to_numpy()
    order = np.argsort(keys, kind="stable")
    pos = np.minimum(np.searchsorted(keys[order], ids), max(len(keys) - 1, 0))
    found = keys[order][pos] == ids if len(keys) else np.zeros(len(ids), bool)
    values = table[attr].to_numpy().astype(np.int64)
    return np.where(found, values[order][pos], -1)


def _dense_columns(table: pa.Table, tasks: tuple[str, ...]) -> list[tuple[str, str, bool]]:
    """(column, side, log1p?) for every numeric feature column, list columns per task."""
    out = []
    for name in table.column_names:
        view, sep, feature = name.partition("__")
        if not sep or feature in _SKIP:
            continue
        side = "item" if view.startswith("item") else "user"
        typ = table[name].type
        if pa.types.is_list(typ) and feature == RATES:
            out += [(f"{name}[{t}]", side, False) for t in tasks]
        elif pa.types.is_integer(typ) or pa.types.is_floating(typ):
            out.append((name, side, pa.types.is_integer(typ) and not feature.startswith("days_")))
    if not out:
        raise TrainingTableError("training set: no '<view>__<feature>' feature columns")
    return out


def _dense_values(table: pa.Table, column: str, tasks: tuple[str, ...]) -> np.ndarray:
    if column.endswith("]"):
        name, task = column[:-1].split("[")
        flat = pc.list_flatten(_column(table, name)).to_numpy().astype(np.float64)
        return flat.reshape(table.num_rows, len(tasks))[:, tasks.index(task)]
    return _column(table, column).to_numpy(zero_copy_only=False).astype(np.float64)


@dataclass
class Preprocessor:
    """Everything needed to turn a training table into the tensors a saved model expects."""

    spec: FeatureSpec
    vocab: dict[str, np.ndarray]  # sparse field -> sorted raw values (int64)
    dense: list[tuple[str, str, bool]]  # (column, side, log1p)
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(
        cls,
        table: pa.Table,
        tasks: tuple[str, ...],
        users: pa.Table,
        items: pa.Table,
        train_mask: np.ndarray,
    ) -> Preprocessor:
        vocab = {
            "user_id": np.unique(users["user_id"].to_numpy().astype(np.int64)),
            "item_id": np.unique(items["item_id"].to_numpy().astype(np.int64)),
            **{f: np.unique(users[f].to_numpy().astype(np.int64)) for f in USER_PROFILE},
            **{f: np.unique(items[f].to_numpy().astype(np.int64)) for f in ITEM_ATTRS},
        }
        dense = _dense_columns(table, tasks)
        raw = np.stack([_raw_dense(table, c, log, tasks) for c, _, log in dense], axis=1)
        mean, std = raw[train_mask].mean(axis=0), raw[train_mask].std(axis=0)
        std = np.where(std > 1e-6, std, 1.0)
        sides = {
            "user_id": "user",
            "item_id": "item",
            **dict.fromkeys(USER_PROFILE, "user"),
            **dict.fromkeys(ITEM_ATTRS, "item"),
        }
        sparse = [SparseField(f, len(v) + 1, sides[f]) for f, v in vocab.items()]
        sparse += [
            SparseField("lifecycle_stage", len(STAGE_VALUES) + 1, "user"),
            SparseField("tenure_bucket", len(TENURE_EDGES_DAYS) + 2, "user"),
            SparseField("hour", 25, "context"),
            SparseField("position", MAX_POSITION + 2, "context"),
        ]
        spec = FeatureSpec(tasks, tuple(sparse), tuple(DenseField(c, s) for c, s, _ in dense))
        return cls(spec, vocab, dense, mean, std)

    def encode(self, table: pa.Table, users: pa.Table, items: pa.Table) -> TensorBundle:
        tasks = self.spec.tasks
        user, item = _int(table, "user_id"), _int(table, "item_id")
        ts = pc.cast(_column(table, "event_timestamp"), pa.int64()).to_numpy()
        codes = {
            "user_id": vocabulary_codes(user, self.vocab["user_id"]),
            "item_id": vocabulary_codes(item, self.vocab["item_id"]),
        }
        for f in USER_PROFILE:
            codes[f] = vocabulary_codes(_lookup(user, users, "user_id", f), self.vocab[f])
        for f in ITEM_ATTRS:
            codes[f] = vocabulary_codes(_lookup(item, items, "item_id", f), self.vocab[f])
        stage = pc.index_in(
            _column(table, "user_lifecycle__lifecycle_stage"), value_set=pa.array(STAGE_VALUES)
        )
        codes["lifecycle_stage"] = 1 + pc.fill_null(stage, -1).to_numpy()  # 0: unknown string
        tenure = _int(table, "user_lifecycle__tenure_days")
        codes["tenure_bucket"] = 1 + np.digitize(tenure, TENURE_EDGES_DAYS)
        codes["hour"] = (ts // 3_600_000_000) % 24 + 1
        codes["position"] = 1 + np.minimum(_int(table, "position"), MAX_POSITION)
        sparse = np.stack([codes[f.name] for f in self.spec.sparse], axis=1).astype(np.int32)
        raw = np.stack([_raw_dense(table, c, log, tasks) for c, _, log in self.dense], axis=1)
        dense = (raw - self.mean) / self.std  # (N, D)
        labels = np.stack([_int(table, f"label_{t}") for t in tasks], axis=1)
        rates = pc.list_flatten(_column(table, USER_RATES)).to_numpy().astype(np.float64)
        history = 1 + _int(table, USER_IMPRESSIONS_30D) + _rank_in_user_day(user, ts)
        return TensorBundle(
            sparse=torch.from_numpy(sparse),
            dense=torch.from_numpy(dense.astype(np.float32)),
            labels=torch.from_numpy(labels.astype(np.float32)),
            pseudo=torch.from_numpy(rates.reshape(len(user), len(tasks)).astype(np.float32)),
            history=torch.from_numpy(history.astype(np.float32)),
        )

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        arrays = {f"vocab.{k}": v for k, v in self.vocab.items()}
        save_file({**arrays, "mean": self.mean, "std": self.std}, directory / PREPROCESSOR_ARRAYS)
        meta = {"spec": self.spec.to_dict(), "dense": [list(d) for d in self.dense]}
        (directory / PREPROCESSOR_JSON).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> Preprocessor:
        directory = Path(directory)
        arrays = load_file(directory / PREPROCESSOR_ARRAYS)
        meta = json.loads((directory / PREPROCESSOR_JSON).read_text())
        vocab = {k[6:]: v for k, v in arrays.items() if k.startswith("vocab.")}
        dense = [(str(c), str(s), bool(log)) for c, s, log in meta["dense"]]
        return cls(FeatureSpec.from_dict(meta["spec"]), vocab, dense, arrays["mean"], arrays["std"])


def _raw_dense(table: pa.Table, column: str, log: bool, tasks: tuple[str, ...]) -> np.ndarray:
    values = np.nan_to_num(_dense_values(table, column, tasks))
    return np.log1p(np.clip(values, 0, None)) if log else values


def _rank_in_user_day(user: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """0-based rank of each impression among its user's impressions of the same UTC day."""
    key_day = ts // US_PER_DAY
    order = np.lexsort((ts, key_day, user))
    u, d = user[order], key_day[order]
    start = np.r_[True, (u[1:] != u[:-1]) | (d[1:] != d[:-1])]
    group_start = np.maximum.accumulate(np.where(start, np.arange(len(u)), 0))
    rank = np.empty(len(u), dtype=np.int64)
    rank[order] = np.arange(len(u)) - group_start
    return rank


def table_days(table: pa.Table) -> tuple[list[dt.date], np.ndarray]:
    """The calendar days the table spans and each row's index into them."""
    ts = pc.cast(_column(table, "event_timestamp"), pa.int64()).to_numpy()
    epoch_day = ts // US_PER_DAY
    first, last = int(epoch_day.min()), int(epoch_day.max())
    days = [dt.date(1970, 1, 1) + dt.timedelta(days=d) for d in range(first, last + 1)]
    return days, (epoch_day - first).astype(np.int32)


def time_order(table: pa.Table) -> np.ndarray:
    """The row order of every :class:`WorldData` built from a training table: by event time,
    then event id (unique), so it is total and the same however the table was written."""
    ts = pc.cast(_column(table, "event_timestamp"), pa.int64()).to_numpy()
    return np.lexsort((_column(table, "event_id").to_numpy(), ts))


def split_rows(day: np.ndarray, n_days: int, cfg: DatasetConfig) -> dict[str, np.ndarray]:
    first_valid = n_days - cfg.test_days - cfg.valid_days
    if first_valid < 1:
        raise TrainingTableError(
            f"training set spans {n_days} day(s): too few for a training day, "
            f"{cfg.valid_days} validation day(s) and {cfg.test_days} test day(s)"
        )
    rows = np.arange(len(day))
    return {
        "train": rows[day < first_valid],
        "valid": rows[(day >= first_valid) & (day < n_days - cfg.test_days)],
        "test": rows[day >= n_days - cfg.test_days],
    }


def world_from_table(
    table: pa.Table,
    tasks: tuple[str, ...],
    users: pa.Table,
    items: pa.Table,
    config: DatasetConfig | None = None,
    preprocessor: Preprocessor | None = None,
    truth_home: str | Path | None = None,
) -> tuple[WorldData, Preprocessor]:
    """The training table as :class:`WorldData` (fitting a preprocessor unless one is given).

    ``truth_home``: a simulated world's home, whose ``truth/`` adds the latent stage (evaluation
    only). The rule-based stage per sample is the feature store's ``lifecycle_stage_id``.
    """
    cfg = config or DatasetConfig()
    table = table.take(time_order(table))
    days, day = table_days(table)
    splits = split_rows(day, len(days), cfg)
    train_mask = np.zeros(table.num_rows, bool)
    train_mask[splits["train"]] = True
    prep = preprocessor or Preprocessor.fit(table, tasks, users, items, train_mask)
    if prep.spec.tasks != tuple(tasks):
        raise TrainingTableError(f"model tasks {prep.spec.tasks} differ from the set's {tasks}")
    bundle = prep.encode(table, users, items)
    user_code = vocabulary_codes(_int(table, "user_id"), prep.vocab["user_id"]).astype(np.int64)
    latent = None
    if truth_home is not None:
        matrix = latent_stage_matrix(Path(truth_home), days, prep.vocab["user_id"])
        latent = None if matrix is None else matrix[user_code, day]
    data = WorldData(
        spec=prep.spec,
        config=cfg,
        bundle=bundle,
        user=user_code,
        day=day,
        rule_stage=_int(table, "user_lifecycle__lifecycle_stage_id").astype(np.int8),
        latent_stage=latent,
        days=days,
        splits=splits,
        dense_mean=prep.mean,
        dense_std=prep.std,
    )
    return data, prep
