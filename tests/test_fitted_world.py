"""A fitted world (HashingEncoder, tiny budget): contract validity, cache, logits, env checker, fidelity report."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from recgym.common import ConfigError
from recgym.encoders.hashing import HashingEncoder
from recgym.envs.datasets import DatasetNotFoundError, SplitConfig, assert_no_leakage
from recgym.envs.world import World
from recgym.envs.worlds.fitted import FitConfig, fit_world, make_fitted_world, world_logits
from recgym.experiments.fidelity import FidelityConfig, fidelity_report, js_distance

REPO = Path(__file__).resolve().parents[1]
TINY = FitConfig(epochs=2, latent_dim=8, history_length=10)


def data_dir() -> Path:
    path = Path(os.environ.get("RECGYM_DATA", REPO.parent / "shared" / "data"))
    assert path.is_dir(), f"shared data not found at {path}; set RECGYM_DATA"
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def fitted(cache):
    return fit_world("ml-100k", data_dir(), encoder=HashingEncoder(dim=64), config=TINY, cache_dir=cache)


def test_fitted_world_is_valid(fitted):
    w, sp = fitted.world, fitted.split
    assert isinstance(w, World) and w.catalog.num_items == 1682 and w.population.num_users == 943
    assert np.array_equal(w.catalog.is_new, sp.cold_items) and np.array_equal(w.population.cold, sp.cold_users)
    assert np.array_equal(w.population.test, sp.test_users) and w.population.test[w.population.cold].all()
    assert w.preference.affinity_scale == 1.0 and w.preference.appeal_weight == 1.0
    # k = 8 latent dims + 1 carrying log-popularity (the cold-user popularity weight)
    assert w.catalog.latent.shape == (1682, 9) and w.catalog.embeddings.shape == (1682, 64)
    assert np.allclose(w.catalog.latent[:, -1], np.log(1682 * w.catalog.popularity), atol=1e-5)
    assert (w.population.latent[~w.population.cold, -1] == 0).all()
    assert (w.population.history[w.population.cold] == -1).all()
    assert_no_leakage(fitted.data, sp, w.population.history)
    assert fitted.manifest["fit_seconds"] > 0 and fitted.manifest["epochs"] == 2 and fitted.manifest["steps"] > 0


def test_logits_and_quality(fitted):
    w = fitted.world
    logits = world_logits(w, np.array([0, 1]))
    assert logits.shape == (2, 1682) and logits.dtype == np.float32 and np.isfinite(logits).all()
    c, p, pref = w.catalog, w.population, w.preference
    manual = p.latent[0] @ c.latent[5] + pref.popularity_weight * np.log(1682 * c.popularity[5]) + c.appeal[5] + pref.bias + p.bias[0]
    assert logits[0, 5] == pytest.approx(manual, rel=1e-5, abs=1e-5)
    assert (c.quality >= 0).all() and (c.quality <= 1).all() and c.quality.std() > 0
    # calibrated: the world's logit is alpha * (fitted logit) + beta, alpha folded into the arrays
    assert fitted.manifest["platt_alpha"] > 0 and fitted.manifest["calibration_pairs"] > 0


def test_cache_hit_and_corruption(fitted, cache, caplog):
    again = fit_world("ml-100k", data_dir(), encoder=HashingEncoder(dim=64), config=TINY, cache_dir=cache)
    assert again.cache_hit and again.world.fingerprint() == fitted.world.fingerprint()
    folder = Path(fitted.world.source["cache"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["key"] == fitted.world.source["fit_key"] and "arrays_sha256" in manifest
    (folder / "arrays.npz").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        rebuilt = fit_world("ml-100k", data_dir(), encoder=HashingEncoder(dim=64), config=TINY, cache_dir=cache)
    assert not rebuilt.cache_hit and "stale or corrupt" in caplog.text
    assert rebuilt.world.fingerprint() == fitted.world.fingerprint()  # seeded: the refit is identical


def test_bad_names_and_config_fail_fast(cache):
    with pytest.raises(DatasetNotFoundError, match=r"did you mean 'ml-latest-small'"):
        fit_world("ml-latest-smal", data_dir(), encoder=HashingEncoder(dim=8), cache_dir=cache)
    with pytest.raises(ConfigError, match=r"did you mean 'epochs'"):
        make_fitted_world("ml-100k", data_dir=data_dir(), encoder=HashingEncoder(dim=8), epoch=3)


def test_log_world_from_fixture_files(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "log"
    folder.mkdir()
    items = [f"it{k}" for k in range(40)]
    (folder / "items.csv").write_text("item_id,title,genres\n" + "".join(f"{i},Item number {k},g{k % 3}\n" for k, i in enumerate(items)))
    rows = [f"user{u},{items[j]}\n" for u in range(30) for j in rng.choice(40, size=8, replace=False)]
    (folder / "interactions.csv").write_text("user_id,item_id\n" + "".join(rows))
    cfg = FitConfig(epochs=2, latent_dim=4, split=SplitConfig(cold_user_fraction=0.1, cold_item_fraction=0.1))
    fw = fit_world("log", folder, encoder=HashingEncoder(dim=16), config=cfg, cache_dir=tmp_path / "c")
    assert fw.world.population.num_users == 30 and fw.world.population.cold.sum() == 3
    assert fw.world.catalog.item_ids[0] == "it0"
    assert fw.manifest["quality_source"] == "none" and (fw.world.catalog.quality == 0.5).all()  # no signal at all


def test_env_checker_on_fitted_world(fitted):
    gym = pytest.importorskip("gymnasium")
    ranking = pytest.importorskip("recgym.envs.ranking")
    from gymnasium.utils.env_checker import check_env

    env = ranking.RankingEnv(fitted.world)
    check_env(env, skip_render_check=True)
    env.close()
    del gym


def test_fidelity_report_all_sections(fitted, tmp_path):
    cfg = FidelityConfig(bpr_epochs=2, bpr_dim=8, n_boot=50, max_panel_users=80)
    rep = fidelity_report("movielens-100k", None, tmp_path, fitted=fitted, config=cfg)
    for seg in ("warm_users", "cold_users", "cold_items"):
        assert set(rep["ranking"][seg]) == {"hidden_model", "bpr_mf", "popularity"}
    assert rep["ranking"]["cold_items"]["bpr_mf"]["auc"] is None
    assert 0.5 < rep["ranking"]["warm_users"]["hidden_model"]["auc"] <= 1.0
    assert len(rep["calibration"]["bins"]) == 10
    for name in ("popularity_decile", "genre_share"):
        assert 0.0 <= rep["distributions"][name]["js_distance"] <= 1.0
    assert rep["calibration"]["ece"] <= rep["calibration"]["raw_ece"] + 0.02
    md = (tmp_path / "fidelity.md").read_text()
    for section in ("## Held-out ranking of the hidden model", "## Calibration", "## Free-choice distributions",
                    "## Bars", "MF cannot score", "## Policy-ranking fidelity", "## Replay error"):
        assert section in md
    for f in ("fidelity.json", "calibration.png", "popularity_decile.png", "genre_share.png", "policy_ranking.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert json.loads((tmp_path / "fidelity.json").read_text())["bar"].keys() >= {"warm_pass", "cold_item_pass"}


def test_fidelity_cli_prints_the_bars(fitted, tmp_path, monkeypatch):
    """The summary line used to read a key the report never wrote (``bars``) and print ``{}``."""
    from typer.testing import CliRunner

    from recgym import cli
    from recgym.experiments import fidelity

    def fake(world, data_dir, out, encoder=None, *, config=None, progress=None):
        cfg = FidelityConfig(bpr_epochs=2, bpr_dim=8, n_boot=20, max_panel_users=40)
        return fidelity.fidelity_report(world, data_dir, out, config=cfg, fitted=fitted), False

    monkeypatch.setattr(fidelity, "cached_fidelity_report", fake)
    res = CliRunner().invoke(cli.app, ["fidelity", "--world", "movielens-100k", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    bar = json.loads(res.output.strip().splitlines()[-1])
    assert bar["warm_pass"] in (True, False) and "policy_rho" in bar
    assert "would this simulator rank your policies as your data does?" in res.output


def test_js_distance_bounds():
    assert js_distance(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    assert js_distance(np.array([2, 3]), np.array([4, 6])) == pytest.approx(0.0, abs=1e-9)
