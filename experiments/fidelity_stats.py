"""Agreement between two rankings of the same policies, with bootstrap confidence intervals over users.

Inputs are per-user values ``real`` and ``sim`` of shape ``(n_users, P)`` (P policies evaluated on the same
users). A policy's value is the mean over users; the statistics compare the P real means with the P simulated
means:

* Spearman's rho and Kendall's tau-b (``scipy.stats``; ties averaged);
* top-1 agreement: the policy best in reality is best in simulation;
* pairwise sign accuracy: share of the P(P-1)/2 policy pairs ordered the same way (a tie on either side
  counts half);
* bootstrap: ``n_boot`` resamples of the users (with replacement, the same resample for real and sim, so
  the user-level pairing is kept); percentile 95 % intervals of rho and tau, and the share of resamples whose
  top-1 agrees.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

__all__ = ["rank_agreement", "pairwise_sign_accuracy", "spearman", "kendall"]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of two ``(P,)`` vectors; ``nan`` when either is constant."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b of two ``(P,)`` vectors; ``nan`` when either is constant."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.kendalltau(x, y).statistic)


def pairwise_sign_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Share of pairs ``i < j`` with ``sign(x_i - x_j) == sign(y_i - y_j)``; a pair tied on one side only counts 0.5."""
    i, j = np.triu_indices(len(x), k=1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    score = np.where(sx == sy, 1.0, np.where((sx == 0) | (sy == 0), 0.5, 0.0))
    return float(score.mean()) if score.size else float("nan")


def _top1(x: np.ndarray, y: np.ndarray) -> bool:
    return bool(np.argmax(x) == np.argmax(y))


def rank_agreement(real: np.ndarray, sim: np.ndarray, names: list[str], *, n_boot: int = 1000,
                   rng: np.random.Generator, confidence: float = 0.95) -> dict[str, Any]:
    """Agreement of the policy means of ``real`` and ``sim`` (both ``(n_users, P)`` float; NaN rows ignored).

    Returns ``spearman``, ``spearman_ci``, ``kendall``, ``kendall_ci``, ``top1_agreement`` (bool),
    ``top1_bootstrap`` (share of resamples agreeing), ``pairwise_sign_accuracy``, ``real_best``, ``sim_best``,
    ``n_users``, ``n_boot``.
    """
    real, sim = np.asarray(real, np.float64), np.asarray(sim, np.float64)
    if real.shape != sim.shape or real.ndim != 2:
        raise ValueError(f"rank_agreement: expected two (n_users, P) arrays of one shape, received {real.shape} and {sim.shape}")
    if real.shape[1] != len(names) or len(names) < 3:
        raise ValueError(f"rank_agreement: expected >= 3 policies named by {len(names)} names, received {real.shape[1]}")
    keep = np.isfinite(real).all(1) & np.isfinite(sim).all(1)
    real, sim = real[keep], sim[keep]
    n = real.shape[0]
    if n == 0:
        raise ValueError("rank_agreement: expected at least one user with finite values, received none")
    mr, ms = real.mean(0), sim.mean(0)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # (n_boot, n) resample weights
    br, bs = counts @ real / n, counts @ sim / n  # (n_boot, P) resampled means
    rhos = np.array([spearman(a, b) for a, b in zip(br, bs, strict=True)])
    taus = np.array([kendall(a, b) for a, b in zip(br, bs, strict=True)])
    lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2

    def ci(v: np.ndarray) -> list[float]:
        v = v[np.isfinite(v)]
        return [float(np.percentile(v, lo)), float(np.percentile(v, hi))] if v.size else [float("nan")] * 2

    return {
        "spearman": spearman(mr, ms), "spearman_ci": ci(rhos), "kendall": kendall(mr, ms), "kendall_ci": ci(taus),
        "top1_agreement": _top1(mr, ms),
        "top1_bootstrap": float(np.mean([_top1(a, b) for a, b in zip(br, bs, strict=True)])),
        "pairwise_sign_accuracy": pairwise_sign_accuracy(mr, ms), "real_best": names[int(np.argmax(mr))],
        "sim_best": names[int(np.argmax(ms))], "n_users": int(n), "n_boot": int(n_boot), "confidence": confidence,
    }
