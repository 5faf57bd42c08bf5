"""Candidate generation: a per-user retrieval pool built at reset, and N distinct candidates per step.

Pool (at reset, for the users being reset): ``pool_size`` distinct items sampled without replacement
(exponential race, equivalent to Gumbel top-k) from the mixture ``nearest * softmax(cos(query, e_i) / T) +
popular * pop_i + random / M`` over the poolable items, where ``query`` is the user's normalised profile +
prior-history vector. This is the retrieval stage of a two-stage recommender: the policy ranks N << M
candidates. The pool is then put in a random order (a random affine permutation of positions per user).
:class:`RetrievalIndex` keeps the per-user similarity logits and the mixture rows of the current poolable set.

Per step every user gets the window of N pool positions starting at ``(t * N) mod P`` (``t`` = the env
step; one shared window, so it costs a slice): the N candidates are distinct, each pool item comes back
every ``P / N`` steps, and the shuffle makes the window's content random per user. Then the last
``new_item_slots`` columns are overwritten by items injected within the last ``new_item_window`` steps
(uniformly), when there are any.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["RetrievalIndex", "retrieval_probs", "sample_pools", "window_positions", "take_window"]


def retrieval_probs(
    near_logits: torch.Tensor, popularity: torch.Tensor, *, mix: tuple[float, float, float]
) -> torch.Tensor:
    """Mixture probabilities ``(R, M)`` float32 over the ``M`` items given, from ``near_logits`` ``(R, M)``
    (``cos(query, e_i) / T``) and ``popularity`` ``(M,)`` of the same items."""
    near = torch.softmax(near_logits, dim=1)
    pop = popularity / popularity.sum().clamp_min(1e-12)
    w_near, w_pop, w_rand = mix
    return (w_near * near + (w_pop * pop + w_rand / near_logits.shape[1])) / (w_near + w_pop + w_rand)


class RetrievalIndex:
    """Retrieval distributions of fresh episodes: ``probs(users, m)`` over the first ``m`` items of ``order``.

    ``order`` ``(M,)`` int64 lists the catalogue so that every poolable set the caller asks for is a prefix
    (the core puts initial items first, then injected items in release order: the poolable set only grows),
    so a new poolable set costs a slice, never a gather of embeddings. The similarity logits
    ``cos(query_u, e_i) / T`` ``(U, M)`` are computed once when ``U * M <= max_cache`` (per call otherwise),
    and the mixture rows of the current prefix are cached on a rent-or-buy rule: rows are computed on
    demand until that has cost as much as the whole ``(U, m)`` table, which is then built once.

    Args:
        query: ``(U, d)`` float32 normalised retrieval queries of every user.
        item_emb: ``(M, d)`` float32 item embeddings; ``popularity``: ``(M,)`` float32 prior.
        order: ``(M,)`` int64 item index of each retrieval column.
    """

    def __init__(
        self, query: torch.Tensor, item_emb: torch.Tensor, popularity: torch.Tensor, order: torch.Tensor, *,
        mix: tuple[float, float, float], temperature: float, max_cache: int,
    ) -> None:
        self.order = order
        self.mix = mix
        self.query = query
        self.emb_t = (item_emb.index_select(0, order) / temperature).T.contiguous()  # (d, M)
        self.popularity = popularity.index_select(0, order)
        self.max_cache = max_cache
        n_users, m = query.shape[0], len(order)
        self.logits = query @ self.emb_t if n_users * m <= max_cache else None  # (U, M)
        self._cache: tuple[int, torch.Tensor] | None = None  # (m, (U, m) mixture table)
        self._rented: tuple[int, int] = (-1, 0)  # (m, rows computed on demand for that m)

    def _rows(self, users: torch.Tensor | None, m: int) -> torch.Tensor:
        if self.logits is not None:
            logits = self.logits if users is None else self.logits.index_select(0, users)
            logits = logits[:, :m]
        else:
            q = self.query if users is None else self.query.index_select(0, users)
            logits = q @ self.emb_t[:, :m]
        return retrieval_probs(logits, self.popularity[:m], mix=self.mix)

    def probs(self, users: torch.Tensor, m: int) -> torch.Tensor:
        """``(R, m)`` float32 mixture over the items ``order[:m]`` for ``users`` ``(R,)`` int64."""
        if self._cache is not None and self._cache[0] == m:
            return self._cache[1].index_select(0, users)
        n_users = self.query.shape[0]
        rented = (self._rented[1] if self._rented[0] == m else 0) + len(users)
        self._rented = (m, rented)
        if rented < n_users or n_users * m > self.max_cache:
            return self._rows(users, m)
        self._cache = (m, self._rows(None, m))
        return self._cache[1].index_select(0, users)


def sample_pools(probs: torch.Tensor, pool_size: int, generator: torch.Generator) -> torch.Tensor:
    """Sample ``(R, P)`` distinct items per row from ``probs`` ``(R, M)`` (zero-probability items never),
    in a random order.

    Raises:
        ValueError: fewer than ``pool_size`` items have positive probability.
    """
    n_support = int((probs[0] > 0).sum()) if len(probs) else pool_size
    if n_support < pool_size:
        raise ValueError(f"pool_size: expected <= the {n_support} poolable items, received {pool_size}")
    # Exponential race: the top-P of p_i / E_i (E_i ~ Exp(1)) is a sample without replacement from p,
    # the same as Gumbel top-k on log p but with one log instead of three.
    # u = 0 gives E = inf and key 0, as likely as E > -log(2^-24) is; zero-probability items get key 0 and,
    # with at least P positive keys (checked above), are never among the top P.
    keys = torch.rand(probs.shape, generator=generator, device=probs.device).log_()
    keys = torch.div(probs, keys, out=keys).neg_()
    # Keys are >= +0.0, whose int32 bit patterns sort like the floats: topk on those is ~1.5x faster on CPU.
    pool = torch.topk(keys.view(torch.int32), pool_size, dim=1, sorted=False).indices
    # Random order: position j -> (a * j + b) mod P with a coprime to P (an affine permutation per row).
    r = pool.shape[0]
    coprime = torch.tensor(_coprimes(pool_size), device=pool.device)
    a = coprime[torch.randint(0, len(coprime), (r, 1), generator=generator, device=pool.device)]
    b = torch.randint(0, pool_size, (r, 1), generator=generator, device=pool.device)
    order = (a * torch.arange(pool_size, device=pool.device) + b) % pool_size
    return pool.gather(1, order)


@functools.lru_cache(maxsize=8)
def _coprimes(n: int) -> tuple[int, ...]:
    """Strides ``a`` in ``[1, n]`` with ``gcd(a, n) == 1`` (the affine maps ``j -> a * j + b mod n`` that permute)."""
    return tuple(a for a in range(1, n + 1) if math.gcd(a, n) == 1)


def window_positions(pool_size: int, num: int, step: int, device: torch.device) -> torch.Tensor:
    """``(num,)`` int64 pool positions ``(step * num + j) mod P`` of this step's window."""
    start = (step * num) % pool_size
    return (start + torch.arange(num, device=device)) % pool_size


def take_window(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``x[:, pos]`` for a window ``pos`` of consecutive positions (mod P): a slice, or two when it wraps."""
    start, num, p = int(pos[0]), len(pos), x.shape[1]
    if start + num <= p:  # contiguous slices copy far faster than a strided index_select
        return x[:, start : start + num].clone()
    return torch.cat([x[:, start:], x[:, : start + num - p]], dim=1)
