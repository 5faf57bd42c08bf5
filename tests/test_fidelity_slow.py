"""Full-size fidelity bars on the MovieLens worlds with the bundled MiniLM (slow: minutes per world on CPU).

Run: ``python -m pytest -m slow tests/test_fidelity_slow.py``. Figures are recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import pytest

from recgym.experiments.fidelity import BARS, FidelityConfig, fidelity_report

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("world", ["movielens-100k", "ml-latest-small"])
def test_movielens_fidelity_bars(world, data_dir, tmp_path):
    rep = fidelity_report(world, data_dir, tmp_path, config=FidelityConfig())
    b, pr = rep["bar"], rep["policy_ranking"]
    assert len(pr["panel"]) >= 6
    assert pr["spearman"] >= BARS["policy_rho"], rep["verdict"]
    assert b["cold_user_pass"], (b["cold_user_hidden_auc"], b["cold_user_pop_auc"], b["cold_user_hidden_ndcg"],
                                 b["cold_user_pop_ndcg"])
    assert b["ece_pass"], b["ece"]
    assert rep["calibration"]["exposure_corrected"] and rep["calibration"]["interaction"]["ece"] <= BARS["ece"]
    assert b["replay_js_pass"], b["replay_js"]
    assert b["tail_share_pass"], (rep["replay"]["per_decile"]["relative_error"], rep["replay"]["per_decile"]["real_clicks"])
    assert rep["replay"]["per_user"]["mae"] < rep["replay"]["shuffled_reference"]["per_user"]["mae"]
