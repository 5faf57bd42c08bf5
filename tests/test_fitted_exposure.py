"""The exposure correction: P(interact) -> P(click | shown), fitted on logged rows and folded into the env's logit."""

from __future__ import annotations

import numpy as np
import pytest
from logdata import make_log

from recgym.encoders.hashing import HashingEncoder
from recgym.envs.worlds.fitted import FitConfig, fit_world, pair_logits, world_logits
from recgym.envs.worlds.fitted_exposure import Exposure, fit_exposure
from recgym.experiments.fidelity_replay import replay

FAST = FitConfig(epochs=3, latent_dim=8)


def _planted(n: int = 40_000, seed: int = 0, tail: bool = False):
    """Logged rows whose click | shown logit is ``taste + c``, and an interaction logit that adds a planted
    exposure ``beta * logpop`` (with ``tail``, exposure keeps falling below logpop = -1 while taste does not)."""
    rng = np.random.default_rng(seed)
    item_lp = rng.normal(0.0, 1.2, 500)
    items = rng.integers(0, 500, n)
    lp = item_lp[items]
    taste = rng.normal(0.0, 1.5, n)
    exposure = 0.8 * lp + (1.5 * np.minimum(lp + 1.0, 0.0) if tail else 0.0)
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-(taste - 0.4)))).astype(float)
    users = rng.integers(0, 2000, n)
    return taste + exposure, lp, labels, users, item_lp, taste


def test_recovers_a_planted_popularity_propensity():
    logits, lp, y, users, item_lp, _ = _planted()
    ex = fit_exposure(logits, lp, y, users, item_lp, np.random.default_rng(0))
    assert ex.scale == pytest.approx(1.0, abs=0.06) and ex.intercept == pytest.approx(-0.4, abs=0.1)
    grid = np.linspace(-2.0, 2.0, 41)  # the exposure it removes, up to the intercept: -0.8 * logpop
    removed = ex.apply(np.zeros_like(grid), grid) - ex.intercept
    assert np.abs(removed + 0.8 * grid).max() < 0.15
    assert ex.rows == y.size and "CV" in ex.note


def test_recovers_a_tail_that_a_linear_correction_cannot():
    logits, lp, y, users, item_lp, taste = _planted(tail=True, seed=1)
    ex = fit_exposure(logits, lp, y, users, item_lp, np.random.default_rng(0))
    assert ex.knots.size and np.abs(ex.hinges).sum() > 0.5  # the data clearly bends: the CV keeps the hinges
    planted = 0.8 * lp + 1.5 * np.minimum(lp + 1.0, 0.0)
    removed = ex.apply(np.zeros_like(lp), lp) - ex.intercept
    err = np.abs(removed + planted - np.mean(removed + planted)).mean()  # over the logged rows
    line = np.polyval(np.polyfit(lp, planted, 1), lp)  # the best any linear correction could do
    assert err < 0.5 * np.abs(planted - line).mean() and err < 0.1
    assert np.corrcoef(ex.apply(logits, lp), taste)[0, 1] > 0.99


def test_identity_when_not_identifiable():
    logits, lp, _, users, item_lp, _ = _planted(n=2000)
    ex = fit_exposure(logits, lp, np.ones_like(logits), users, item_lp, np.random.default_rng(0))  # implicit log
    assert ex.identity and "implicit" in ex.note
    assert np.array_equal(ex.apply(logits, lp), logits)


def test_array_round_trip_and_bad_array():
    ex = Exposure(0.7, 0.2, -0.5, np.array([-1.0, 0.0]), np.array([0.3, -0.1]), 1e-3, 100, "x")
    back = Exposure.from_array(ex.to_array(), "x")
    lp = np.linspace(-3, 3, 7)
    assert np.allclose(back.apply(lp, lp), ex.apply(lp, lp)) and back.rows == 100
    with pytest.raises(ValueError, match="expected 10 values for 2 knots, received 9"):
        Exposure.from_array(ex.to_array()[:-1])


