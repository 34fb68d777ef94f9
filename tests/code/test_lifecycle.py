"""The rule-based stage: properties that must hold for any input."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from stan_model.lifecycle import (
    LOYAL,
    NEW,
    NEW_USER_DAYS,
    STICK,
    WANDER,
    rule_based_stage,
    windowed_sum,
)

counts = arrays(np.int64, 40, elements=st.integers(0, 50))


@settings(max_examples=60, deadline=None)
@given(
    tenure=arrays(np.int64, 40, elements=st.integers(0, 400)), imp=counts, ls=counts, orders=counts
)
def test_rule_properties(tenure, imp, ls, orders):
    ls, orders = np.minimum(ls, imp), np.minimum(orders, imp)
    stage = rule_based_stage(tenure, imp, ls, orders)
    assert np.all((tenure < NEW_USER_DAYS) == (stage == NEW))
    assert np.all(stage[(tenure >= NEW_USER_DAYS) & (imp == 0)] == -1)
    scored = (tenure >= NEW_USER_DAYS) & (imp > 0)
    assert set(np.unique(stage[scored])) <= {WANDER, STICK, LOYAL}
    # A loyal user has a strictly positive CVR (above a median that is at least zero).
    assert np.all(orders[stage == LOYAL] > 0)


def test_rule_on_a_hand_made_population():
    tenure = np.array([2, 30, 30, 30, 30, 30])
    imp = np.array([5, 100, 100, 100, 100, 0])
    ls = np.array([0, 1, 40, 30, 2, 0])
    orders = np.array([0, 0, 0, 5, 0, 0])
    assert rule_based_stage(tenure, imp, ls, orders).tolist() == [
        NEW,
        WANDER,
        STICK,
        LOYAL,
        WANDER,
        -1,
    ]


def test_windowed_sum():
    daily = np.arange(1, 6, dtype=float)[None, :]
    assert windowed_sum(daily, 2).tolist() == [[1, 3, 5, 7, 9]]
    assert windowed_sum(daily, 30).tolist() == [[1, 3, 6, 10, 15]]
