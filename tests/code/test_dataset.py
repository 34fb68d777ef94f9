"""The model dataset: leakage-free history (hand-built world and a brute-force property), split."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stan_model.data import raw_store
from stan_model.data.dataset import DatasetConfig, build_dataset
from stan_model.data.history import prior_window
from stan_model.schema import (
    DEFAULT_TASKS,
    EVENTS_SCHEMA,
    ITEMS_SCHEMA,
    USERS_SCHEMA,
    WorldManifest,
)

DAY0 = dt.date(2026, 1, 1)
# (name, user, day, hour, minute, click, stay_seconds, order) -- by hand, see the expectations.
EVENTS = [
    ("A", 1, 0, 10, 0, 1, 40.0, 0),
    ("B", 1, 0, 10, 0, 0, 0.0, 0),  # same timestamp as A: neither sees the other
    ("C", 2, 0, 10, 30, 1, 5.0, 1),
    ("D", 1, 0, 11, 0, 1, 10.0, 0),
    ("E", 1, 1, 9, 0, 0, 0.0, 0),
    ("F", 1, 31, 9, 0, 1, 50.0, 1),  # its 30-day window starts exactly at E
    ("G", 1, 32, 9, 0, 1, 0.0, 0),
    ("H", 2, 33, 9, 0, 0, 0.0, 0),
    ("I", 1, 34, 9, 0, 1, 0.0, 0),
]


def _ts(day: int, hour: int, minute: int) -> dt.datetime:
    base = dt.datetime(DAY0.year, DAY0.month, DAY0.day, tzinfo=dt.UTC)
    return base + dt.timedelta(days=day, hours=hour, minutes=minute)


def _write_world(home: Path, events=EVENTS) -> None:
    by_day: dict[int, list] = {}
    for i, (_, user, day, hour, minute, click, stay, order) in enumerate(events):
        by_day.setdefault(day, []).append(
            (i, user, 1 + user % 2, 100 + i, _ts(day, hour, minute), i % 3, click, stay, order)
        )
    for day, rows in by_day.items():
        cols = list(zip(*rows, strict=True))
        table = pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(cols, EVENTS_SCHEMA, strict=True)],
            schema=EVENTS_SCHEMA,
        )
        raw_store.write_parquet(table, raw_store.events_partition(home, DAY0 + dt.timedelta(day)))
    signup = _ts(-10, 0, 0)
    users = pa.Table.from_pylist(
        [
            {
                "user_id": u,
                "signup_ts": signup,
                "age_bucket": u,
                "gender": 0,
                "device_os": 1,
                "city_tier": 2,
            }
            for u in (1, 2)
        ],
        schema=USERS_SCHEMA,
    )
    items = pa.Table.from_pylist(
        [
            {
                "item_id": i,
                "category_id": i,
                "author_id": -1,
                "duration_s": 30.0,
                "price": 9.0,
                "created_ts": signup,
            }
            for i in (1, 2)
        ],
        schema=ITEMS_SCHEMA,
    )
    raw_store.write_parquet(users, raw_store.users_path(home))
    raw_store.write_parquet(items, raw_store.items_path(home))
    last = max(e[2] for e in events)
    raw_store.write_manifest(
        home,
        WorldManifest(
            source="test",
            tasks=list(DEFAULT_TASKS),
            start_date=DAY0.isoformat(),
            end_date=(DAY0 + dt.timedelta(last)).isoformat(),
            n_users=2,
            n_items=2,
            n_events=len(events),
        ),
    )


def _rows_by_name(data, events=EVENTS) -> dict[str, int]:
    """Dataset rows are in time order; map each hand-made event to its row."""
    order = sorted(range(len(events)), key=lambda i: (_ts(*events[i][2:5]), i))
    return {events[i][0]: row for row, i in enumerate(order)}


@pytest.fixture(scope="module")
def hand_world(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("hand_world")
    _write_world(home)
    return home


def test_pseudo_labels_use_only_strictly_earlier_rows_in_the_window(hand_world):
    data = build_dataset(hand_world, DatasetConfig(prior_strength=0.0))
    rows = _rows_by_name(data)
    pseudo = data.bundle.pseudo.numpy().astype(np.float64)
    expected = {  # (ctr, stay, cvr) rates of the user's earlier rows
        "A": (0.5, 0.5, 0.5),  # nothing earlier anywhere: the prior's starting value
        "B": (0.5, 0.5, 0.5),  # A shares B's timestamp, so A is not "before" B
        "C": (0.5, 0.5, 1 / 6),  # user 2 has no history: the population rate before it (A, B)
        "D": (1 / 2, 1 / 2, 0.0),  # A and B
        "E": (2 / 3, 1 / 3, 0.0),  # A, B, D
        "F": (0.0, 0.0, 0.0),  # 30-day window: only E (A, B, D are older than 30 days)
        "G": (1.0, 1.0, 1.0),  # F only
    }
    for name, rates in expected.items():
        np.testing.assert_allclose(pseudo[rows[name]], rates, rtol=1e-6, err_msg=name)
    history = data.bundle.history.numpy()
    assert [history[rows[n]] for n in "ABDE"] == [1, 1, 3, 4]


def test_no_feature_of_a_sample_changes_when_its_own_or_later_labels_change(tmp_path):
    flipped = [
        (*e[:5], 1 - e[5], 0.0 if e[6] else 45.0, 1 - e[7]) if i >= 3 else e
        for i, e in enumerate(EVENTS)
    ]  # D and everything after it get opposite labels
    _write_world(tmp_path / "a")
    _write_world(tmp_path / "b", flipped)
    a, b = build_dataset(tmp_path / "a"), build_dataset(tmp_path / "b")
    rows = _rows_by_name(a)
    upto_d = [rows[n] for n in "ABCD"]

    def raw_dense(data):  # undo the z-scoring (its statistics span the training days)
        return data.bundle.dense.numpy() * data.dense_std + data.dense_mean

    np.testing.assert_allclose(raw_dense(a)[upto_d], raw_dense(b)[upto_d], rtol=1e-5, atol=1e-6)
    assert np.array_equal(a.bundle.pseudo[upto_d], b.bundle.pseudo[upto_d])
    assert np.array_equal(a.rule_stage[upto_d], b.rule_stage[upto_d])
    assert np.array_equal(a.bundle.sparse[upto_d], b.bundle.sparse[upto_d])
    # ... while a later sample does see the flipped earlier labels (the test can fail).
    assert not np.array_equal(a.bundle.pseudo[rows["E"]], b.bundle.pseudo[rows["E"]])


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 40), st.integers(0, 1)),
        min_size=1,
        max_size=40,
    ),
    window=st.one_of(st.none(), st.integers(1, 15)),
)
def test_prior_window_matches_a_brute_force_loop(rows, window):
    group = np.array([r[0] for r in rows])
    ts = np.array([r[1] for r in rows])
    values = np.array([[r[2], 2.5 * r[2]] for r in rows], dtype=float)
    got = prior_window(group, ts, values, window)
    for i in range(len(rows)):
        earlier = (group == group[i]) & (ts < ts[i])
        inside = earlier & ((ts >= ts[i] - window) if window is not None else True)
        assert got.count[i] == inside.sum()
        np.testing.assert_allclose(got.sums[i], values[inside].sum(axis=0))
        assert got.last_gap[i] == (ts[i] - ts[earlier].max() if earlier.any() else -1)


def test_split_features_and_metadata_on_tiny(tiny_world):
    data = build_dataset(tiny_world)
    days = data.day
    assert set(days[data.splits["test"]]) == {11, 12, 13}
    assert set(days[data.splits["valid"]]) == {10}
    assert days[data.splits["train"]].max() == 9
    n = len(data.bundle)
    assert sum(len(v) for v in data.splits.values()) == n
    assert data.bundle.sparse.shape == (n, len(data.spec.sparse))
    assert data.bundle.dense.shape == (n, len(data.spec.dense))
    vocab = np.array([f.vocab_size for f in data.spec.sparse])
    assert (data.bundle.sparse.numpy() < vocab).all() and (data.bundle.sparse.numpy() >= 0).all()
    train_dense = data.bundle.dense[data.splits["train"]]
    np.testing.assert_allclose(train_dense.mean(0), 0, atol=1e-4)  # z-scored on train only
    assert data.latent_stage is not None and set(np.unique(data.rule_stage)) <= {-1, 0, 1, 2, 3}
    assert "user_rate_30d_cvr" in [f.name for f in data.spec.dense]  # pseudo-labels as inputs


def test_a_world_too_short_for_the_split_says_so(tiny_world):
    with pytest.raises(ValueError, match="test_days=13"):
        build_dataset(tiny_world, DatasetConfig(test_days=13))
