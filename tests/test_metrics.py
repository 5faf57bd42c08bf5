"""Metrics: each checked on a hand-computed example (arithmetic in comments) plus edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recgym.experiments.exposure import ExposureTracker
from recgym.experiments.metrics import (
    coverage,
    ctr,
    ctr_by_popularity_decile,
    gini,
    intra_list_diversity,
    lorenz_curve,
    ndcg_at_k,
    new_item_curves,
    new_user_ctr_curve,
    novelty,
    tail_ctr,
    tail_mask_from_popularity,
    tail_share,
)

L2, L3 = math.log2(2), math.log2(3)  # discounts 1/log2(j+2): 1, 1/log2(3), 1/2


# ------------------------------------------------------------------------------------------------ NDCG
def test_ndcg_hand_computed() -> None:
    # candidates (0.9, 0.5, 0.1, 0.0); slate shows (0.5, 0.9); k = 2
    # DCG  = 0.5/1 + 0.9/log2(3);  IDCG = 0.9/1 + 0.5/log2(3)
    dcg = 0.5 + 0.9 / L3
    idcg = 0.9 + 0.5 / L3
    out = ndcg_at_k([[0.5, 0.9]], [[0.9, 0.5, 0.1, 0.0]], k=2)
    assert out.shape == (1,) and out.dtype == np.float64
    assert out[0] == pytest.approx(dcg / idcg)
    # k = 1 only looks at the first position: 0.5 / 0.9
    assert ndcg_at_k([[0.5, 0.9]], [[0.9, 0.5, 0.1, 0.0]], k=1)[0] == pytest.approx(0.5 / 0.9)
    # the ideal slate scores exactly 1
    assert ndcg_at_k([[0.9, 0.5]], [[0.1, 0.5, 0.9]])[0] == pytest.approx(1.0)


def test_ndcg_zero_ideal_nan_masked_and_ragged() -> None:
    # row 0: all candidates have zero gain -> undefined -> nan; row 1: nan = masked candidate ignored
    out = ndcg_at_k([[0.0, 0.0], [0.2, 0.4]], [[0.0, 0.0, 0.0], [0.4, np.nan, 0.2]])
    assert math.isnan(out[0])
    assert out[1] == pytest.approx((0.2 + 0.4 / L3) / (0.4 + 0.2 / L3))
    ragged = ndcg_at_k([[0.0, 0.0], [0.2, 0.4]], [np.zeros(5), np.array([0.4, 0.2])])
    np.testing.assert_allclose(ragged, out, equal_nan=True)
    # fewer candidates than k: ideal uses what exists (1 candidate, slate of 1)
    assert ndcg_at_k([[0.3]], [[0.3]])[0] == pytest.approx(1.0)
    assert ndcg_at_k(np.zeros((0, 3)), np.zeros((0, 5))).shape == (0,)


@pytest.mark.parametrize(
    ("slate", "cand", "k", "match"),
    [
        ([[0.5, -0.1]], [[0.5, 0.1]], None, "non-negative"),
        ([[0.5, np.nan]], [[0.5, 0.1]], None, "finite"),
        ([0.5, 0.1], [[0.5, 0.1]], None, "2-d"),
        ([[0.5, 0.1]], [[0.5, 0.1]], 3, r"k\): expected an int in \[1, 2\]"),
        ([[0.5, 0.1]], [[0.5, 0.1], [0.2, 0.2]], None, "1 rows"),
        ([[0.9, 0.8]], [[0.5, 0.1]], None, "DCG"),  # shown items not among the candidates
    ],
)
def test_ndcg_rejects_bad_input(slate, cand, k, match) -> None:
    with pytest.raises(ValueError, match=match):
        ndcg_at_k(slate, cand, k)


# ---------------------------------------------------------------------------------- CTR and exposure
def test_ctr() -> None:
    assert ctr([1, 0, 2], [3, 3, 4]) == pytest.approx(3 / 10)
    assert ctr(np.array([[True, False], [False, False]]), 4) == pytest.approx(0.25)
    assert math.isnan(ctr([], []))
    assert math.isnan(ctr(0, 0))
    with pytest.raises(ValueError, match="clicks <= total impressions"):
        ctr(5, 4)
    with pytest.raises(ValueError, match="non-negative"):
        ctr(-1, 4)


def test_coverage() -> None:
    assert coverage([3, 0, 1, 0]) == pytest.approx(2 / 4)
    assert coverage([3, 0, 1], n_items=10) == pytest.approx(2 / 10)  # short bincount: ids 3..9 never shown
    assert coverage([7]) == 1.0
    assert coverage([0, 0]) == 0.0
    assert math.isnan(coverage([]))
    with pytest.raises(ValueError, match="n_items"):
        coverage([1, 1, 1], n_items=2)


def test_gini_and_lorenz() -> None:
    # [1,2,3,4]: sum i*x_(i) = 1+4+9+16 = 30; G = 2*30/(4*10) - 5/4 = 0.25
    # check: sum_ij |xi-xj| = 2*(1+2+3+1+2+1) = 20; / (2 * n^2 * mean) = 20 / (2*16*2.5) = 0.25
    assert gini([4, 1, 3, 2]) == pytest.approx(0.25)
    assert gini([5, 5, 5]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 9]) == pytest.approx(3 / 4)  # all on one item: (n-1)/n
    assert gini([7]) == 0.0
    assert math.isnan(gini([])) and math.isnan(gini([0, 0]))
    x, y = lorenz_curve([3, 1])
    np.testing.assert_allclose(x, [0, 0.5, 1])
    np.testing.assert_allclose(y, [0, 0.25, 1])
    # Gini = 1 - 2 * area under the Lorenz curve (trapezoids) for a random vector
    c = np.random.default_rng(0).integers(0, 50, size=200)
    x, y = lorenz_curve(c)
    area = float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))
    assert gini(c) == pytest.approx(1 - 2 * area)
    with pytest.raises(ValueError, match="positive total"):
        lorenz_curve([0, 0])


def test_tail_share_ctr_and_mask() -> None:
    pop = [0.5, 0.05, 0.3, 0.01, 0.3]
    # head_fraction 0.4 -> ceil(2) head items: 0 (0.5) then 2 (0.3, tie with 4 broken by lower id)
    tail = tail_mask_from_popularity(pop, head_fraction=0.4)
    np.testing.assert_array_equal(tail, [False, True, False, True, True])
    exp, clk = np.array([10, 2, 6, 0, 2]), np.array([3, 1, 1, 0, 0])
    assert tail_share(exp, tail) == pytest.approx((2 + 0 + 2) / 20)
    assert tail_ctr(clk, exp, tail) == pytest.approx((1 + 0 + 0) / 4)
    assert math.isnan(tail_share([0, 0], [True, False]))
    assert math.isnan(tail_ctr([1, 0], [3, 0], [False, True]))
    with pytest.raises(ValueError, match="same shape"):
        tail_share([1, 2, 3], [True, False])


def test_novelty() -> None:
    pop = np.array([0.5, 0.25, 0.125])
    # shown 0, 1, 2, 2 -> (1 + 2 + 3 + 3) / 4 bits
    assert novelty([[0, 1], [2, 2]], pop) == pytest.approx(9 / 4)
    assert math.isnan(novelty(np.zeros((0, 2), dtype=np.int64), pop))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        novelty([0], [0.0, 0.5])
    with pytest.raises(ValueError, match=r"item ids in \[0, 3\)"):
        novelty([3], pop)


def test_intra_list_diversity() -> None:
    # slate 0: e1=(1,0), e2=(0,1), e3=(1,1)/sqrt2 -> cos: 0, 1/sqrt2, 1/sqrt2; mean distance 1 - sqrt2/3
    # slate 1: identical directions -> 0 ; slate 2: opposite -> 2 (scale does not matter)
    e = np.array([[[1, 0], [0, 1], [1, 1]], [[2, 0], [1, 0], [3, 0]], [[1, 0], [-1, 0], [1, 0]]], dtype=float)
    out = intra_list_diversity(e)
    np.testing.assert_allclose(out, [1 - math.sqrt(2) / 3, 0.0, (2 + 0 + 2) / 3], atol=1e-12)
    assert math.isnan(intra_list_diversity(np.ones((2, 1, 4)))[0])  # one item: no pairs
    with pytest.raises(ValueError, match="non-zero"):
        intra_list_diversity(np.zeros((1, 2, 3)))


def test_ctr_by_popularity_decile() -> None:
    # 4 items, 2 bins: by popularity ascending -> items 3 (0.1), 1 (0.2) in bin 0; 2 (0.3), 0 (0.4) in bin 1
    pop = [0.4, 0.2, 0.3, 0.1]
    ids = [[0, 1], [3, 2], [0, 3]]
    clicks = [[True, False], [True, False], [False, False]]
    out = ctr_by_popularity_decile(ids, clicks, pop, n_bins=2)
    # bin 0 impressions: 1, 3, 3 -> 3, clicks 1 (item 3); bin 1: 0, 2, 0 -> 3, clicks 1 (item 0)
    np.testing.assert_array_equal(out.impressions, [3, 3])
    np.testing.assert_array_equal(out.clicks, [1, 1])
    np.testing.assert_allclose(out.ctr, [1 / 3, 1 / 3])
    empty = ctr_by_popularity_decile(np.zeros((0, 2), dtype=np.int64), np.zeros((0, 2), bool), pop)
    assert empty.ctr.shape == (10,) and np.isnan(empty.ctr).all()
    with pytest.raises(ValueError, match="same shape"):
        ctr_by_popularity_decile([[0, 1]], [[True]], pop)


def test_new_user_ctr_curve() -> None:
    # step 0: (1 + 0) clicks / (2 + 2) imp; step 1: 2 / 2; step 2: nobody; step 5 ignored (n_steps=3)
    out = new_user_ctr_curve([0, 0, 1, 5], [1, 0, 2, 1], [2, 2, 2, 2], n_steps=3)
    np.testing.assert_allclose(out, [0.25, 1.0, np.nan])
    assert np.isnan(new_user_ctr_curve([], [], [], 2)).all()
    with pytest.raises(ValueError, match="clicks <= impressions"):
        new_user_ctr_curve([0], [3], [2], 2)


def test_new_item_curves() -> None:
    # new items 7 (released at 2) and 8 (released at 3); events (step, item, clicked)
    ev = [(1, 0, False), (2, 7, False), (2, 1, True), (4, 7, True), (4, 0, False), (4, 2, False), (5, 3, False)]
    s, i, c = (np.array(x) for x in zip(*ev, strict=True))
    out = new_item_curves(s, i, c, [7, 8], [2, 3])
    np.testing.assert_allclose(out.time_to_first_exposure, [0, np.nan])  # 7 at 2-2; 8 never
    np.testing.assert_allclose(out.time_to_first_click, [2, np.nan])  # 7 clicked at 4-2
    np.testing.assert_array_equal(out.steps, [1, 2, 4, 5])
    np.testing.assert_allclose(out.exposure_share, [np.nan, 1 / 2, 1 / 3, 0])  # step 1: no new item yet
    late = new_item_curves(s, i, c, [7, 9], [2, 6])  # item 9 released after the last step (5): not timed
    np.testing.assert_allclose(late.time_to_first_exposure, [0])
    np.testing.assert_allclose(new_item_curves(s, i, c, [7, 9], [2, 6], released_by=6).time_to_first_click,
                               [2, np.nan])
    with pytest.raises(ValueError, match="release"):
        new_item_curves([1], [7], [False], [7], [2])
    with pytest.raises(ValueError, match="distinct"):
        new_item_curves([1], [0], [False], [7, 7], [2, 2])


# --------------------------------------------------------------------------------------- tracker
def _tracker() -> ExposureTracker:
    # 6 items: 0,1 head; 2,3 tail; 4,5 new (released at step 1 and 5)
    return ExposureTracker(6, tail_mask=[False, False, True, True, True, True],
                           popularity=[0.5, 0.5, 0.25, 0.25, 0.125, 0.125],
                           new_item_ids=[5, 4], new_item_release_steps=[5, 1],
                           item_embeddings=np.eye(6) + 0.0, n_user_steps=3)


def test_tracker_hand_computed() -> None:
    t = _tracker()
    # step 0: warm user shows [0, 2] clicks [T, F]; cold user shows [1, 3] clicks [F, F]
    t.update(0, [[0, 2], [1, 3]], [[True, False], [False, False]], [[0.6, 0.2], [0.1, 0.3]],
             [False, True], user_step=[0, 0], candidate_relevance=[[0.6, 0.2, 0.1], [0.1, 0.3, 0.0]])
    # step 1: cold user shows [4, 0] clicks [T, T]; a masked row is ignored entirely
    t.update(1, [[4, 0], [5, 1]], [[True, True], [True, True]], [[0.5, 0.5], [0.9, 0.9]], [True, True],
             user_step=[1, 0], candidate_relevance=[[0.5, 0.5], [0.9, 0.9]], mask=[True, False])
    r = t.result()
    assert set(r) == {"all", "warm_users", "cold_users", "head_items", "tail_items", "new_items"}
    a = r["all"]
    # 3 slates, 6 impressions, 3 clicks
    assert (a["n_slates"], a["n_impressions"], a["n_clicks"]) == (3, 6, 3)
    assert a["ctr"] == pytest.approx(0.5)
    assert a["expected_ctr"] == pytest.approx((0.6 + 0.2 + 0.1 + 0.3 + 0.5 + 0.5) / 6)
    # NDCG: row0 ideal -> 1; row1 (0.1,0.3) vs ideal (0.3,0.1): (0.1+0.3/L3)/(0.3+0.1/L3); row2 -> 1
    nd1 = (0.1 + 0.3 / L3) / (0.3 + 0.1 / L3)
    assert a["ndcg"] == pytest.approx((1 + nd1 + 1) / 3)
    assert r["cold_users"]["ndcg"] == pytest.approx((nd1 + 1) / 2)
    assert r["warm_users"]["ctr"] == pytest.approx(1 / 2) and r["cold_users"]["ctr"] == pytest.approx(2 / 4)
    # exposure counts [2,1,1,1,1,0]: coverage 5/6; gini of sorted [0,1,1,1,1,2]:
    # sum i*x = 2+3+4+5+12 = 26 -> 2*26/(6*6) - 7/6 = 52/36 - 42/36 = 10/36
    np.testing.assert_array_equal(t.exposure_counts, [2, 1, 1, 1, 1, 0])
    assert a["coverage"] == pytest.approx(5 / 6) and a["gini"] == pytest.approx(10 / 36)
    # tail = items 2..5 -> 3 of 6 impressions, 1 click (item 4); tail_items excludes new -> items 2,3
    assert a["tail_share"] == pytest.approx(3 / 6) and a["tail_ctr"] == pytest.approx(1 / 3)
    assert r["tail_items"]["exposure_share"] == pytest.approx(2 / 6) and r["tail_items"]["ctr"] == 0
    assert r["head_items"]["ctr"] == pytest.approx(2 / 3) and r["head_items"]["coverage"] == 1.0
    assert r["new_items"]["coverage"] == pytest.approx(1 / 2) and a["new_item_share"] == pytest.approx(1 / 6)
    # novelty: -log2 of pops of shown [0,2,1,3,4,0] = 1+2+1+2+3+1 = 10 bits / 6
    assert a["novelty"] == pytest.approx(10 / 6)
    assert a["ild"] == pytest.approx(1.0)  # one-hot embeddings: all pairs orthogonal
    # curves: cold user step0 0/2, step1 2/2; warm step0 1/2
    np.testing.assert_allclose(t.user_ctr_curve("cold_users"), [0, 1, np.nan])
    np.testing.assert_allclose(t.user_ctr_curve("warm_users"), [0.5, np.nan, np.nan])
    # item 4 first shown and clicked at release (1-1); item 5 is released at step 5, after the last step seen
    # (1): it did not exist during the evaluation, so it is left out by default, and "never" with released_by=5
    nic = t.new_item_curves()
    np.testing.assert_allclose(nic.time_to_first_exposure, [0])
    np.testing.assert_allclose(nic.time_to_first_click, [0])
    np.testing.assert_array_equal(nic.steps, [0, 1])
    np.testing.assert_allclose(nic.exposure_share, [np.nan, 0.5])  # no new item exists at step 0: no data
    np.testing.assert_allclose(t.new_item_curves(released_by=5).time_to_first_click, [0, np.nan])
    new = r["new_items"]
    assert (new["n_released"], new["share_exposed"], new["share_clicked"]) == (1, 1.0, 1.0)
    assert (new["time_to_first_exposure"], new["time_to_first_click"]) == (0.0, 0.0)


def test_tracker_matches_pure_functions() -> None:
    rng = np.random.default_rng(3)
    m, b, k, steps = 40, 8, 4, 12
    pop = rng.uniform(0.01, 1.0, m)
    new, rel = np.array([37, 38, 39]), np.array([3, 5, 20])
    t = ExposureTracker(m, tail_mask=tail_mask_from_popularity(pop), popularity=pop, new_item_ids=new,
                        new_item_release_steps=rel)
    log_s, log_i, log_c = [], [], []
    for s in range(steps):
        allowed = np.setdiff1d(np.arange(m), new[rel > s])
        ids = np.stack([rng.choice(allowed, k, replace=False) for _ in range(b)])
        c = rng.random((b, k)) < 0.3
        t.update(s, ids, c, rng.random((b, k)).astype(np.float32), rng.random(b) < 0.5)
        log_s.append(np.full(ids.size, s)), log_i.append(ids.ravel()), log_c.append(c.ravel())
    s_, i_, c_ = (np.concatenate(x) for x in (log_s, log_i, log_c))
    ref = new_item_curves(s_, i_, c_, new, rel)
    got = t.new_item_curves()
    for a_, b_ in zip(got, ref, strict=True):
        np.testing.assert_allclose(a_, b_, equal_nan=True)
    initial = ~np.isin(np.arange(m), new)  # deciles of the initial catalogue, new items left out
    np.testing.assert_array_equal(t.ctr_by_popularity_decile().clicks,
                                  ctr_by_popularity_decile(i_, c_, pop, eligible=initial).clicks)
    r = t.result()
    assert r["all"]["ctr"] == pytest.approx(ctr(c_, c_.size))
    assert r["all"]["novelty"] == pytest.approx(novelty(i_, pop))
    assert r["all"]["gini"] == pytest.approx(gini(np.bincount(i_, minlength=m)))
    assert math.isnan(r["all"]["ndcg"])  # candidate_relevance never given


def test_tracker_empty_and_reset() -> None:
    t = _tracker()
    r = t.result()
    assert math.isnan(r["all"]["ctr"]) and math.isnan(r["all"]["gini"]) and r["all"]["coverage"] == 0
    t.update(2, [[0, 1]], [[True, True]], [[0.5, 0.5]], [False])
    t.reset()
    assert t.result()["all"]["n_slates"] == 0 and t.exposure_counts.sum() == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"slate_item_ids": [[0, 0]]}, "distinct items"),
        ({"slate_item_ids": [[0, 6]]}, r"item ids in \[0, 6\)"),
        ({"slate_item_ids": [[0.0, 1.0]]}, "integer"),
        ({"clicks": [[1, 2]]}, "boolean"),
        ({"true_click_probs": [[0.5, 1.5]]}, r"\[0, 1\]"),
        ({"user_cold": [False, True]}, "length B = 1"),
        ({"slate_item_ids": [[0, 5]]}, "release"),  # item 5 released at step 5, shown at 2
        ({"step": -1}, "int >= 0"),
    ],
)
def test_tracker_rejects_bad_batches(kwargs, match) -> None:
    args = {"step": 2, "slate_item_ids": [[0, 1]], "clicks": [[True, False]], "true_click_probs": [[0.5, 0.2]],
            "user_cold": [False]} | kwargs
    with pytest.raises(ValueError, match=match):
        _tracker().update(**args)


def test_tracker_rejects_bad_config_and_slate_size_change() -> None:
    with pytest.raises(ValueError, match="length n_items = 3"):
        ExposureTracker(3, tail_mask=[True, False])
    with pytest.raises(ValueError, match="together"):
        ExposureTracker(3, new_item_ids=[1])
    with pytest.raises(ValueError, match="popularity"):
        ExposureTracker(2, popularity=[0.0, 1.0])
    t = _tracker()
    t.update(0, [[0, 1]], [[True, False]], [[0.5, 0.2]], [False])
    with pytest.raises(ValueError, match="slate size K = 2"):
        t.update(1, [[0, 1, 2]], [[True, False, False]], [[0.5, 0.2, 0.1]], [False])
