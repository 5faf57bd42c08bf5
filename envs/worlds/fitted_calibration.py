"""Post-fit steps of a fitted world: Platt scaling of the logits and the cold users' popularity weight.

Both are chosen on the validation split (``Split.val``: the latest train rows of each warm user, never fitted
on), so nothing here looks at held-out rows.
"""

from __future__ import annotations

import numpy as np

from recgym.envs.datasets import InteractionData, Split

__all__ = ["platt_scale", "choose_cold_popularity", "COLD_POPULARITY_GRID"]


def platt_scale(logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None,
                extra: np.ndarray | None = None) -> tuple[float, float, float]:
    """``(alpha, beta, gamma)`` minimising the weighted mean log-loss of ``sigmoid(alpha * logit + gamma * extra +
    beta)`` (``gamma = 0`` without ``extra``; scipy's L-BFGS from ``(1, 0, 0)``: deterministic). ``(1, 0, 0)`` when
    the labels are all one class."""
    from scipy.optimize import minimize

    x = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    if y.min() == y.max():
        return 1.0, 0.0, 0.0
    feats = np.stack([x, np.ones_like(x)] + ([] if extra is None else [np.asarray(extra, np.float64)]), 1)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = feats @ theta
        nll = np.logaddexp(0.0, z) - y * z  # -log-likelihood of one pair
        g = w * (1.0 / (1.0 + np.exp(-np.clip(z, -50, 50))) - y)
        return float(w @ nll), feats.T @ g

    theta = minimize(loss, np.r_[1.0, np.zeros(feats.shape[1] - 1)], jac=True, method="L-BFGS-B").x
    return float(theta[0]), float(theta[1]), float(theta[2]) if extra is not None else 0.0


COLD_POPULARITY_GRID = (0.0, 0.5, 1.0, 2.0)


def choose_cold_popularity(data: InteractionData, split: Split, z_cold: np.ndarray, b_cold: np.ndarray,
                            item_latent: np.ndarray, item_appeal: np.ndarray, w_pop: float,
                            rng: np.random.Generator, max_users: int = 500) -> float:
    """The extra popularity weight of cold users from :data:`COLD_POPULARITY_GRID` maximising AUC + NDCG@10 of
    warm users' *validation* positives (never fitted on) when those users are scored as if cold."""
    inter = data.interactions
    val = split.val[inter["positive"].to_numpy()[split.val] & ~split.cold_items[inter["item"].to_numpy()[split.val]]]
    users = np.unique(inter["user"].to_numpy()[val])
    if users.size == 0:
        return 0.0
    if users.size > max_users:
        users = np.sort(rng.choice(users, max_users, replace=False))
    lat, logpop = item_latent[:, :-1], item_latent[:, -1]
    base = z_cold[users] @ lat.T + (w_pop * logpop + item_appeal)[None, :] + b_cold[users][:, None]
    fit = split.fit_rows
    u_all, i_all = inter["user"].to_numpy(), inter["item"].to_numpy()
    row_of = {int(u): k for k, u in enumerate(users)}
    blocked = np.zeros(base.shape, bool)  # the user's fitted items and cold items are not candidates
    keep = np.isin(u_all[fit], users)
    blocked[[row_of[int(u)] for u in u_all[fit][keep]], i_all[fit][keep]] = True
    blocked[:, split.cold_items] = True
    target = np.zeros(base.shape, bool)
    vk = np.isin(u_all[val], users)
    target[[row_of[int(u)] for u in u_all[val][vk]], i_all[val][vk]] = True
    disc = 1.0 / np.log2(np.arange(2, 12))
    best, best_score = 0.0, -np.inf
    for delta in COLD_POPULARITY_GRID:
        s = np.where(blocked & ~target, -np.inf, base + delta * logpop[None, :])
        order = np.argsort(-s, axis=1, kind="stable")
        hits = np.take_along_axis(target, order, 1)
        n_pos, n_cand = hits.sum(1), (~blocked | target).sum(1)
        ranks = np.where(hits, np.arange(s.shape[1])[None, :], 0).sum(1)  # sum of 0-based ranks of positives
        auc = 1.0 - (ranks - n_pos * (n_pos - 1) / 2) / np.maximum(n_pos * (n_cand - n_pos), 1)
        ideal = np.array([disc[:min(10, n)].sum() for n in n_pos])
        ndcg = (hits[:, :10] * disc).sum(1) / ideal
        score = float(auc.mean() + ndcg.mean())
        if score > best_score + 1e-9:
            best, best_score = delta, score
    return best
