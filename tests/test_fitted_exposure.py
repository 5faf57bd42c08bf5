"""The exposure correction: P(interact) -> P(click | shown), fitted on logged rows and folded into the env's logit."""

from __future__ import annotations

import numpy as np
import pytest
from logdata import make_log

from recgym.encoders.hashing import HashingEncoder
from recgym.envs.worlds.fitted import FitConfig, fit_world, pair_logits, world_logits
from recgym.envs.worlds.fitted_exposure import Exposure, fit_exposure, popularity_deciles_of, tail_basis
from recgym.experiments.fidelity_replay import replay

FAST = FitConfig(epochs=3, latent_dim=8)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _planted(n: int = 40_000, seed: int = 0, tail: bool = False):
    """Logged rows whose click | shown logit is ``taste + c``, and an interaction logit that adds a planted
    exposure ``beta * logpop`` (with ``tail``, exposure keeps falling below logpop = -1 while taste does not)."""
    rng = np.random.default_rng(seed)
    item_lp = rng.normal(0.0, 1.2, 500)
    items = rng.integers(0, 500, n)
    lp = item_lp[items]
    taste = rng.normal(0.0, 1.5, n)
    exposure = 0.8 * lp + (1.5 * np.minimum(lp + 1.0, 0.0) if tail else 0.0)
    labels = (rng.random(n) < _sigmoid(taste - 0.4)).astype(float)
    users = rng.integers(0, 2000, n)
    deciles = popularity_deciles_of(item_lp)[items]
    return taste + exposure, lp, labels, users, deciles, item_lp, taste


def test_recovers_a_planted_popularity_propensity():
    logits, lp, y, users, dec, item_lp, _ = _planted()
    ex = fit_exposure(logits, lp, y, users, dec, item_lp, np.random.default_rng(0))
    assert ex.scale == pytest.approx(1.0, abs=0.06) and ex.intercept == pytest.approx(-0.4, abs=0.1)
    grid = np.linspace(-2.0, 2.0, 41)  # the exposure it removes, up to the intercept: -0.8 * logpop
    removed = ex.apply(np.zeros_like(grid), grid) - ex.intercept
    assert np.abs(removed + 0.8 * grid).max() < 0.15
    assert ex.rows == y.size and "CV" in ex.note and ex.selection["chosen"] == "linear"


def test_recovers_a_tail_that_a_linear_correction_cannot():
    logits, lp, y, users, dec, item_lp, taste = _planted(tail=True, seed=1)
    ex = fit_exposure(logits, lp, y, users, dec, item_lp, np.random.default_rng(0))
    assert ex.knots.size == 1 and np.abs(ex.weights).sum() > 0.5  # the data clearly bends: a tail term is kept
    planted = 0.8 * lp + 1.5 * np.minimum(lp + 1.0, 0.0)
    removed = ex.apply(np.zeros_like(lp), lp) - ex.intercept
    err = np.abs(removed + planted - np.mean(removed + planted)).mean()  # over the logged rows
    line = np.polyval(np.polyfit(lp, planted, 1), lp)  # the best any linear correction could do
    assert err < 0.5 * np.abs(planted - line).mean() and err < 0.1
    assert np.corrcoef(ex.apply(logits, lp), taste)[0, 1] > 0.99


