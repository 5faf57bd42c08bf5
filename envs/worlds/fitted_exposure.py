"""Exposure correction of a fitted world: from P(a user interacts with an item) to P(click | the item is shown).

The hidden model of :mod:`recgym.envs.worlds.fitted` is fitted on logged positives against sampled items: it
predicts *interaction*, ``P(interact) = P(exposed) * P(click | exposed)``, and its popularity term carries
exposure (popular items are seen more) as well as taste. The env shows a slate, so the item is exposed and
its click logit should be ``P(click | shown)``. Replaying logged rows through the interaction model gives the
tail far too few clicks (ml-100k: the five least popular deciles 32-93 % under their real share).

The correction is fitted on the **validation rows as logged** (each row was shown and consumed; its label is
the ``positive`` flag, e.g. rating >= 4), never on held-out rows::

    click_logit(u, i) = scale * interaction_logit(u, i) + exposure(i) + intercept
    exposure(i)       = slope * l_i + sum_j hinge_j * max(knot_j - l_i, 0)        l_i = log(M * pop_i)

``exposure`` is a piecewise-linear function of log-popularity: a slope, plus hinges at the deciles of the warm
items' log-popularity that let the tail flatten (on ml-100k the real positive rate among shown items stops
falling below the 6th decile, while the interaction model keeps falling). The hinge weights get an L2 penalty
chosen by 5-fold cross-validation over users *within* the validation rows, by the one-standard-error rule: the
largest penalty (``inf``: no hinges, the linear correction) whose CV log-loss is within one standard error of
the best. On ml-100k and ml-latest-small that is the linear correction (the hinges lower the validation loss by
less than its standard error). Measured on the held-out rows, the CV-best hinges would have been better on
ml-100k (8th decile +2 % instead of -22 %) and worse on ml-latest-small (+28 % instead of +7 %), and they cost
ml-100k's policy-ranking rho (0.90 instead of 0.98).

Measured with the linear correction (``benchmarks/RESULTS.md``, ml-100k / ml-latest-small): replay JS 0.025 /
0.013 (0.063 / 0.130 without), every popularity decile with >= 50 real clicks within +-25 % of its real share,
ECE of the env's clicks on the held-out logged rows 0.028 / 0.020, policy-ranking rho 0.98 / 0.98.

Everything is per item or a global affine map of the logit, so it folds into the env's single click logit
(:func:`fold_exposure`: ``scale`` multiplies user latents, biases and appeal; ``slope`` goes to the popularity
weight; the hinges to each item's appeal; ``intercept`` to the bias).

Where it cannot be identified — an implicit log (every logged row is a positive), or too few validation rows of
each label — the correction is the identity, with the reason recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from recgym.envs.world import PreferenceParams, World

__all__ = ["Exposure", "fit_exposure", "fold_exposure", "RIDGE_GRID", "MIN_ROWS_PER_LABEL"]

RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, float("inf"))  # inf: no hinges, the linear correction
MIN_ROWS_PER_LABEL = 20


@dataclass(frozen=True)
class Exposure:
    """A fitted exposure correction (see the module docstring). The identity has ``scale=1`` and no terms."""

    scale: float = 1.0
    intercept: float = 0.0
    slope: float = 0.0
    knots: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (J,) float64 log-popularity knots
    hinges: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (J,) float64 weights of max(knot - l, 0)
    ridge: float = 0.0
    rows: int = 0
    note: str = ""

    @property
    def identity(self) -> bool:
        return self.scale == 1.0 and self.intercept == 0.0 and self.slope == 0.0 and not np.any(self.hinges)

    def hinge_term(self, logpop: np.ndarray) -> np.ndarray:
        """``(N,)`` float64 sum of the hinge terms at ``logpop`` (the part of ``exposure`` folded into appeal)."""
        lp = np.asarray(logpop, np.float64)
        if self.knots.size == 0:
            return np.zeros_like(lp)
        return np.maximum(self.knots[None, :] - lp[:, None], 0.0) @ self.hinges

    def apply(self, logits: np.ndarray, logpop: np.ndarray) -> np.ndarray:
        """Click logits ``(N,)`` float64 from interaction ``logits`` ``(N,)`` at items of log-popularity ``logpop``."""
        lp = np.asarray(logpop, np.float64)
        return self.scale * np.asarray(logits, np.float64) + self.slope * lp + self.hinge_term(lp) + self.intercept

    def to_array(self) -> np.ndarray:
        """Flat float64 form for the world cache: ``[scale, intercept, slope, ridge, rows, J, knots..., hinges...]``."""
        return np.r_[self.scale, self.intercept, self.slope, self.ridge, self.rows, self.knots.size, self.knots,
                     self.hinges].astype(np.float64)

    @classmethod
    def from_array(cls, a: np.ndarray, note: str = "") -> Exposure:
        a = np.asarray(a, np.float64)
        j = int(a[5])
        if a.size != 6 + 2 * j:
            raise ValueError(f"exposure array: expected {6 + 2 * j} values for {j} knots, received {a.size}")
        return cls(float(a[0]), float(a[1]), float(a[2]), a[6:6 + j].copy(), a[6 + j:].copy(), float(a[3]), int(a[4]), note)

    def describe(self) -> dict[str, object]:
        return {"scale": round(self.scale, 5), "intercept": round(self.intercept, 5), "slope": round(self.slope, 5),
                "hinges": [round(float(h), 5) for h in self.hinges], "knots": [round(float(k), 5) for k in self.knots],
                "ridge": self.ridge if np.isfinite(self.ridge) else "inf", "rows": self.rows, "note": self.note}


def _design(logits: np.ndarray, logpop: np.ndarray, knots: np.ndarray) -> np.ndarray:
    cols = [logits, np.ones_like(logits), logpop] + [np.maximum(k - logpop, 0.0) for k in knots]
    return np.stack(cols, 1)


def _fit(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Logistic regression on design ``x`` ``(N, 3 + J)`` with an L2 penalty on the hinge columns (L-BFGS from
    the identity: deterministic)."""
    from scipy.optimize import minimize

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ theta
        g = x.T @ (1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))) - y) / y.size
        g[3:] += 2.0 * ridge * theta[3:]
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + ridge * theta[3:] @ theta[3:]), g

    return minimize(loss, np.r_[1.0, np.zeros(x.shape[1] - 1)], jac=True, method="L-BFGS-B").x


