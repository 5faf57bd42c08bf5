"""Plots: each writes a valid, non-trivial PNG atomically; nan/bad input raises a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recgym.experiments.metrics import ctr_by_popularity_decile
from recgym.experiments.plots import (
    plot_agent_bars,
    plot_cold_start_curves,
    plot_ctr_by_decile,
    plot_learning_curves,
    plot_lorenz,
)
from recgym.experiments.stats import summarise

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 10_000  # axes, text and curves, not an empty canvas
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind


def test_learning_curves(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(0, 1000, 50)
    curves = {"ppo": (steps, np.log1p(steps) + rng.normal(0, 0.3, (5, len(steps)))),
              "random": (steps, rng.normal(1, 0.3, len(steps)))}  # one seed: line only
    out = plot_learning_curves(curves, tmp_path / "sub" / "learning.png")
    _assert_png(out)


def test_agent_bars(tmp_path: Path) -> None:
    rows = [{"agent": a, "seed": s, "segment": g, "ctr": v + 0.01 * s}
            for a, v in (("ppo", 0.3), ("popularity", 0.2), ("oracle", 0.4)) for s in range(5)
            for g in ("warm_users", "cold_users")]
    summary = summarise(rows, by=["agent", "segment"], metric="ctr")
    _assert_png(plot_agent_bars(summary, "ctr", tmp_path / "bars_grouped.png", group_key="segment"))
    single = summarise([r for r in rows if r["segment"] == "warm_users" and (r["agent"] != "oracle" or r["seed"] == 0)],
                       by=["agent"], metric="ctr")  # oracle has n=1 -> no error bar
    _assert_png(plot_agent_bars(single, "ctr", tmp_path / "bars.png"))
    with pytest.raises(ValueError, match="one row per agent"):
        plot_agent_bars(summary, "ctr", tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"metric\): expected one of \['ctr'\]"):
        plot_agent_bars(summary, "ndcg", tmp_path / "x.png")


def test_lorenz_and_decile(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    m = 200
    pop = np.sort(rng.pareto(1.5, m) + 0.01)
    counts = {"popularity": np.bincount(rng.choice(m, 5000, p=pop / pop.sum()), minlength=m),
              "random": rng.integers(0, 30, (3, m))}
    _assert_png(plot_lorenz(counts, tmp_path / "lorenz.png"))
    ids = rng.integers(0, m, (400, 5))
    dec = ctr_by_popularity_decile(ids, rng.random(ids.shape) < 0.2, pop)
    per_seed = rng.uniform(0.05, 0.3, (5, 10))
    _assert_png(plot_ctr_by_decile({"random": dec, "ppo": per_seed}, tmp_path / "decile.png"))


def test_cold_start(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    data = {
        "ppo": {"new_user_ctr": rng.uniform(0.1, 0.3, (5, 20)),
                "new_item_share": (np.arange(50), rng.uniform(0, 0.1, (5, 50))),
                "time_to_first_exposure": np.array([0, 3, 5, np.nan, 10]),
                "time_to_first_click": np.array([2, np.nan, 9, np.nan, np.nan])},
        "popularity": {"new_user_ctr": rng.uniform(0.1, 0.2, 20)},
    }
    _assert_png(plot_cold_start_curves(data, tmp_path / "cold.png"))


@pytest.mark.parametrize(
    "call",
    [
        lambda p: plot_learning_curves({"ppo": (np.arange(3), [[1.0, np.nan, 2.0]])}, p),
        lambda p: plot_ctr_by_decile({"ppo": [0.1, np.nan, 0.2]}, p),
        lambda p: plot_cold_start_curves({"ppo": {"new_user_ctr": [0.1, np.nan]}}, p),
        lambda p: plot_lorenz({"ppo": [1.0, np.nan]}, p),
        lambda p: plot_agent_bars([{"agent": "a", "metric": "ctr", "mean": np.nan, "low": 0, "high": 1}], "ctr", p),
    ],
)
def test_nan_input_raises_clear_error(tmp_path: Path, call) -> None:
    path = tmp_path / "nan.png"
    with pytest.raises(ValueError, match="finite"):
        call(path)
    assert not path.exists()


def test_allow_missing_and_other_errors(tmp_path: Path) -> None:
    _assert_png(plot_ctr_by_decile({"ppo": [[0.1, np.nan, 0.2], [0.1, 0.2, 0.3]]}, tmp_path / "d.png",
                                   allow_missing=True))
    with pytest.raises(ValueError, match=r"\.png"):
        plot_lorenz({"a": [1, 2]}, tmp_path / "lorenz.jpg")
    with pytest.raises(ValueError, match="non-empty mapping"):
        plot_lorenz({}, tmp_path / "l.png")
    with pytest.raises(ValueError, match="positive total"):
        plot_lorenz({"a": [0, 0]}, tmp_path / "l.png")
    with pytest.raises(ValueError, match="3 columns"):
        plot_learning_curves({"a": (np.arange(3), np.ones((2, 4)))}, tmp_path / "l.png")
    with pytest.raises(ValueError, match="expected keys among"):
        plot_cold_start_curves({"a": {"new_user_crt": [0.1]}}, tmp_path / "c.png")


@pytest.fixture
def figures(monkeypatch):
    """Keep every figure a plot saves, to inspect what was drawn."""
    from recgym.experiments import plots

    kept = []
    real = plots._save

    def keep(fig, path):
        kept.append(fig)
        return real(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return kept


def test_lorenz_legend_shows_the_tables_gini(tmp_path: Path, figures) -> None:
    """The table's Gini is the mean over seeds of per-seed Gini; the legend must show that same number (it
    used to show the Gini of exposure pooled over seeds, a different figure)."""
    from recgym.experiments.metrics import gini, lorenz_curve
    from recgym.experiments.stats import mean_ci

    rng = np.random.default_rng(4)
    counts = rng.zipf(1.6, (5, 300)).clip(0, 500)
    plot_lorenz({"popularity": counts}, tmp_path / "lorenz.png")
    label = [t.get_text() for t in figures[-1].axes[0].get_legend().get_texts()][1]
    ci = mean_ci([gini(c) for c in counts])
    assert label == f"popularity (Gini {ci.mean:.3f} ± {ci.half_width:.3f})"
    pooled = gini(counts.sum(0))
    assert f"{pooled:.3f}" != f"{ci.mean:.3f}"  # the two figures differ: the test can tell them apart
    x, y = lorenz_curve(counts[0])[0], np.mean([lorenz_curve(c)[1] for c in counts], axis=0)
    assert 1 - 2 * np.trapezoid(y, x) == pytest.approx(ci.mean, abs=1e-9)  # Gini of the drawn mean curve


def test_bands_clipped_and_no_data_is_a_gap(tmp_path: Path, figures) -> None:
    rng = np.random.default_rng(5)
    ctr = np.clip(rng.normal(0.02, 0.05, (5, 12)), 0, 1)  # near 0 and noisy: an unclipped band dips below 0
    share = rng.uniform(0, 0.1, (5, 30))
    share[:, :10] = np.nan  # before the first release: no data
    plot_cold_start_curves({"a": {"new_user_ctr": ctr, "new_item_share": (np.arange(30), share)},
                            "b": {"new_user_ctr": ctr * 0.5}}, tmp_path / "cold.png", allow_missing=True)
    fig = figures[-1]
    assert len(fig.axes) == 2  # no first-times panel: no data for it
    for ax in fig.axes:
        for band in ax.collections:
            ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
            assert ys.min() >= 0.0 and ys.max() <= 1.0
    line = fig.axes[1].get_lines()[0]
    assert np.isnan(line.get_ydata()[:10]).all() and np.isfinite(line.get_ydata()[10:]).all()
    # a kind with no finite value anywhere gets no (empty) panel; nothing at all is an error
    plot_cold_start_curves({"a": {"new_user_ctr": np.full(5, np.nan), "new_item_share": (np.arange(3), [0.1] * 3)}},
                           tmp_path / "cold2.png", allow_missing=True)
    assert [ax.get_title() for ax in figures[-1].axes] == ["New items: share of impressions"]
    with pytest.raises(ValueError, match="none with data"):
        plot_cold_start_curves({"a": {"new_user_ctr": np.full(5, np.nan)}}, tmp_path / "c3.png", allow_missing=True)


def test_axis_labels_are_words_with_units(tmp_path: Path, figures) -> None:
    rows = summarise([{"agent": a, "seed": s, "ctr": 0.1 + 0.01 * s} for a in ("x", "y") for s in range(3)],
                     by=["agent"], metric="ctr")
    plot_agent_bars(rows, "ctr", tmp_path / "b.png")
    assert figures[-1].axes[0].get_ylabel() == "click-through rate (clicks per impression)"
    plot_ctr_by_decile({"x": np.full((2, 10), 0.1)}, tmp_path / "d.png")
    assert "1 = least popular" in figures[-1].axes[0].get_xlabel()