def _shown_log(n: int, seed: int, tail_weight: float):
    """A log as the logging policy showed it: items shown in proportion to their (lognormal) train counts, so the
    least popular deciles get ~1 % of the rows. The interaction model under-rates items with few interactions by
    a planted count shrinkage ``tail_weight * C / (C + n_i + 1)`` (the ``step`` tail at the 3rd decile of
    log-popularity); click | shown is ``taste - 0.4``; ``seed`` draws the rows. The right correction is known: ``-0.8 * l + that term``."""
    counts = np.floor(np.exp(np.random.default_rng(123).normal(2.5, 1.3, 600)))  # one catalogue for every seed
    rng = np.random.default_rng(seed)
    item_lp = np.log(600 * (counts + 1.0) / (counts + 1.0).sum())
    knot = float(np.quantile(item_lp, 0.3))
    items = rng.choice(600, n, p=(counts + 1.0) / (counts + 1.0).sum())
    lp = item_lp[items]
    click = rng.normal(0.0, 1.5, n) - 0.4
    interaction = click + 0.8 * lp - tail_weight * tail_basis("step", knot, lp)
    labels = (rng.random(n) < _sigmoid(click)).astype(float)
    users = rng.integers(0, n // 8, n)
    return interaction, lp, labels, users, popularity_deciles_of(counts)[items], item_lp, click, knot


def _worst_share_error(ex: Exposure, interaction, lp, click, deciles) -> float:
    """Worst relative error of a decile's share of the *expected* clicks (the known truth: no sampling noise)."""
    sim = np.bincount(deciles, weights=_sigmoid(ex.apply(interaction, lp)), minlength=10)
    real = np.bincount(deciles, weights=_sigmoid(click), minlength=10)
    return float(np.max(np.abs((sim / sim.sum()) / (real / real.sum()) - 1.0)))


def test_selection_keeps_the_tail_term_the_decile_shares_need():
    """Validation-sized log (8,000 rows): the decile criterion keeps a tail term (a hinge or a step near the plant), and the corrected
    clicks give every decile its share on fresh rows; the linear correction (what the log-loss rule kept on both
    MovieLens worlds, and what the old log-loss rule keeps here too) leaves the least popular deciles > 25 % short."""
    interaction, lp, y, users, dec, item_lp, _click, knot = _shown_log(8_000, seed=0, tail_weight=3.0)
    ex = fit_exposure(interaction, lp, y, users, dec, item_lp, np.random.default_rng(0))
    sel = ex.selection
    assert sel["chosen"] != "linear" and sel["chi2"][sel["chosen"]] + sel["se"] < sel["chi2"]["linear"]
    assert ex.knots.size == 1 and ex.weights[0] > 0  # the tail gets back clicks (its shape may differ from the plant)
    fresh = _shown_log(200_000, seed=1, tail_weight=3.0)
    f_inter, f_lp, _, _, f_dec, _, f_click, _ = fresh
    linear = fit_exposure(interaction, lp, y, users, dec, item_lp, np.random.default_rng(0),
                          shapes=())  # no tail candidates: the linear correction
    assert linear.selection["chosen"] == "linear" and not linear.weights.size
    assert _worst_share_error(linear, f_inter, f_lp, f_click, f_dec) > 0.25
    assert _worst_share_error(ex, f_inter, f_lp, f_click, f_dec) < 0.12


def test_selection_keeps_the_linear_correction_without_a_tail():
    interaction, lp, y, users, dec, item_lp, *_ = _shown_log(8_000, seed=0, tail_weight=0.0)
    ex = fit_exposure(interaction, lp, y, users, dec, item_lp, np.random.default_rng(0))
    assert ex.selection["chosen"] == "linear" and not ex.weights.size
    assert ex.slope == pytest.approx(-0.8, abs=0.15)


def test_bad_deciles_are_rejected():
    interaction, lp, y, users, dec, item_lp, *_ = _shown_log(500, seed=0, tail_weight=0.0)
    with pytest.raises(ValueError, match="deciles in 0..9, received 0..10"):
        fit_exposure(interaction, lp, y, users, np.where(dec == 9, 10, dec), item_lp, np.random.default_rng(0))
    with pytest.raises(ValueError, match="one shape"):
        fit_exposure(interaction, lp, y, users, dec[:-1], item_lp, np.random.default_rng(0))


def test_identity_when_not_identifiable():
    logits, lp, _, users, dec, item_lp, _ = _planted(n=2000)
    ex = fit_exposure(logits, lp, np.ones_like(logits), users, dec, item_lp, np.random.default_rng(0))  # implicit log
    assert ex.identity and "implicit" in ex.note
    assert np.array_equal(ex.apply(logits, lp), logits)


def test_array_round_trip_and_bad_array():
    ex = Exposure(0.7, 0.2, -0.5, "step", np.array([-1.0, 0.0]), np.array([0.3, -0.1]), 100, "x")
    back = Exposure.from_array(ex.to_array(), "x")
    lp = np.linspace(-3, 3, 7)
    assert np.allclose(back.apply(lp, lp), ex.apply(lp, lp)) and back.rows == 100 and back.shape == "step"
    assert np.allclose(ex.tail_term(lp), 0.3 * _sigmoid(-1.0 - lp) - 0.1 * _sigmoid(-lp))
    with pytest.raises(ValueError, match="expected 10 values for 2 knots, received 9"):
        Exposure.from_array(ex.to_array()[:-1])
    bad = ex.to_array()
    bad[3] = 7
    with pytest.raises(ValueError, match="tail shape code in 0..1, received 7"):
        Exposure.from_array(bad)


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
