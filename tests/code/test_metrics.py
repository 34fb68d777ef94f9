"""Metrics agree with scikit-learn on random inputs, and behave on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score, roc_auc_score

from stan_model.metrics import auc, auc_by_stage, linear_probe, ndcg_at_k, rela_impr

labels_and_scores = st.integers(2, 80).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        # few distinct values: plenty of ties
        st.lists(st.sampled_from([-1.0, 0.0, 0.25, 0.5, 3.0]), min_size=n, max_size=n)
        | st.lists(st.floats(-5, 5, allow_nan=False), min_size=n, max_size=n),
    )
)


@settings(max_examples=150, deadline=None)
@given(labels_and_scores)
def test_auc_matches_sklearn(data):
    y, s = (np.array(v) for v in data)
    assume(0 < y.sum() < len(y))
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auc_without_both_classes_is_nan():
    assert math.isnan(auc(np.ones(4), np.arange(4.0)))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 1), st.sampled_from([0.0, 0.3, 0.6, 1.0])),
        min_size=2,
        max_size=60,
    ),
    st.integers(1, 8),
)
def test_ndcg_matches_sklearn_per_list(rows, k):
    groups, y, s = (np.array(v) for v in zip(*rows, strict=True))
    got, n_lists = ndcg_at_k(y, s, groups, k)
    expected = []
    for g in np.unique(groups):
        m = groups == g
        if y[m].sum() == 0:
            continue  # documented: lists without a positive are left out
        if m.sum() == 1:
            expected.append(1.0)  # scikit-learn refuses one-item lists; one positive is ideal
        else:
            expected.append(ndcg_score(y[m][None], s[m][None], k=k))
    assert n_lists == len(expected)
    if expected:
        assert got == pytest.approx(np.mean(expected), abs=1e-12)
    else:
        assert math.isnan(got)


def test_ndcg_by_hand():
    # list 1: the positive ranked second of three -> 1/log2(3); list 2: no positive, left out.
    y = np.array([0, 1, 0, 0, 0])
    s = np.array([0.9, 0.5, 0.1, 0.3, 0.2])
    g = np.array([1, 1, 1, 2, 2])
    value, n = ndcg_at_k(y, s, g, k=5)
    assert n == 1 and value == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k(y, s, g, k=1)[0] == 0.0


def test_rela_impr_is_the_papers_formula():
    # PLE 0.8317 -> STAN 0.8419 on WeChat-Video "like": (0.3419 / 0.3317 - 1) * 100
    assert rela_impr(0.8419, 0.8317) == pytest.approx(3.0751, abs=1e-3)
    assert rela_impr(0.7, 0.7) == 0.0


def test_auc_by_stage_slices():
    y = np.array([0, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.9, 0.8, 0.2, 0.5, 0.5])
    stage = np.array([0, 0, 1, 1, 2, 2])
    out = auc_by_stage(y, s, stage, ("a", "b", "c", "d"))
    assert out["a"] == 1.0 and out["b"] == 0.0 and out["c"] == 0.5 and math.isnan(out["d"])


def test_linear_probe_reads_a_linearly_coded_stage_and_not_noise():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(400), 3)
    stages = rng.integers(0, 4, len(users))
    informative = np.eye(4)[stages] * 3 + rng.normal(0, 1, (len(users), 4))
    good = linear_probe(np.c_[informative, rng.normal(size=(len(users), 6))], stages, users, 4)
    noise = linear_probe(rng.normal(size=(len(users), 10)), stages, users, 4)
    assert good.balanced_accuracy > 0.85
    assert noise.balanced_accuracy < 0.4
    assert good.n_train + good.n_test == len(users)
