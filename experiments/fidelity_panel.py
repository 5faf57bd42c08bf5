"""The fixed panel of recommenders that policy-ranking fidelity is measured on, and their two evaluations.

Every member is fitted on the *train* split's positives only (the same rows for all) and scores every item
for a batch of users (``(B, M)`` float). The panel (``PANEL``):

=================== ==============================================================================================
``random``          seeded uniform scores
``popularity``      train count of positives
``recent_popularity`` train positives among the latest 20 % of each user's train rows (time order)
``lm_similarity``   cosine of ``normalise(profile + mean LM vector of the user's train positives)`` with items
``item_knn``        item-based CF: sum of cosine similarities (over users) to the user's train positives
``bpr_mf``          BPR matrix factorisation (torch, 64 factors)
``als``             implicit-feedback ALS (the ``implicit`` library; skipped, and said so, when not installed)
``ctr_adapter``     the project's CTR model (:class:`~recgym.agents.supervised.CTRRecommender`): a trainable
                    adapter over frozen LM embeddings, fitted by cross-entropy on positives vs sampled items
=================== ==============================================================================================

**Real value** (:func:`real_values`): users with held-out positives on warm items (``split.test_eval``);
candidates: every warm item minus the user's train items; NDCG@K and recall@K of each member's top-K against
the held-out positives. **Simulated value**: the *same users, candidates and top-K lists* scored by the
fitted world — ``sim_ctr``, the mean hidden click probability of the top-K (what a simulated user would click
on that list; :func:`simulated_ctr`) — and, in the full simulator with its retrieval candidates and session
dynamics, ``sim_return``, the return of one session per user (:func:`simulated_returns`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import sparse

from recgym.common.device import torch_threads
from recgym.envs.worlds.fitted import FittedWorld, world_logits

__all__ = ["PANEL", "PanelData", "panel_data", "fit_member", "real_values", "simulated_ctr", "simulated_returns",
           "fit_bpr", "implicit_available"]

PANEL = ("random", "popularity", "recent_popularity", "lm_similarity", "item_knn", "bpr_mf", "als", "ctr_adapter")
Scorer = Callable[[np.ndarray], np.ndarray]


def implicit_available() -> bool:
    try:
        import implicit  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class PanelData:
    """Train positives as a CSR ``(U, M)`` matrix, the evaluation users and their held-out positives."""

    x: sparse.csr_matrix  # (U, M) float32 1 for a train positive (user, item)
    recent: np.ndarray  # (M,) float64 recent-positive counts
    users: np.ndarray  # (n,) int64 evaluation users (warm, with held-out positives on warm items)
    heldout: sparse.csr_matrix  # (n, M) bool held-out positives of those users
    exclude: sparse.csr_matrix  # (n, M) bool items not rankable for them (their train items)
    candidates: np.ndarray  # (M,) bool warm items


def panel_data(fw: FittedWorld) -> PanelData:
    data, split = fw.data, fw.split
    inter = data.interactions
    u_all, i_all = inter["user"].to_numpy(), inter["item"].to_numpy()
    pos = inter["positive"].to_numpy()
    tr = split.train
    trp = tr[pos[tr]]
    shape = (data.num_users, data.num_items)
    x = sparse.csr_matrix((np.ones(trp.size, np.float32), (u_all[trp], i_all[trp])), shape=shape)
    x.data[:] = 1.0  # repeated pairs count once
    recent_rows = _latest_share(trp, u_all, inter["timestamp"].to_numpy(), 0.2)
    recent = np.bincount(i_all[recent_rows], minlength=data.num_items).astype(np.float64)
    warm = ~split.cold_items
    te = split.test_eval
    te = te[pos[te] & warm[i_all[te]] & ~split.cold_users[u_all[te]]]
    users = np.unique(u_all[te])
    row = np.searchsorted(users, u_all[te])
    heldout = sparse.csr_matrix((np.ones(te.size, bool), (row, i_all[te])), shape=(users.size, data.num_items))
    seen = sparse.csr_matrix((np.ones(tr.size, bool), (u_all[tr], i_all[tr])), shape=shape)[users]
    return PanelData(x=x, recent=recent, users=users.astype(np.int64), heldout=heldout.astype(bool),
                     exclude=seen.astype(bool), candidates=warm)


def _latest_share(rows: np.ndarray, users: np.ndarray, ts: np.ndarray, share: float) -> np.ndarray:
    order = rows[np.lexsort((rows, ts[rows], users[rows]))]
    u = users[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    ends = np.r_[starts[1:], len(order)]
    keep = [order[e - max(1, int(round(share * (e - s)))):e] for s, e in zip(starts, ends, strict=True)]
    return np.concatenate(keep) if keep else np.empty(0, np.int64)


def fit_bpr(x: sparse.csr_matrix, warm: np.ndarray, rng: np.random.Generator, *, dim: int = 64, epochs: int = 30,
            lr: float = 0.01, l2: float = 1e-4, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BPR-MF on the positives of ``x`` ``(U, M)``: user factors ``(U, dim)``, item factors ``(M, dim)``, item bias
    ``(M,)`` (float32). Negatives uniform over ``warm`` items."""
    coo = x.tocoo()
    pu, pi = coo.row.astype(np.int64), coo.col.astype(np.int64)
    warm_idx = np.flatnonzero(warm)
    g = torch.Generator().manual_seed(int(rng.integers(2**31)))
    U = torch.nn.Parameter(torch.randn(x.shape[0], dim, generator=g) * 0.1)
    V = torch.nn.Parameter(torch.randn(x.shape[1], dim, generator=g) * 0.1)
    B = torch.nn.Parameter(torch.zeros(x.shape[1]))
    opt = torch.optim.Adam([U, V, B], lr=lr)
    with torch_threads(1):
        for _ in range(epochs):
            perm = rng.permutation(len(pu))
            u_all, i_all = torch.from_numpy(pu[perm]), torch.from_numpy(pi[perm])
            j_all = torch.from_numpy(rng.choice(warm_idx, size=len(pu)))
            for s in range(0, len(pu), batch_size):
                u, i, j = (t[s:s + batch_size] for t in (u_all, i_all, j_all))
                diff = (U[u] * (V[i] - V[j])).sum(1) + B[i] - B[j]
                reg = (U[u] ** 2).sum(1) + (V[i] ** 2).sum(1) + (V[j] ** 2).sum(1) + B[i] ** 2 + B[j] ** 2
                loss = -torch.nn.functional.logsigmoid(diff).mean() + l2 * reg.mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return U.detach().numpy(), V.detach().numpy(), B.detach().numpy()


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _ctr_adapter(fw: FittedWorld, pd: PanelData, rng: np.random.Generator, hist: np.ndarray) -> Scorer:
    from recgym.agents.base import EnvSpec
    from recgym.agents.logging import LoggedData
    from recgym.agents.supervised import CTRConfig, CTRRecommender

    w = fw.world
    pct = np.argsort(np.argsort(np.asarray(pd.x.sum(0)).ravel(), kind="stable"), kind="stable") / max(pd.x.shape[1] - 1, 1)
    feats = np.stack([pct, np.zeros_like(pct)], 1).astype(np.float32)
    negatives = 4
    coo = pd.x.tocoo()
    u, i = coo.row.astype(np.int64), coo.col.astype(np.int64)
    cand = np.concatenate([i[:, None], rng.choice(np.flatnonzero(pd.candidates), (u.size, negatives))], 1)
    k = negatives + 1
    profile, history = w.population.embeddings[u], hist[u]
    logged = LoggedData(
        user=u, profile=profile, history=history, context=np.zeros((u.size, 4), np.float32), candidates=cand,
        mask=np.ones_like(cand, np.int8), slate=np.tile(np.arange(k), (u.size, 1)), slate_items=cand,
        clicks=np.c_[np.ones((u.size, 1)), np.zeros((u.size, negatives))].astype(np.int8),
        propensity=np.full((u.size, k), np.nan, np.float32), reward=np.zeros(u.size, np.float32),
    )
    spec = EnvSpec(w.catalog.embeddings, k, k, "slate", item_features=feats)
    with torch_threads(1):
        agent = CTRRecommender(spec, CTRConfig(seed=int(rng.integers(2**31)), device="cpu", epochs=3,
                                               batch_size=512)).fit(logged)
    m = pd.x.shape[1]
    chunk = max(1, min(32, 200_000 // m))  # the scorer holds (chunk, M, 2h) activations

    def score(users: np.ndarray) -> np.ndarray:
        out = np.empty((users.size, m), np.float32)
        for s in range(0, users.size, chunk):
            b = users[s:s + chunk]
            obs = {"profile": w.population.embeddings[b], "history": hist[b], "context": np.zeros((b.size, 4), np.float32),
                   "candidates": np.tile(np.arange(m), (b.size, 1)), "mask": np.ones((b.size, m), np.int8)}
            with torch_threads(1):
                out[s:s + chunk] = agent.score(obs)
        return out

    return score


def fit_member(name: str, fw: FittedWorld, pd: PanelData, rng: np.random.Generator) -> Scorer:
    """Fit panel member ``name`` on the train positives; return ``scorer(users (B,) int64) -> (B, M) float``."""
    m = pd.x.shape[1]
    tie = 1e-6 * rng.random(m)  # one seeded tie-break order shared by every user
    if name == "random":
        seed = int(rng.integers(2**31))
        return lambda users: np.random.default_rng([seed, *users[:1].tolist()]).random((users.size, m))
    if name in ("popularity", "recent_popularity"):
        counts = np.asarray(pd.x.sum(0)).ravel() if name == "popularity" else pd.recent
        return lambda users: np.broadcast_to(counts + tie, (users.size, m))
    emb = fw.world.catalog.embeddings
    deg = np.asarray(pd.x.sum(1)).ravel()
    hist = (pd.x @ emb) / np.maximum(deg, 1)[:, None]  # (U, d) mean LM vector of train positives
    if name == "lm_similarity":
        items = _unit(emb)
        return lambda users: _unit(fw.world.population.embeddings[users] + hist[users]) @ items.T
    if name == "item_knn":
        norms = np.sqrt(np.asarray(pd.x.sum(0)).ravel())
        c = (pd.x @ sparse.diags(1.0 / np.maximum(norms, 1e-12))).tocsr()  # unit item columns in user space
        return lambda users: np.asarray(((pd.x[users] @ c.T) @ c).todense()) + tie
    if name == "bpr_mf":
        U, V, B = fit_bpr(pd.x, pd.candidates, rng)
        return lambda users: U[users] @ V.T + B[None, :]
    if name == "als":
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):  # implicit's advice: its own loop, not BLAS threads
            model = AlternatingLeastSquares(factors=64, regularization=0.05, alpha=10.0, iterations=15, num_threads=1,
                                            random_state=int(rng.integers(2**31)))
            model.fit(pd.x, show_progress=False)
        uf, itf = np.asarray(model.user_factors), np.asarray(model.item_factors)
        return lambda users: uf[users] @ itf.T
    if name == "ctr_adapter":
        return _ctr_adapter(fw, pd, rng, hist.astype(np.float32))
    raise ValueError(f"panel member: expected one of {PANEL}, received {name!r}")


def _top_k(scores: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    s = np.where(allowed, scores, -np.inf)
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


def real_values(scores: np.ndarray, rows: np.ndarray, pd: PanelData, k: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Top-K lists ``(B, K)`` and per-user ``ndcg`` / ``recall`` ``(B,)`` of ``scores`` for panel rows ``rows``."""
    allowed = pd.candidates[None, :] & ~pd.exclude[rows].toarray()
    top = _top_k(scores, allowed, k)
    held = pd.heldout[rows].toarray()
    rel = np.take_along_axis(held, top, 1).astype(np.float64)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    n_pos = held.sum(1)
    ideal = np.array([disc[: min(k, n)].sum() for n in n_pos])
    return top, {"ndcg": (rel * disc).sum(1) / ideal, "recall": rel.sum(1) / np.minimum(n_pos, k)}


def simulated_ctr(fw: FittedWorld, users: np.ndarray, top: np.ndarray) -> np.ndarray:
    """``(B,)`` mean hidden click probability of each user's top-K list in the fitted world."""
    logits = np.take_along_axis(world_logits(fw.world, users), top, 1).astype(np.float64)
    return (1.0 / (1.0 + np.exp(-logits))).mean(1)


def simulated_returns(fw: FittedWorld, users: np.ndarray, scorer: Scorer, env_config: Any, seed: int) -> np.ndarray:
    """``(B,)`` return of one session of every user in the env core (retrieval candidates, dynamics), ranking
    the unmasked candidates by ``scorer``. The same seed for every member: the same pools at reset."""
    from recgym.envs.core import RankingCore

    core = RankingCore(fw.world, env_config, device="cpu")
    with torch_threads(1):
        scores = np.asarray(scorer(users), np.float64)
        state = core.init_state(torch.as_tensor(users), seed=seed)
        active = np.ones(users.size, bool)
        total = np.zeros(users.size)
        k = env_config.slate_size
        while active.any():
            cand = state.candidates.numpy()
            s = np.where(state.mask.numpy(), np.take_along_axis(scores, cand, 1), -np.inf)
            slate = np.argsort(-s, axis=1, kind="stable")[:, :k]
            reward, term, trunc, _ = core.step(state, torch.as_tensor(slate))
            total[active] += reward.numpy()[active]
            active &= ~(term.numpy() | trunc.numpy())
    return total
