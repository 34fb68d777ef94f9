"""Behavioural tests of the `small` world (DESIGN.md's simulator requirements, issue #2).

Direction tests: each lifecycle stage behaves as the business describes it, item drivers differ by
stage, the chain is driven by engagement, and the observable rule disagrees with the truth for a
realistic share of user-days.
"""

import numpy as np
import pytest

from stan_model.data import raw_store
from stan_model.data.world_stats import load_panel, rule_agreement, stage_rates
from stan_model.schema import read_table


@pytest.fixture(scope="module")
def panel(small_world):
    return load_panel(small_world)


@pytest.fixture(scope="module")
def rates(panel):
    return stage_rates(panel)


def test_every_stage_is_populated(rates):
    for stage, r in rates.items():
        assert r["impressions"] > 5_000, stage


def test_new_users_click_least(rates):
    assert rates["new"]["ctr"] == min(r["ctr"] for r in rates.values())


def test_stick_users_stay_longest(rates):
    assert rates["stick"]["long_stay_rate"] == max(r["long_stay_rate"] for r in rates.values())


def test_loyal_users_convert_most(rates):
    assert rates["loyal"]["cvr"] == max(r["cvr"] for r in rates.values())
    assert rates["loyal"]["cvr"] > 5 * rates["stick"]["cvr"]


def test_wanderers_stay_briefly_and_rarely_buy(rates):
    assert rates["wander"]["long_stay_rate"] < 0.25 * rates["stick"]["long_stay_rate"]
    assert rates["wander"]["long_stay_rate"] < rates["loyal"]["long_stay_rate"]
    assert rates["wander"]["cvr"] < rates["stick"]["cvr"] < rates["loyal"]["cvr"]
    assert rates["wander"]["ctr"] > rates["new"]["ctr"]  # they do click


def test_rule_based_stage_agrees_for_a_realistic_share(panel):
    agreement, confusion = rule_agreement(panel)
    assert 0.40 <= agreement <= 0.85, (agreement, confusion)
    # ... and is informative: each latent stage's most frequent rule label is the stage itself.
    assert np.all(confusion.argmax(axis=1) == np.arange(4)), confusion


def _slope(x, y):
    """Least-squares slope of y on standardised x."""
    x = (x - x.mean()) / x.std()
    return float(np.mean(x * (y - y.mean())))


def test_item_drivers_differ_by_stage(small_world, panel):
    events = raw_store.read_events(small_world)
    items = read_table(raw_store.items_path(small_world), "items")
    item = events["item_id"].to_numpy()
    stage = panel.latent_stage[panel.event_user, panel.event_day]
    log_len = np.log(items["duration_s"].to_numpy()[item])
    log_price = np.log(items["price"].to_numpy()[item])
    exposure = np.bincount(item, minlength=items.num_rows)[item].astype(float)
    click, order = panel.event_click.astype(float), panel.event_order.astype(float)
    new, wander, stick, loyal = (stage == s for s in range(4))
    # Stickers click long content; wanderers prefer it short.
    assert _slope(log_len[stick], click[stick]) > 0 > _slope(log_len[wander], click[wander])
    # New users follow popularity more than stickers do.
    assert _slope(np.log(exposure[new]), click[new]) > _slope(np.log(exposure[stick]), click[stick])
    # Loyal users' orders fall with price (among their clicks).
    clicked_loyal = loyal & (click == 1)
    assert _slope(log_price[clicked_loyal], order[clicked_loyal]) < 0


def test_chain_moves_in_every_direction(panel):
    s = panel.latent_stage
    prev, nxt = s[:, :-1], s[:, 1:]
    known = (prev >= 0) & (nxt >= 0)
    progress = known & (prev < 4) & (nxt == prev + 1) & (nxt < 4)
    regress = known & (prev >= 2) & (prev < 4) & (nxt == prev - 1)
    churn = known & (prev < 4) & (nxt == 4)
    back = known & (prev == 4) & (nxt == 1)
    for name, moves in {
        "progress": progress,
        "regress": regress,
        "churn": churn,
        "return": back,
    }.items():
        assert moves.sum() > 20, name


def test_progress_is_driven_by_engagement(small_world, panel):
    """Wanderers who move up to stick had engaged more the day before than those who stayed."""
    days = panel.days
    eng = np.zeros(panel.latent_stage.shape)
    for j, d in enumerate(days):
        t = read_table(raw_store.truth_partition(small_world, d), "truth")
        eng[t["user_id"].to_numpy(), j] = t["engagement"].to_numpy()
    prev, nxt = panel.latent_stage[:, :-1], panel.latent_stage[:, 1:]
    up = (prev == 1) & (nxt == 2)
    stay = (prev == 1) & (nxt == 1)
    assert eng[:, :-1][up].mean() > 1.2 * eng[:, :-1][stay].mean()