@pytest.fixture(scope="module")
def planted_log(tmp_path_factory):
    """A generated log with a planted propensity: items are *shown* in proportion to popularity, but whether a
    shown item is liked (rating >= 4) depends on genre taste only (tests/logdata.py)."""
    root = tmp_path_factory.mktemp("planted")
    folder = make_log(root / "log", n_items=300, n_users=400, per_user=30, ratings=True, users_csv=True, seed=3)
    on = fit_world("log", folder, encoder=HashingEncoder(dim=32), config=FAST, cache_dir=root / "cache")
    def without(**extra):
        cfg = FAST.model_copy(update={"exposure_model": False, **extra})
        return fit_world("log", folder, encoder=HashingEncoder(dim=32), config=cfg, cache_dir=root / "cache")

    hit = fit_world("log", folder, encoder=HashingEncoder(dim=32), config=FAST, cache_dir=root / "cache")
    assert hit.cache_hit and hit.world.fingerprint() == on.world.fingerprint()
    assert np.array_equal(hit.exposure.to_array(), on.exposure.to_array())
    # the default without the correction, and the same Platt scaling as `on` (log-popularity term) without it
    return on, without(), without(calibrate_popularity=True)


def test_folded_world_clicks_are_the_correction_of_the_interaction_world(planted_log):
    on, off, same_platt = planted_log
    assert not on.exposure.identity and on.exposure.slope < 0  # popularity carried exposure: the correction removes it
    assert off.exposure.identity and off.world is off.interaction
    users = np.arange(on.world.population.num_users)
    c = on.world.catalog
    lp = np.log(c.num_items * c.popularity).astype(np.float64)
    expect = np.stack([on.exposure.apply(row.astype(np.float64), lp) for row in world_logits(on.interaction, users)])
    assert np.allclose(world_logits(on.world, users), expect, atol=1e-4)
    # the interaction model is the one fitted with the correction off: switching it on changes nothing else
    assert np.allclose(world_logits(on.interaction, users), world_logits(same_platt.world, users), atol=1e-5)
    u, i = np.array([0, 5, 9]), np.array([3, 3, 250])
    assert np.allclose(pair_logits(on.world, u, i), world_logits(on.world, u)[np.arange(3), i], atol=1e-4)
    assert on.world.source["clicks"] == "P(click | shown)" and off.world.source["clicks"] == "P(interact)"


def test_replay_of_the_planted_log_gets_the_tail_right_only_with_the_correction(planted_log):
    on, off, _ = planted_log
    r_on, r_off = replay(on, np.random.default_rng(0)), replay(off, np.random.default_rng(0))

    def worst(r):
        d = r["per_decile"]
        return max(abs(e) for e, n in zip(d["relative_error"], d["real_clicks"], strict=True) if e is not None and n >= 50)

    assert worst(r_off) > 0.3 and worst(r_on) < 0.6 * worst(r_off)
    assert r_on["js_distance"] < r_off["js_distance"]
    assert abs(r_on["per_user"]["bias"]) < abs(r_off["per_user"]["bias"])


def test_implicit_log_keeps_the_interaction_model_and_says_why(tmp_path):
    from recgym.experiments.fidelity_sections import calibration

    folder = make_log(tmp_path / "log", n_items=80, n_users=60, per_user=10)  # ids only: every row is a click
    fw = fit_world("log", folder, encoder=HashingEncoder(dim=16), config=FAST, cache_dir=tmp_path / "cache")
    assert fw.exposure.identity and "not identifiable" in fw.exposure.note and fw.world is fw.interaction
    assert fw.manifest["exposure"]["note"] == fw.exposure.note
    cal = calibration(fw, FAST, np.random.default_rng(0))
    assert not cal["exposure_corrected"] and cal["target"].startswith("P(interact)") and cal["ece"] == cal["interaction"]["ece"]
