"""`recgym compare`: paired-by-seed differences of two runs against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recgym.experiments.ablation import compare_runs, comparison_markdown
from recgym.experiments.stats import t_quantile


def _run(path, values: dict[str, list[float]], seeds=(0, 1, 2)):
    path.mkdir()
    recs = [{"agent": a, "seed": s, "segment": "cold_users", "ctr": v[i]} for a, v in values.items()
            for i, s in enumerate(seeds)]
    (path / "metrics.json").write_text(json.dumps({"seeds": list(seeds), "agents": list(values), "records": recs}))
    return path


def test_paired_difference_and_claim(tmp_path) -> None:
    a = _run(tmp_path / "a", {"lm": [0.10, 0.20, 0.30], "pop": [0.1, 0.1, 0.1]})
    b = _run(tmp_path / "b", {"lm": [0.12, 0.225, 0.315], "pop": [0.1, 0.12, 0.08]})
    rows = {r["agent"]: r for r in compare_runs(a, b, [("cold_users", "ctr")])}
    d = np.array([0.02, 0.025, 0.015])
    hw = t_quantile(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert rows["lm"]["diff"] == pytest.approx(0.02) and rows["lm"]["diff_high"] - rows["lm"]["diff"] == pytest.approx(hw)
    assert rows["lm"]["separated"]  # every seed improves: paired CI excludes 0 although the arms' CIs overlap
    assert not rows["pop"]["separated"]
    md = comparison_markdown(list(rows.values()), "plain", "enriched")
    assert "| lm | cold_users | ctr |" in md and "*" in md.splitlines()[2]


def test_mismatched_runs_are_refused(tmp_path) -> None:
    a = _run(tmp_path / "a", {"lm": [0.1, 0.2, 0.3]})
    b = _run(tmp_path / "b", {"lm": [0.1, 0.2]}, seeds=(0, 1))
    with pytest.raises(ValueError, match="same seeds"):
        compare_runs(a, b)
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        compare_runs(a, tmp_path / "nope")
