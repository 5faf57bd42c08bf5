"""Fidelity: rank agreement statistics, replay, the panel, the report and its cache, on generated logs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from logdata import make_log

from recgym.encoders.hashing import HashingEncoder
from recgym.envs.worlds.fitted import FitConfig, fit_world, world_logits
from recgym.experiments.fidelity import FidelityConfig, cached_fidelity_report, fidelity_report
from recgym.experiments.fidelity_replay import popularity_deciles, replay
from recgym.experiments.fidelity_stats import kendall, pairwise_sign_accuracy, rank_agreement, spearman

FAST = FitConfig(epochs=3, latent_dim=8)
REPORT = FidelityConfig(fit=FAST, bpr_epochs=2, bpr_dim=8, n_boot=50)


def _per_user(means: list[float], n: int = 40, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.asarray(means)[None, :] + noise * rng.normal(size=(n, len(means)))


def test_rank_agreement_known_answers():
    names = ["a", "b", "c", "d"]
    real = _per_user([1, 2, 3, 4])
    same = rank_agreement(real, real * 10 + 3, names, n_boot=100, rng=np.random.default_rng(0))
    assert same["spearman"] == pytest.approx(1.0) and same["kendall"] == pytest.approx(1.0)
    assert same["top1_agreement"] and same["pairwise_sign_accuracy"] == 1.0 and same["spearman_ci"] == pytest.approx([1, 1])
    rev = rank_agreement(real, -real, names, n_boot=100, rng=np.random.default_rng(0))
    assert rev["spearman"] == pytest.approx(-1.0) and rev["kendall"] == pytest.approx(-1.0)
    assert not rev["top1_agreement"] and rev["pairwise_sign_accuracy"] == 0.0 and rev["sim_best"] == "a"
    # one adjacent swap of 4: rho = 1 - 6*2/(4*15) = 0.8, tau = (5 - 1)/6, 5 of 6 pairs agree
    swap = rank_agreement(real, _per_user([1, 3, 2, 4]), names, n_boot=100, rng=np.random.default_rng(0))
    assert swap["spearman"] == pytest.approx(0.8) and swap["kendall"] == pytest.approx(4 / 6)
    assert swap["pairwise_sign_accuracy"] == pytest.approx(5 / 6) and swap["top1_agreement"]
    assert swap["spearman_ci"] == pytest.approx([0.8, 0.8])  # no user-level noise: every resample agrees


def test_bootstrap_ci_widens_with_noise_and_covers_truth():
    names = [f"p{k}" for k in range(6)]
    real = _per_user([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], n=60, noise=0.5, seed=1)
    sim = _per_user([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], n=60, noise=0.5, seed=2)
    res = rank_agreement(real, sim, names, n_boot=300, rng=np.random.default_rng(0))
    lo, hi = res["spearman_ci"]
    assert lo < res["spearman"] <= hi + 1e-9 and hi - lo > 0.1
    assert 0.0 <= res["top1_bootstrap"] <= 1.0 and res["n_users"] == 60


def test_rank_helpers_ties_and_errors():
    assert pairwise_sign_accuracy(np.array([1.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx((0.5 + 1 + 1) / 3)
    assert np.isnan(spearman(np.ones(3), np.arange(3.0))) and np.isnan(kendall(np.arange(3.0), np.ones(3)))
    with pytest.raises(ValueError, match="3 policies"):
        rank_agreement(np.ones((5, 2)), np.ones((5, 2)), ["a", "b"], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="one shape"):
        rank_agreement(np.ones((5, 3)), np.ones((4, 3)), ["a", "b", "c"], rng=np.random.default_rng(0))


@pytest.fixture(scope="module")
def rated(tmp_path_factory):
    root = tmp_path_factory.mktemp("rated")
    folder = make_log(root / "log", n_items=150, n_users=120, per_user=20, ratings=True, users_csv=True)
    fw = fit_world("log", folder, encoder=HashingEncoder(dim=32), config=FAST, cache_dir=root / "cache")
    return fw, root


def test_replay_matches_a_hand_computation(rated):
    fw, _ = rated
    rep = replay(fw, np.random.default_rng(0))
    inter, sp = fw.data.interactions, fw.split
    u, i = inter["user"].to_numpy(), inter["item"].to_numpy()
    te = sp.test_eval[~sp.cold_users[u[sp.test_eval]] & ~sp.cold_items[i[sp.test_eval]]]
    probs = np.array([1 / (1 + np.exp(-world_logits(fw.world, np.array([a]), np.array([b]))[0, 0])) for a, b in zip(u[te], i[te], strict=True)])
    real = inter["positive"].to_numpy()[te]
    users = np.unique(u[te])
    err = np.array([probs[u[te] == x].sum() - real[u[te] == x].sum() for x in users])
    assert rep["per_user"]["bias"] == pytest.approx(err.mean(), rel=1e-4)
    assert rep["per_user"]["mae"] == pytest.approx(np.abs(err).mean(), rel=1e-4)
    assert rep["per_user"]["spread"] == pytest.approx(err.std(), rel=1e-4)
    dec = popularity_deciles(fw)[i[te]]
    share = np.bincount(dec, weights=real, minlength=10) / real.sum()
    assert rep["per_decile"]["real_share"] == pytest.approx(share.tolist())
    for se, n in zip(rep["per_decile"]["real_share_rel_se"], rep["per_decile"]["real_clicks"], strict=True):
        assert (se is None) == (n == 0)  # the real share's sampling error: about 1/sqrt(clicks), more when clustered
        assert n < 5 or 0.3 / np.sqrt(n) < se < 3.0 / np.sqrt(n)
    assert rep["rows"] == te.size and not rep["implicit"]
    assert rep["shuffled_reference"]["per_user"]["real_mean"] == pytest.approx(rep["per_user"]["real_mean"])
    assert 0.0 <= rep["js_distance"] <= 1.0


def test_report_has_policy_ranking_and_verdict(rated, tmp_path, capsys):
    fw, _ = rated
    rep = fidelity_report("log", None, tmp_path, fitted=fw, config=REPORT, progress=True)
    lines = capsys.readouterr().err.splitlines()  # progress off a terminal: a line per section, then the time
    assert lines[0].startswith(f"fidelity report {fw.world.name}: 0/7 sections")
    assert lines[-1].startswith(f"fidelity report {fw.world.name}: done, 7 sections in ")
    pr = rep["policy_ranking"]
    assert {"spearman", "spearman_ci", "kendall", "top1_agreement"} <= set(pr)
    assert len(pr["panel"]) >= 6 and {t["name"] for t in pr["panel"]} >= {"random", "popularity", "lm_similarity",
                                                                        "item_knn", "bpr_mf", "ctr_adapter"}
    assert -1.0 <= pr["spearman"] <= 1.0 and pr["spearman_ci"][0] <= pr["spearman_ci"][1]
    for t in pr["panel"]:
        assert 0.0 <= t["ndcg"] <= 1.0 and 0.0 <= t["sim_ctr"] <= 1.0 and t["sim_return"] >= 0.0
    md = (tmp_path / "fidelity.md").read_text()
    assert md.splitlines()[2].startswith("**would this simulator rank your policies as your data does?")
    for section in ("## Policy-ranking fidelity", "## Replay error", "## Calibration", "## Bars", "shuffled-data reference"):
        assert section in md
    saved = json.loads((tmp_path / "fidelity.json").read_text())
    assert saved["bar"].keys() >= {"policy_pass", "cold_user_pass", "ece_pass", "replay_js_pass", "tail_share_pass"}
    for f in ("policy_ranking.png", "calibration.png", "replay_deciles.png"):
        assert (tmp_path / f).stat().st_size > 0


def test_report_cache_reused(tmp_path):
    folder = make_log(tmp_path / "log", n_items=60, n_users=50, per_user=10)
    cfg = REPORT.model_copy(update={"cache_dir": str(tmp_path / "cache")})
    first, hit1 = cached_fidelity_report("log", folder, tmp_path / "a", HashingEncoder(dim=16), config=cfg)
    second, hit2 = cached_fidelity_report("log", folder, tmp_path / "b", HashingEncoder(dim=16), config=cfg)
    assert not hit1 and hit2 and second["verdict"] == first["verdict"]
    assert (tmp_path / "b" / "fidelity.md").read_text() == (tmp_path / "a" / "fidelity.md").read_text()
    other = cfg.model_copy(update={"k": 5})
    assert not cached_fidelity_report("log", folder, tmp_path / "c", HashingEncoder(dim=16), config=other)[1]


def test_tail_share_bar_counts_only_deciles_with_enough_real_clicks():
    from recgym.experiments.fidelity import MIN_DECILE_CLICKS, _bars

    def report(clicks_d10: float) -> dict:
        errs = [0.1] * 9 + [-0.9]
        return {"ranking": {}, "policy_ranking": {}, "calibration": {},
                "replay": {"js_distance": 0.01, "per_decile": {"relative_error": errs,
                                                               "real_clicks": [500.0] * 9 + [clicks_d10]}}}
    few = _bars(report(MIN_DECILE_CLICKS - 1))
    assert few["tail_share_pass"] and few["tail_share_max_rel_error"] == pytest.approx(0.1)
    assert few["tail_share_too_few_clicks"] == ["D10"]
    assert few["tail_share_max_rel_error_all_deciles"] == pytest.approx(0.9)  # reported, every decile counted
    enough = _bars(report(MIN_DECILE_CLICKS))
    assert not enough["tail_share_pass"] and enough["tail_share_max_rel_error"] == pytest.approx(0.9)
    assert enough["tail_share_too_few_clicks"] == []
