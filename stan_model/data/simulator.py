"""The lifecycle world simulator (DESIGN.md, "The lifecycle world simulator").

Each user has a latent lifecycle stage per day -- new, wander, stick, loyal, or churned -- that
evolves by a Markov chain whose progress depends on the user's own recent engagement (see
:class:`~stan_model.data.world_config.Transitions`). Each day every live user opens Poisson many
sessions; each session shows impressions of items drawn by popularity or from the user's favourite
category; click, watched fraction (hence ``stay_seconds``) and order are drawn from per-stage
logits whose item drivers differ by stage (popularity for new users, short popular content for
wanderers, content length for stickers, category affinity and price for loyal users).

The latent stage never reaches the raw events: it is written only to ``truth/``. Everything is
vectorised over a day's impressions and deterministic per ``config.seed``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from stan_model.data import raw_store
from stan_model.data.world_config import WorldConfig
from stan_model.schema import (
    DEFAULT_TASKS,
    EVENTS_SCHEMA,
    ITEMS_SCHEMA,
    TRUTH_SCHEMA,
    USERS_SCHEMA,
    WorldManifest,
)

log = logging.getLogger(__name__)

NEW, WANDER, STICK, LOYAL, CHURNED = range(5)
DAY_S = 86_400
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _day_start_us(day: dt.date) -> int:
    return (
        int((dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) - _EPOCH).total_seconds())
        * 1_000_000
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-12)


@dataclass
class Items:
    """Item attributes, and their z-scored drivers used by the behaviour logits."""

    table: pa.Table
    category: np.ndarray  # (I,)
    duration_s: np.ndarray  # (I,)
    popularity_cdf: np.ndarray  # (I,) cumulative exposure weights
    pop_z: np.ndarray
    len_z: np.ndarray
    price_z: np.ndarray
    by_category: np.ndarray  # item ids sorted by category
    category_start: np.ndarray  # (C+1,) offsets into by_category


@dataclass
class Users:
    """Latent per-user traits and the chain's state (mutated day by day)."""

    table: pa.Table
    signup_day: np.ndarray  # (U,) day index of signup; negative = before the window
    signup_second: np.ndarray  # (U,) second of the signup day; no session starts before it
    activity: np.ndarray  # (U,) session-rate multiplier
    preference: np.ndarray  # (U, C) category preferences, rows sum to 1
    favourite: np.ndarray  # (U,) argmax of preference
    click_bias: np.ndarray
    watch_bias: np.ndarray
    order_bias: np.ndarray
    stage: np.ndarray  # (U,) int8 current latent stage
    engagement: np.ndarray  # (U,) EMA of daily engagement
    days_in_stage: np.ndarray  # (U,)


