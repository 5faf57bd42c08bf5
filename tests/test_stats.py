"""Statistics: t quantiles against table values, mean/CI, summarise, CI separation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recgym.experiments.stats import MeanCI, ci_separated, mean_ci, summarise, t_cdf, t_quantile


@pytest.mark.parametrize(
    ("p", "df", "table"),
    [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 4, 2.776), (0.975, 9, 2.262), (0.975, 29, 2.045),
     (0.975, 120, 1.980), (0.95, 10, 1.812), (0.995, 5, 4.032), (0.9, 3, 1.638)],
)
def test_t_quantile_table_values(p: float, df: int, table: float) -> None:
    assert t_quantile(p, df) == pytest.approx(table, abs=5e-4)
    assert t_quantile(1 - p, df) == pytest.approx(-table, abs=5e-4)


def test_t_quantile_closed_forms_and_inverse() -> None:
    for p in (0.6, 0.9, 0.975, 0.999):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)  # Cauchy
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)
        for df in (0.5, 3.7, 1e6):
            assert t_cdf(t_quantile(p, df), df) == pytest.approx(p, rel=1e-9)
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)  # -> normal
    assert t_quantile(0.5, 3) == 0.0
    for bad in ((0.0, 3), (1.0, 3), (0.9, 0), (0.9, -1)):
        with pytest.raises(ValueError, match="expected"):
            t_quantile(*bad)


def test_t_quantile_matches_scipy_when_installed() -> None:
    st = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3.5, 7, 30, 500):
        for p in (0.01, 0.3, 0.8, 0.975, 0.9995):
            assert t_quantile(p, df) == pytest.approx(st.t.ppf(p, df), rel=1e-9)


def test_mean_ci_hand_computed() -> None:
    # values 1..5: mean 3, s = sqrt(10/4) = 1.5811, s/sqrt5 = 0.7071; t_{.975,4} = 2.7764 -> hw 1.9632
    ci = mean_ci([1, 2, 3, 4, 5])
    assert isinstance(ci, MeanCI)
    m, lo, hi, hw = ci
    assert m == 3.0 and hw == pytest.approx(2.776445 * math.sqrt(2.5) / math.sqrt(5), rel=1e-6)
    assert (lo, hi) == pytest.approx((3 - hw, 3 + hw))
    assert mean_ci([2.0, 2.0, 2.0]).half_width == 0.0
    assert mean_ci([1, 2, 3, 4, 5], confidence=0.99).half_width > hw


def test_mean_ci_edge_cases() -> None:
    one = mean_ci([0.7])  # n = 1: undefined interval, returned unbounded
    assert one.mean == 0.7 and one.half_width == math.inf and one.low == -math.inf and one.high == math.inf
    with pytest.raises(ValueError, match="at least one value"):
        mean_ci([])
    with pytest.raises(ValueError, match="nan_policy='omit'"):
        mean_ci([1.0, np.nan])
    assert mean_ci([1.0, np.nan, 3.0], nan_policy="omit").mean == 2.0
    with pytest.raises(ValueError, match="finite"):
        mean_ci([1.0, np.inf])
    with pytest.raises(ValueError, match="1-d"):
        mean_ci([[1.0, 2.0]])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([1.0, 2.0], confidence=95)


def test_ci_separated() -> None:
    assert ci_separated(MeanCI(1, 0.5, 1.5, 0.5), MeanCI(3, 2, 4, 1))
    assert not ci_separated(MeanCI(1, 0.5, 2.0, 1.0), MeanCI(3, 2, 4, 1))  # touching = overlap
    assert not ci_separated(mean_ci([1.0]), MeanCI(100, 99, 101, 1))  # n=1 is unbounded
    assert ci_separated([1.0, 1.1, 0.9, 1.0], [5.0, 5.2, 4.9, 5.1])  # raw replicate values
    assert ci_separated({"low": 0, "high": 1}, {"low": 2, "high": 3})
    with pytest.raises(ValueError, match="'low' and 'high'"):
        ci_separated({"mean": 1}, {"low": 2, "high": 3})


def _records() -> list[dict]:
    rows = []
    for agent, base in (("ppo", 0.3), ("random", 0.1)):
        for seed in range(3):
            rows.append({"agent": agent, "seed": seed, "segment": "all", "ctr": base + 0.01 * seed, "gini": 0.5})
            rows.append({"agent": agent, "seed": seed, "segment": "cold_users", "ctr": base / 2})
    return rows


def test_summarise() -> None:
    out = summarise(_records(), by=["agent", "segment"], metric=["ctr", "gini"], skip_missing=True,
                    replicate_key="seed")
    keys = [(r["agent"], r["segment"], r["metric"]) for r in out]
    assert keys == [("ppo", "all", "ctr"), ("ppo", "all", "gini"), ("ppo", "cold_users", "ctr"),
                    ("random", "all", "ctr"), ("random", "all", "gini"), ("random", "cold_users", "ctr")]
    r = out[0]  # ppo/all ctr: 0.30, 0.31, 0.32 -> mean 0.31, s = 0.01, hw = t_{.975,2} * 0.01 / sqrt3
    assert r["n"] == 3 and r["mean"] == pytest.approx(0.31)
    assert r["half_width"] == pytest.approx(4.302653 * 0.01 / math.sqrt(3), rel=1e-6)
    assert r["low"] == pytest.approx(0.31 - r["half_width"])
    assert ci_separated(out[0], out[3])


def test_summarise_errors() -> None:
    with pytest.raises(ValueError, match="expected metric 'gini' in every record"):
        summarise(_records(), by=["agent", "segment"], metric="gini")
    with pytest.raises(ValueError, match=r"records\[0\]\): expected keys \['arm'\]"):
        summarise(_records(), by=["arm"], metric="ctr")
    with pytest.raises(ValueError, match="distinct 'seed'"):
        summarise(_records(), by=["agent"], metric="ctr", replicate_key="seed")  # segments mixed in
    with pytest.raises(ValueError, match="numeric"):
        summarise([{"a": 1, "m": "x"}], by=["a"], metric="m")
    with pytest.raises(ValueError, match="group {'a': 1}.*nan"):
        summarise([{"a": 1, "m": 0.1}, {"a": 1, "m": float("nan")}], by=["a"], metric="m")
    with pytest.raises(ValueError, match="other than"):
        summarise(_records(), by=["mean"], metric="ctr")
    assert summarise([], by=["agent"], metric="ctr") == []