def _log_loss(x: np.ndarray, y: np.ndarray, theta: np.ndarray) -> float:
    z = x @ theta
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def fit_exposure(logits: np.ndarray, logpop: np.ndarray, labels: np.ndarray, users: np.ndarray,
                 item_logpop: np.ndarray, rng: np.random.Generator, folds: int = 5) -> Exposure:
    """Fit the correction on logged rows: ``logits`` ``(N,)`` interaction logits of the rows, ``logpop`` ``(N,)``
    their items' log-popularity, ``labels`` ``(N,)`` 0/1 (clicked among shown), ``users`` ``(N,)`` int (CV folds
    are by user), ``item_logpop`` ``(M_warm,)`` the warm items' log-popularity (the knots are its deciles)."""
    y = np.asarray(labels, np.float64)
    n_pos = int(y.sum())
    if min(n_pos, y.size - n_pos) < MIN_ROWS_PER_LABEL:
        return Exposure(rows=int(y.size), note=(
            f"identity: P(click | shown) is not identifiable from {n_pos} clicked and {y.size - n_pos} unclicked "
            f"validation rows (needs >= {MIN_ROWS_PER_LABEL} of each; an implicit log has no unclicked rows)"))
    knots = np.unique(np.quantile(np.asarray(item_logpop, np.float64), np.linspace(0.1, 0.9, 9)))
    x = _design(np.asarray(logits, np.float64), np.asarray(logpop, np.float64), knots)
    uniq = np.unique(users)
    fold_of = dict(zip(uniq.tolist(), (rng.permutation(uniq.size) % folds).tolist(), strict=True))
    fold = np.array([fold_of[int(u)] for u in users])
    best = np.inf
    if uniq.size >= folds:
        cv = {}
        for ridge in RIDGE_GRID:
            cols = x if np.isfinite(ridge) else x[:, :3]
            per_row = np.full(y.size, np.nan)
            for f in range(folds):
                tr, te = fold != f, fold == f
                if len(np.unique(y[tr])) < 2:
                    break
                z = cols[te] @ _fit(cols[tr], y[tr], ridge if np.isfinite(ridge) else 0.0)
                per_row[te] = np.logaddexp(0.0, z) - y[te] * z
            if np.isfinite(per_row).all():
                cv[ridge] = per_row
        if cv:
            low = min(cv, key=lambda r: cv[r].mean())
            # one-standard-error rule: the simplest model (largest penalty) within one standard error of the best
            limit = cv[low].mean() + cv[low].std() / np.sqrt(y.size)
            best = max(r for r in cv if cv[r].mean() <= limit)
    if not np.isfinite(best):
        knots, x = knots[:0], x[:, :3]
    theta = _fit(x, y, best if np.isfinite(best) else 0.0)
    if theta[0] <= 0:  # a non-positive scale would invert every user's ranking: refuse rather than fold it in
        return Exposure(rows=int(y.size), note=f"identity: the fitted scale {theta[0]:.3g} is not positive")
    return Exposure(float(theta[0]), float(theta[1]), float(theta[2]), knots, theta[3:].copy(), best, int(y.size),
                    f"fitted on {y.size} validation rows; hinge L2 {best:g} ({'linear' if not knots.size else 'piecewise-linear'}) "
                    f"by {folds}-fold CV over users, one-standard-error rule")


def fold_exposure(interaction: World, exposure: Exposure, logpop: np.ndarray) -> World:
    """``interaction`` with ``exposure`` folded into its parameters, so that the env's click logit is exactly
    ``exposure.apply(interaction logit, logpop)``: ``scale`` on the user latents, user biases and appeal, ``slope``
    on the popularity weight, the hinges in each item's appeal, ``intercept`` in the bias. ``logpop`` ``(M,)``
    is ``log(M * pop_i)`` of every item."""
    c, p, w = interaction.catalog, interaction.population, interaction.preference
    a = exposure.scale
    catalog = replace(c, appeal=(a * c.appeal.astype(np.float64) + exposure.hinge_term(logpop)).astype(np.float32))
    population = replace(p, latent=(a * p.latent.astype(np.float64)).astype(np.float32),
                         bias=(a * p.bias.astype(np.float64)).astype(np.float32))
    preference = PreferenceParams(affinity_scale=w.affinity_scale, appeal_weight=w.appeal_weight,
                                  popularity_weight=a * w.popularity_weight + exposure.slope,
                                  bias=a * w.bias + exposure.intercept)
    return replace(interaction, catalog=catalog, population=population, preference=preference,
                   source={**interaction.source, "clicks": "P(click | shown)", "exposure": exposure.describe()})
