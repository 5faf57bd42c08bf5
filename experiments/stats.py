"""Mean and Student-t confidence intervals over seeds, aggregation of result rows, CI comparison.

Pure Python + numpy; the t quantile is computed here (inverse of the regularised incomplete beta
function by bisection) so results do not depend on whether scipy is installed.

Usage::

    m = mean_ci([0.31, 0.29, 0.35, 0.30, 0.33])          # MeanCI(mean, low, high, half_width)
    rows = summarise(records, by=["agent", "segment"], metric=["ctr", "ndcg"])
    ci_separated(rows[0], rows[1])                         # True when the two 95% CIs do not overlap
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MeanCI", "ci_separated", "mean_ci", "summarise", "t_cdf", "t_quantile"]

_STAT_KEYS = ("metric", "n", "mean", "low", "high", "half_width")


class MeanCI(NamedTuple):
    """Sample mean with a two-sided Student-t confidence interval ``[low, high] = mean -/+ half_width``."""

    mean: float
    low: float
    high: float
    half_width: float


# ------------------------------------------------------------------------------------ t distribution
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            delta = d * c
            h *= delta
        if abs(delta - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)`` for ``a, b > 0`` and ``0 <= x <= 1``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _check_df(df: float, where: str) -> float:
    if isinstance(df, bool) or not isinstance(df, int | float | np.integer | np.floating) or not df > 0:
        raise ValueError(f"{where}(df): expected degrees of freedom > 0, received {df!r}")
    return float(df)


def t_cdf(t: float, df: float) -> float:
    """CDF of Student's t distribution with ``df > 0`` (real-valued) degrees of freedom."""
    df = _check_df(df, "t_cdf")
    if math.isnan(t):
        raise ValueError("t_cdf(t): expected a number, received nan")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t)) if math.isfinite(t) else 0.0
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Inverse CDF of Student's t: the ``t`` with ``P(T <= t) = p``, accurate to ~1e-10 relative.

    Solves ``I_x(df/2, 1/2) = 2 min(p, 1-p)`` for ``x = df / (df + t^2)`` by bisection, where ``I`` is the
    regularised incomplete beta function. Examples: ``t_quantile(0.975, 4) = 2.776``,
    ``t_quantile(0.975, 1) = 12.706``, ``t_quantile(0.975, 29) = 2.045``.
    """
    df = _check_df(df, "t_quantile")
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile(p): expected a probability in (0, 1), received {p!r}")
    if p == 0.5:
        return 0.0
    target = 2.0 * min(p, 1.0 - p)  # two-sided tail mass, I_x increasing in x
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _betainc(df / 2.0, 0.5, mid) < target:
            lo = mid
        else:
            hi = mid
    x = 0.5 * (lo + hi)
    t = math.sqrt(df * (1.0 - x) / x)
    return t if p > 0.5 else -t


# ---------------------------------------------------------------------------------------- intervals
def _values(values: ArrayLike, where: str, nan_policy: str) -> np.ndarray:
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"{where}(nan_policy): expected 'raise' or 'omit', received {nan_policy!r}")
    a = np.asarray(values)
    if a.dtype.kind not in "biuf" or a.ndim != 1:
        raise ValueError(f"{where}(values): expected a 1-d numeric array, received shape {a.shape} dtype {a.dtype}")
    a = a.astype(np.float64)
    if np.isinf(a).any():
        raise ValueError(f"{where}(values): expected finite values, received {a[np.isinf(a)][0]}")
    if np.isnan(a).any():
        if nan_policy == "raise":
            raise ValueError(f"{where}(values): expected no nan (pass nan_policy='omit' to drop them), "
                             f"received nan at index {int(np.argmax(np.isnan(a)))}")
        a = a[~np.isnan(a)]
    if a.size == 0:
        raise ValueError(f"{where}(values): expected at least one value, received none")
    return a


def mean_ci(values: ArrayLike, confidence: float = 0.95, *, nan_policy: str = "raise") -> MeanCI:
    """Mean and two-sided Student-t confidence interval of independent replicates (e.g. one per seed).

    ``half_width = t_{(1+confidence)/2, n-1} * s / sqrt(n)`` with ``s`` the sample standard deviation
    (``ddof=1``).

    Args:
        values: ``(n,)`` finite numbers, ``n >= 1``.
        confidence: in ``(0, 1)``.
        nan_policy: ``"raise"`` (default) or ``"omit"`` (drop nan before computing; ``n`` is what is left).

    Returns:
        :class:`MeanCI`. With ``n == 1`` the interval is undefined and returned as unbounded:
        ``half_width = inf``, ``low = -inf``, ``high = inf`` (so it never counts as separated).

    Raises:
        ValueError: empty input, non-1-d input, inf values, nan with ``nan_policy="raise"``, bad confidence.
    """
    if not isinstance(confidence, float | int) or isinstance(confidence, bool) or not 0 < confidence < 1:
        raise ValueError(f"mean_ci(confidence): expected a number in (0, 1), received {confidence!r}")
    a = _values(values, "mean_ci", nan_policy)
    mean = float(a.mean())
    if a.size == 1:
        return MeanCI(mean, -math.inf, math.inf, math.inf)
    half = t_quantile(0.5 + confidence / 2.0, a.size - 1) * float(a.std(ddof=1)) / math.sqrt(a.size)
    return MeanCI(mean, mean - half, mean + half, half)


def _bounds(x: Any, confidence: float, where: str) -> tuple[float, float]:
    if isinstance(x, MeanCI):
        low, high = x.low, x.high
    elif isinstance(x, Mapping):
        if "low" not in x or "high" not in x:
            raise ValueError(f"ci_separated({where}): expected a mapping with 'low' and 'high' (a summarise row), "
                             f"received keys {sorted(x)}")
        low, high = float(x["low"]), float(x["high"])
    else:
        ci = mean_ci(x, confidence)
        low, high = ci.low, ci.high
    if math.isnan(low) or math.isnan(high):
        raise ValueError(f"ci_separated({where}): expected numeric bounds, received low={low}, high={high}")
    return low, high


def ci_separated(a: MeanCI | Mapping[str, Any] | ArrayLike, b: MeanCI | Mapping[str, Any] | ArrayLike,
                 confidence: float = 0.95) -> bool:
    """True when the two confidence intervals do not overlap (touching endpoints count as overlap).

    Each argument is a :class:`MeanCI`, a :func:`summarise` row (mapping with ``low``/``high``), or a 1-d
    array of raw replicate values (its CI at ``confidence`` is computed). A plain tuple is treated as raw
    values, not as an interval. Non-overlap of two 95 % CIs is a conservative test of a difference.
    """
    lo_a, hi_a = _bounds(a, confidence, "a")
    lo_b, hi_b = _bounds(b, confidence, "b")
    return hi_a < lo_b or hi_b < lo_a


# -------------------------------------------------------------------------------------- aggregation
def summarise(records: Iterable[Mapping[str, Any]], by: Sequence[str], metric: str | Sequence[str],
              confidence: float = 0.95, *, nan_policy: str = "raise", skip_missing: bool = False,
              replicate_key: str | None = None) -> list[dict[str, Any]]:
    """Aggregate rows (e.g. one per agent x seed x segment) into mean/CI rows per group and metric.

    Args:
        records: dict rows holding the ``by`` keys and numeric ``metric`` values.
        by: grouping keys, e.g. ``["agent", "segment"]``; the other rows' keys (seed) are replicates.
        metric: one metric name or several.
        confidence: CI level.
        nan_policy: passed to :func:`mean_ci` (``"omit"`` drops nan replicates).
        skip_missing: if True, records lacking a metric are skipped for that metric (metric sets may
            differ per segment); otherwise a missing key raises.
        replicate_key: if given (e.g. ``"seed"``), each group must hold distinct values of this key;
            catches double-counted replicates.

    Returns:
        One dict per (group, metric), groups in first-appearance order, metrics in the given order:
        ``{**group, "metric", "n", "mean", "low", "high", "half_width"}``. Groups with no value for a
        metric (all skipped) are omitted.
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    by = [by] if isinstance(by, str) else list(by)
    if not metrics:
        raise ValueError("summarise(metric): expected at least one metric name, received none")
    clash = sorted(set(by) & set(_STAT_KEYS))
    if clash:
        raise ValueError(f"summarise(by): expected keys other than {_STAT_KEYS}, received {clash}")
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for i, rec in enumerate(records):
        missing = [k for k in by + ([replicate_key] if replicate_key else []) if k not in rec]
        if missing:
            raise ValueError(f"summarise(records[{i}]): expected keys {missing}, received keys {sorted(rec)}")
        groups.setdefault(tuple(rec[k] for k in by), []).append(rec)
    out: list[dict[str, Any]] = []
    for key, rows in groups.items():
        label = dict(zip(by, key, strict=True))
        if replicate_key is not None:
            reps = [r[replicate_key] for r in rows]
            dup = sorted({str(r) for r in reps if reps.count(r) > 1})
            if dup:
                raise ValueError(f"summarise: expected distinct {replicate_key!r} values in group {label}, "
                                 f"received duplicates {dup}")
        for m in metrics:
            present = [r for r in rows if m in r]
            if len(present) < len(rows) and not skip_missing:
                raise ValueError(f"summarise: expected metric {m!r} in every record of group {label}, "
                                 f"received {len(rows) - len(present)} records without it (skip_missing=True to skip)")
            vals = [r[m] for r in present]
            if not vals or (nan_policy == "omit" and all(isinstance(v, float) and math.isnan(v) for v in vals)):
                continue
            try:
                arr = np.asarray(vals, dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise ValueError(f"summarise: expected numeric values of {m!r} in group {label}, received {vals!r}") from err
            try:
                ci = mean_ci(arr, confidence, nan_policy=nan_policy)
            except ValueError as err:
                raise ValueError(f"summarise: metric {m!r} in group {label}: {err}") from err
            n = int(np.count_nonzero(~np.isnan(arr)))
            out.append({**label, "metric": m, "n": n, "mean": ci.mean, "low": ci.low, "high": ci.high,
                        "half_width": ci.half_width})
    return out