def _make_items(cfg: WorldConfig, rng: np.random.Generator) -> Items:
    n, c = cfg.n_items, cfg.n_categories
    # Category sizes follow a mild Zipf law: some categories are much larger than others.
    cat_weights = 1.0 / np.arange(1, c + 1) ** 0.7
    category = rng.choice(c, size=n, p=cat_weights / cat_weights.sum()).astype(np.int32)
    # Exposure popularity: Zipf over a random ranking of the items.
    rank = rng.permutation(n) + 1
    popularity = 1.0 / rank**0.9
    duration = np.clip(rng.lognormal(np.log(35.0), 0.8, n), 3.0, 900.0)
    price = np.clip(rng.lognormal(np.log(30.0), 0.9, n), 1.0, 5000.0)
    created = _day_start_us(cfg.start_date) - rng.integers(1, 90 * DAY_S, n) * 1_000_000
    by_category = np.argsort(category, kind="stable")
    category_start = np.searchsorted(category[by_category], np.arange(c + 1))
    table = pa.Table.from_arrays(
        [
            pa.array(np.arange(n, dtype=np.int64)),
            pa.array(category),
            pa.array(rng.integers(0, max(1, n // 10), n).astype(np.int64)),
            pa.array(duration.astype(np.float32)),
            pa.array(price.astype(np.float32)),
            pa.array(created, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        ],
        schema=ITEMS_SCHEMA,
    )
    cdf = np.cumsum(popularity)
    return Items(
        table=table,
        category=category,
        duration_s=duration,
        popularity_cdf=cdf / cdf[-1],
        pop_z=_zscore(np.log(popularity)),
        len_z=_zscore(np.log(duration)),
        price_z=_zscore(np.log(price)),
        by_category=by_category,
        category_start=category_start,
    )


def _make_users(cfg: WorldConfig, rng: np.random.Generator) -> Users:
    n, c, noise = cfg.n_users, cfg.n_categories, cfg.noise
    existing = rng.random(n) < cfg.initial_user_share
    # Pre-existing users signed up 8..~400 days ago; the others arrive uniformly over the window.
    tenure = 8 + rng.exponential(120.0, n).astype(np.int64)
    signup_day = np.where(existing, -tenure, rng.integers(0, cfg.n_days, n))
    mix = cfg.initial_stage_mix
    initial = rng.choice(
        [WANDER, STICK, LOYAL, CHURNED], size=n, p=[mix.wander, mix.stick, mix.loyal, mix.churned]
    )
    stage = np.where(existing, initial, NEW).astype(np.int8)
    preference = rng.dirichlet(np.full(c, noise.affinity_concentration), size=n)
    order_bias = rng.normal(0.0, noise.user_order_bias, n)
    # Coarse profile attributes, weakly tied to latent traits (observable but never the stage).
    age_bucket = np.clip(
        np.round(2.5 + 0.8 * order_bias / max(noise.user_order_bias, 1e-9) + rng.normal(0, 1.2, n)),
        0,
        5,
    )
    # Leave two hours after signup so a user's first sessions fit in the signup day.
    signup_second = rng.integers(0, DAY_S - 7_200, n)
    signup_us = _day_start_us(cfg.start_date) + (signup_day * DAY_S + signup_second) * 1_000_000
    table = pa.Table.from_arrays(
        [
            pa.array(np.arange(n, dtype=np.int64)),
            pa.array(signup_us, type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array(age_bucket.astype(np.int8)),
            pa.array(rng.integers(0, 2, n).astype(np.int8)),
            pa.array(rng.integers(0, 3, n).astype(np.int8)),
            pa.array(rng.integers(1, 5, n).astype(np.int8)),
        ],
        schema=USERS_SCHEMA,
    )
    mid = cfg.transitions.engagement_mid.array()
    return Users(
        table=table,
        signup_day=signup_day,
        signup_second=signup_second,
        activity=rng.lognormal(0.0, cfg.activity.user_activity_sigma, n),
        preference=preference,
        favourite=preference.argmax(axis=1),
        click_bias=rng.normal(0.0, noise.user_click_bias, n),
        watch_bias=rng.normal(0.0, noise.user_watch_bias, n),
        order_bias=order_bias,
        stage=stage,
        # Start each user's engagement at its stage's midpoint (churned: zero).
        engagement=np.where(stage < CHURNED, mid[np.minimum(stage, LOYAL)], 0.0),
        days_in_stage=np.where(existing, rng.integers(0, 30, n), 0),
    )


class WorldSimulator:
    """Generates a world day by day. ``days()`` yields ``(day, events, truth)`` tables."""

    def __init__(self, config: WorldConfig):
        self.cfg = config
        self.rng = np.random.default_rng(config.seed)
        self.items = _make_items(config, self.rng)
        self.users = _make_users(config, self.rng)
        self._next_event_id = 0
        self._next_session_id = 0

    def days(self) -> Iterator[tuple[dt.date, pa.Table, pa.Table]]:
        for index, day in enumerate(self.cfg.days):
            events, daily = self._impressions(index, day)
            truth = self._truth(index, day)
            self._advance_chain(index, daily)
            yield day, events, truth

    # -- one day of impressions -------------------------------------------------------------
    def _impressions(self, index: int, day: dt.date) -> tuple[pa.Table, dict[str, np.ndarray]]:
        cfg, rng, users, items = self.cfg, self.rng, self.users, self.items
        act, beh = cfg.activity, cfg.behaviour
        alive = (users.signup_day <= index) & (users.stage != CHURNED)
        uid = np.flatnonzero(alive)
        stage_u = users.stage[uid]

        # Sessions per live user, then impressions per session.
        n_sessions = rng.poisson(act.sessions_per_day.array()[stage_u] * users.activity[uid])
        s_user = np.repeat(uid, n_sessions)  # (S,)
        s_stage = users.stage[s_user]
        n_imp = 1 + rng.poisson(np.maximum(act.impressions_per_session.array()[s_stage] - 1, 0))
        n_events = int(n_imp.sum())
        user = np.repeat(s_user, n_imp)  # (N,)
        session = np.repeat(np.arange(len(s_user)), n_imp)
        first = np.repeat(np.cumsum(n_imp) - n_imp, n_imp)
        position = np.arange(n_events) - first  # rank within the session
        stage = users.stage[user].astype(np.intp)

        # Session start uniform over the day (on the signup day: after signing up), ~20 s apart.
        earliest = np.where(users.signup_day[s_user] == index, users.signup_second[s_user], 0)
        start_s = rng.uniform(earliest, DAY_S - 3_600)
        offset_s = start_s[session] + position * 20.0 + rng.uniform(0, 20.0, n_events)
        offset_s = np.minimum(offset_s, DAY_S - 1e-3)  # a long session never spills into tomorrow

        # Which items: the user's favourite category, or popularity-weighted over everything.
        from_fav = rng.random(n_events) < act.affinity_exposure
        cat = users.favourite[user]
        lo, hi = items.category_start[cat], items.category_start[cat + 1]
        fav_pick = items.by_category[
            np.minimum(
                lo + (rng.random(n_events) * (hi - lo)).astype(np.int64), len(items.by_category) - 1
            )
        ]
        fav_pick = np.where(hi > lo, fav_pick, 0)
        pop_pick = np.searchsorted(items.popularity_cdf, rng.random(n_events), side="right")
        item = np.where(from_fav & (hi > lo), fav_pick, np.minimum(pop_pick, cfg.n_items - 1))

        icat = items.category[item]
        affinity = np.clip(
            np.log(users.preference[user, icat] * cfg.n_categories + 1e-3), -3.0, 2.5
        )
        pop_z, len_z, price_z = items.pop_z[item], items.len_z[item], items.price_z[item]
        eps = cfg.noise.impression_logit

        def per(p):  # the per-stage knob, gathered per impression
            return p.array()[stage]

        click_logit = (
            per(beh.click_base)
            + users.click_bias[user]
            + per(beh.click_popularity) * pop_z
            + per(beh.click_length) * len_z
            + per(beh.click_affinity) * affinity
            + rng.normal(0, eps, n_events)
        )
        click = rng.random(n_events) < _sigmoid(click_logit)
        watch_logit = (
            per(beh.watch_base)
            + users.watch_bias[user]
            + per(beh.watch_length) * len_z
            + per(beh.watch_affinity) * affinity
            + rng.normal(0, eps, n_events)
        )
        stay = np.where(click, items.duration_s[item] * _sigmoid(watch_logit), 0.0)
        order_logit = (
            per(beh.order_base)
            + users.order_bias[user]
            + per(beh.order_price) * price_z
            + per(beh.order_affinity) * affinity
            + rng.normal(0, eps, n_events)
        )
        order = click & (rng.random(n_events) < _sigmoid(order_logit))

        ts_us = _day_start_us(day) + (offset_s * 1e6).astype(np.int64)
        sort = np.argsort(ts_us, kind="stable")
        event_id = self._next_event_id + np.arange(n_events, dtype=np.int64)
        self._next_event_id += n_events
        session_id = self._next_session_id + session
        self._next_session_id += len(s_user)
        events = pa.Table.from_arrays(
            [
                pa.array(event_id),
                pa.array(user[sort].astype(np.int64)),
                pa.array(item[sort].astype(np.int64)),
                pa.array(session_id[sort].astype(np.int64)),
                pa.array(ts_us[sort], type=pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                pa.array(position[sort].astype(np.int16)),
                pa.array(click[sort].astype(np.int8)),
                pa.array(stay[sort].astype(np.float32)),
                pa.array(order[sort].astype(np.int8)),
            ],
            schema=EVENTS_SCHEMA,
        )
        long_stay = stay >= beh.long_stay_threshold_s
        n = cfg.n_users
        daily = {
            "impressions": np.bincount(user, minlength=n).astype(np.float64),
            "score": np.bincount(user, weights=click + 2.0 * long_stay + 8.0 * order, minlength=n),
        }
        return events, daily

    def _truth(self, index: int, day: dt.date) -> pa.Table:
        users = self.users
        signed = np.flatnonzero(users.signup_day <= index)
        return pa.Table.from_arrays(
            [
                pa.array(signed.astype(np.int64)),
                pa.array(np.full(len(signed), day), type=pa.date32()),
                pa.array(users.stage[signed].astype(np.int8)),
                pa.array(users.engagement[signed].astype(np.float32)),
            ],
            schema=TRUTH_SCHEMA,
        )

    # -- the Markov chain ---------------------------------------------------------------------
    def _advance_chain(self, index: int, daily: dict[str, np.ndarray]) -> None:
        tr, users, rng = self.cfg.transitions, self.users, self.rng
        active = daily["impressions"] > 0
        today = np.where(active, daily["score"] / np.maximum(daily["impressions"], 1.0), 0.0)
        d = tr.engagement_decay
        users.engagement = np.where(
            active, d * users.engagement + (1 - d) * today, d * users.engagement
        )

        stage = users.stage.astype(np.intp)
        live = (users.signup_day <= index) & (stage != CHURNED)
        s = np.minimum(stage, LOYAL)
        mid = tr.engagement_mid.array()[s]
        z = (users.engagement - mid) / mid
        up, down = _sigmoid(tr.sensitivity * z), _sigmoid(-tr.sensitivity * z)
        u = rng.random(len(stage))
        p_churn = tr.churn.array()[s] * down
        p_regress = tr.regress.array()[s] * down
        p_progress = tr.progress.array()[s] * up
        p_progress = np.where(
            (stage == NEW) & (users.days_in_stage + 1 >= tr.max_new_days), 1.0, p_progress
        )

        new_stage = stage.copy()
        churn = live & (u < p_churn)
        regress = live & ~churn & (u < p_churn + p_regress) & (stage >= STICK)
        progress = (
            live & ~churn & ~regress & (u < p_churn + p_regress + p_progress) & (stage < LOYAL)
        )
        new_stage[churn] = CHURNED
        new_stage[regress] = stage[regress] - 1
        new_stage[progress] = stage[progress] + 1
        back = (stage == CHURNED) & (users.signup_day <= index) & (u < tr.return_rate)
        new_stage[back] = WANDER
        users.engagement[back] = tr.engagement_mid.wander * 0.5

        changed = new_stage != stage
        users.days_in_stage = np.where(changed, 0, users.days_in_stage + 1)
        users.stage = new_stage.astype(np.int8)


@dataclass
class SimulationReport:
    days: int
    events: int
    users: int
    items: int
    generate_s: float  # time spent generating, excluding Parquet writes
    write_s: float

    @property
    def events_per_s(self) -> float:
        return self.events / max(self.generate_s, 1e-9)


def write_world(config: WorldConfig, home: str | Path, progress: bool = False) -> SimulationReport:
    """Simulate ``config`` and write raw events, users, items and truth under ``home``.

    Day partitions are replaced, never appended to; partitions from an earlier, longer world that
    fall outside this one are removed so the raw folder holds exactly one world.
    """
    from tqdm import tqdm

    home = Path(home)
    sim = WorldSimulator(config)
    t_gen = t_write = 0.0
    n_events = 0
    keep = {d.isoformat() for d in config.days}
    for root in (raw_store.events_dir(home), home / "truth" / "user_stage"):
        if root.exists():
            for child in root.iterdir():
                if child.name.startswith("dt=") and child.name[3:] not in keep:
                    for f in child.iterdir():
                        f.unlink()
                    child.rmdir()
    t0 = time.perf_counter()
    it = sim.days()
    bar = tqdm(
        total=config.n_days, desc=f"simulate {config.name}", unit="day", disable=not progress
    )
    for day, events, truth in it:
        t1 = time.perf_counter()
        t_gen += t1 - t0
        raw_store.write_parquet(events, raw_store.events_partition(home, day))
        raw_store.write_parquet(truth, raw_store.truth_partition(home, day))
        n_events += events.num_rows
        bar.update(1)
        bar.set_postfix(events=f"{n_events:,}")
        t0 = time.perf_counter()
        t_write += t0 - t1
    bar.close()
    t1 = time.perf_counter()
    raw_store.write_parquet(sim.users.table, raw_store.users_path(home))
    raw_store.write_parquet(sim.items.table, raw_store.items_path(home))
    manifest = WorldManifest(
        source="simulator",
        tasks=list(DEFAULT_TASKS),
        start_date=config.days[0].isoformat(),
        end_date=config.days[-1].isoformat(),
        n_users=config.n_users,
        n_items=config.n_items,
        n_events=n_events,
        details={"config": config.model_dump(mode="json")},
    )
    raw_store.write_manifest(home, manifest)
    t_write += time.perf_counter() - t1
    return SimulationReport(config.n_days, n_events, config.n_users, config.n_items, t_gen, t_write)
