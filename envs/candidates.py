"""Candidate generation: a per-user retrieval pool, and N distinct candidates per step.

Pool: ``pool_size`` distinct items sampled without replacement (exponential race, equivalent to Gumbel
top-k) from the mixture ``nearest * softmax(cos(query, e_i) / T) + popular * pop_i + random / M`` over the
poolable items, where ``query`` is the user's normalised profile + prior-history vector. This is the
retrieval stage of a two-stage recommender: the policy ranks N << M candidates. A pool lives
``pool_lifetime`` env steps, like a retrieval index refreshed periodically: the pool of user ``u`` in
lifetime ``floor(t / pool_lifetime)`` is drawn on a stream named by ``(retrieval key, u, lifetime)`` over the
items poolable when the lifetime began, so all of ``u``'s episodes starting in it share the item set, and
the draw is the same whichever row (or fork) asks first. Every episode puts its pool in its own random
order (a random affine permutation of positions, from the row's stream). ``pool_lifetime = 0``: a fresh pool
every episode, from the row's stream. :class:`RetrievalIndex` keeps the per-user similarity logits and
the mixture rows of the current poolable set.

Per step every user gets the window of N pool positions starting at ``(t * N) mod P`` (``t`` = the env
clock; one shared window, so it costs a slice): the N candidates are distinct, each pool item comes back
every ``P / N`` steps, and the shuffle makes the window's content random per user. Then the last
``new_items.slots`` columns show items injected within the last ``new_items.window`` steps (each slot
uniform over them, distinct while there are enough: the recent items in release order from a random
offset; see :meth:`CandidateGenerator.refresh`), when there are any.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict

import torch

from recgym.common.config import ConfigError
from recgym.envs import rng
from recgym.envs.config import EnvConfig
from recgym.envs.params import SlateView, WorldTensors, take_rows
from recgym.envs.state import NEVER, SimState

__all__ = ["CandidateGenerator", "RetrievalIndex", "retrieval_probs", "sample_pools",
           "RETRIEVAL_CACHE_MAX"]

RETRIEVAL_CACHE_MAX = 64_000_000  # users x items above which per-user retrieval tables are not kept
_MEMO_MAX = 8_000_000  # users x pool size above which lifetime pools are recomputed rather than memoised
_MEMO_ENTRIES = 4  # (retrieval key, lifetime) tables kept


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


def sample_pools(probs: torch.Tensor, pool_size: int, uniforms: torch.Tensor) -> torch.Tensor:
    """Sample ``(R, P)`` distinct columns per row from ``probs`` ``(R, M)`` (zero-probability ones never), in
    no particular order, with ``uniforms`` ``(R, M)`` float32 in (0, 1) (consumed: overwritten).

    Raises:
        ValueError: fewer than ``pool_size`` items have positive probability.
    """
    n_support = int((probs[0] > 0).sum()) if len(probs) else pool_size
    if n_support < pool_size:
        raise ValueError(f"pool_size: expected <= the {n_support} poolable items, received {pool_size}")
    # Exponential race: the top-P of p_i / E_i (E_i = -log u_i ~ Exp(1)) is a sample without replacement
    # from p, the same as Gumbel top-k on log p but with one log instead of three. Zero-probability items
    # get key 0 and, with at least P positive keys (checked above), are never among the top P.
    keys = torch.div(probs, uniforms.log_(), out=uniforms).neg_()
    # Keys are >= +0.0, whose int32 bit patterns sort like the floats: topk on those is ~1.5x faster on CPU.
    return torch.topk(keys.view(torch.int32), pool_size, dim=1, sorted=False).indices


@functools.lru_cache(maxsize=8)
def _coprimes(n: int) -> tuple[int, ...]:
    """Strides ``a`` in ``[1, n]`` with ``gcd(a, n) == 1`` (the affine maps ``j -> a * j + b mod n`` that permute)."""
    return tuple(a for a in range(1, n + 1) if math.gcd(a, n) == 1)



class CandidateGenerator:
    """The candidate stage of the simulated platform: retrieval pools, the step window, new-item slots and
    the mask of recently shown candidates (see the module docstring).

    State fields (:meth:`fields`): ``pool`` ``(B, P)`` int64, ``candidates`` ``(B, N)`` int64, ``mask``
    ``(B, N)`` bool, ``slot_shown`` ``(B, S)`` int32 (env clock ``t`` when a slot was last shown; ``NEVER`` if
    not in this episode). Stamping the env clock (not the episode step) makes every window test a comparison
    with one scalar, which vectorises.

    Slots: within one episode every item a user can see has one *slot*: its position in the user's pool
    (``0 .. P-1``), or ``P + r`` for the r-th injected item (pools never hold items inside their new
    window, so the two sets are disjoint); the last column ``S - 1`` absorbs masked-out writes. Per-slot
    tables (``slot_shown``, the dynamics' ``slot_consumed``) replace ``(B, M)`` per-item tables.

    Args:
        params: world tensors; config: the env config; cohort_users: ``(C,)`` int64 users sampled at reset.
    """

    def __init__(self, params: WorldTensors, config: EnvConfig, cohort_users: torch.Tensor) -> None:
        self.params, self.config = params, config
        cc, nc = config.candidates, config.new_items
        self.pool_size, self.num = cc.pool_size, config.num_candidates
        self.cohort_users = cohort_users
        self.n_initial = int((~params.item_new).sum())
        if self.pool_size > self.n_initial:
            raise ConfigError(f"env.candidates.pool_size: expected <= the {self.n_initial} initial items of the world, "
                             f"received {self.pool_size}")
        self.num_slots = self.pool_size + len(params.new_order) + 1
        self.sink = self.num_slots - 1
        # Retrieval columns: initial items, then injected ones in release order, so the poolable set is a prefix.
        mix = cc.mix
        query = torch.nn.functional.normalize(params.user_emb + params.history0, dim=1)
        order = torch.cat([(~params.item_new).nonzero().squeeze(1), params.new_order])
        self.retrieval = RetrievalIndex(query, params.item_emb, params.item_popularity, order,
                                        mix=(mix.nearest, mix.popular, mix.random),
                                        temperature=cc.similarity_temperature, max_cache=RETRIEVAL_CACHE_MAX)
        dev = params.device
        self.coprimes = torch.tensor(_coprimes(self.pool_size), device=dev)
        self.affine_j = torch.arange(self.pool_size, device=dev)
        self.slots = nc.slots if nc.per_step > 0 and len(params.new_order) else 0
        # At most mask_window * K candidates were shown lately, plus s - 1 duplicate new-item slots: when that
        # always leaves K choices, the per-step "too few left" check is skipped.
        self.mask_can_run_short = (
            self.num - cc.mask_window * config.slate_size - max(self.slots - 1, 0) < config.slate_size
        )
        self._all_positions = torch.arange(self.num, device=dev)
        self._slot_index = torch.arange(max(self.slots, 1), device=dev)
        self.lifetime = cc.pool_lifetime
        # Memo of the lifetime pools (a cache of a pure function, not simulation state: see _lifetime_pools).
        self._memo: OrderedDict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    # ----------------------------------------------------------------- clock
    def released_new_count(self, t: int) -> int:
        """How many injected items are out by env step ``t`` (item j is out once floor(t * rate) > j)."""
        n, rate = len(self.params.new_order), self.config.new_items.per_step
        if rate <= 0:
            return 0
        return max(0, min(n, int(math.floor(t * rate + 1e-9))))

    def poolable_count(self, t: int) -> int:
        """How many retrieval columns (initial items, then injected ones past their new window) are poolable."""
        return self.n_initial + self.released_new_count(t - self.config.new_items.window)

    def new_range(self, t: int) -> tuple[int, int] | None:
        """[lo, hi) positions in ``new_order`` of items released within the last ``new_items.window`` steps."""
        if not self.slots:
            return None
        hi = self.released_new_count(t)
        lo = self.released_new_count(t - self.config.new_items.window)
        return (lo, hi) if hi > lo else None

    def window_start(self, t: int) -> int:
        """Pool position of the first candidate column at env step ``t``: ``(t * N) mod P``."""
        return (t * self.num) % self.pool_size

    def pool_columns(self, t: int) -> int:
        """Candidate columns that come from the pool at env step ``t`` (the rest are new-item slots)."""
        return self.num - (self.slots if self.new_range(t) is not None else 0)

    # ----------------------------------------------------------------- state
    def fields(self, batch: int) -> dict[str, torch.Tensor]:
        dev = self.params.device
        n = self.num
        return {
            "pool": torch.zeros(batch, self.pool_size, dtype=torch.int32, device=dev),
            "candidates": torch.zeros(batch, n, dtype=torch.int64, device=dev),
            "mask": torch.ones(batch, n, dtype=torch.bool, device=dev),
            "slot_shown": torch.full((batch, self.num_slots), NEVER, dtype=torch.int32, device=dev),
            # Per row, not env-wide: states of envs seeded apart can be concatenated (seed-batched training).
            "retrieval_key": torch.zeros(batch, dtype=torch.int64, device=dev),
        }

    def retrieval_key(self, seed: int) -> torch.Tensor:
        """``(1,)`` int64 seed of the users' pools (pool_lifetime > 0) of an env seeded with ``seed``; every row
        of a fresh state gets it (field ``retrieval_key`` ``(B,)``)."""
        return rng.seed_streams(seed, 1, self.params.device, offset=-1)

    def draws_at_reset(self, t: int) -> int:
        """Random words a new episode's candidates consume at env step ``t``: pool order (2), new-item slots (1),
        and the pool race (one per poolable item) when pools live one episode."""
        return 3 + (self.poolable_count(t) if self.lifetime == 0 else 0)

    def reset(self, state: SimState, rows: torch.Tensor, users: torch.Tensor, words: torch.Tensor) -> None:
        """New episodes of ``users`` ``(R,)`` in ``rows`` ``(R,)``: their pools in a fresh order, nothing shown
        yet, this step's candidates, in place. ``words``: ``(R, draws_at_reset(t))`` int32 random words."""
        u = rng.uniform(words[:, :3])
        if self.lifetime == 0:
            m = self.poolable_count(state.t)
            pool = self._race(users, m, rng.uniform(words[:, 3:]))
        else:
            keys = state.retrieval_key.index_select(0, rows)
            lo, hi = torch.stack(torch.aminmax(keys)).tolist() if len(keys) else (0, 0)  # one host sync
            if lo == hi:  # the usual case: one env seed
                pool = self._lifetime_pools(lo, state.t, users)
            else:  # rows of envs seeded apart (seed-batched training): each key's pools as in its own env
                pool = torch.empty(len(rows), self.pool_size, dtype=torch.int64, device=users.device)
                for key in keys.unique().tolist():
                    sel = (keys == key).nonzero().squeeze(1)
                    pool.index_copy_(0, sel, self._lifetime_pools(int(key), state.t, users.index_select(0, sel)))
        # A random order: position j -> (a * j + b) mod P with a coprime to P (an affine permutation per row).
        a = self.coprimes[(u[:, 0] * len(self.coprimes)).long().clamp_(max=len(self.coprimes) - 1)]
        b = (u[:, 1] * self.pool_size).long()
        order = torch.addcmul(b.unsqueeze(1), a.unsqueeze(1), self.affine_j).remainder_(self.pool_size)
        state.pool.index_copy_(0, rows, pool.gather(1, order).to(torch.int32))
        state.slot_shown.index_fill_(0, rows, NEVER)
        self.refresh(state, u[:, 2:], rows)

    def _race(self, users: torch.Tensor, m: int, uniforms: torch.Tensor) -> torch.Tensor:
        """``(R, P)`` int64 item ids: pools of ``users`` over the first ``m`` retrieval columns."""
        cols = sample_pools(self.retrieval.probs(users, m), self.pool_size, uniforms)
        return self.retrieval.order.index_select(0, cols.view(-1)).view(len(users), -1)

    def _lifetime_pools(self, key: int, t: int, users: torch.Tensor) -> torch.Tensor:
        """Pools of ``users`` in the lifetime of env step ``t``: a pure function of ``(key, user, lifetime
        index)``, drawn on the user's own stream over the items poolable when the lifetime began, so it
        does not matter which row (or which fork) asks first. Memoised per lifetime (at most
        ``_MEMO_ENTRIES`` user x pool tables of up to ``_MEMO_MAX`` entries; larger populations recompute)."""
        epoch = t // self.lifetime
        m = self.poolable_count(epoch * self.lifetime)

        def race(us: torch.Tensor) -> torch.Tensor:
            words = rng.hash_words(rng.keyed_bases(key, us, epoch), m)
            return self._race(us, m, rng.uniform(words))

        n_users = self.params.num_users
        if n_users * self.pool_size > _MEMO_MAX:
            return race(users)
        memo = self._memo.get((key, epoch))
        if memo is None:
            dev = users.device
            memo = (torch.zeros(n_users, self.pool_size, dtype=torch.int64, device=dev),
                    torch.zeros(n_users, dtype=torch.bool, device=dev))
            self._memo[(key, epoch)] = memo
            while len(self._memo) > _MEMO_ENTRIES:
                self._memo.popitem(last=False)
        table, have = memo
        missing = users[~have.index_select(0, users)]
        if len(missing):
            missing = torch.unique(missing)
            table.index_copy_(0, missing, race(missing))
            have.index_fill_(0, missing, True)
        return table.index_select(0, users)

    def refresh(self, state: SimState, uniforms: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        """This env step's candidates and mask for ``rows`` (all when None), written in place. ``uniforms``:
        ``(R, >= 1)`` float32 in (0, 1) for the new-item slots.

        New-item slots: the ``s`` slots show ``lo + (b + i) mod n`` for ``i < s`` — the ``n`` items released
        within the window, in release order from a random offset ``b`` per user and step: each slot is
        uniform over them and the slots are distinct while ``s <= n``; slots ``i >= n`` repeat slot ``i - n``
        and are masked (the later copy of a repeated item)."""
        cfg, t = self.config, state.t
        start = self.window_start(t)
        rng_new = self.new_range(t)
        s = self.slots if rng_new is not None else 0
        n_pool = self.num - s
        if rows is None:  # the whole batch: write into the state's tensors
            cand, mask, pool, shown = state.candidates, state.mask, state.pool, state.slot_shown
        else:
            cand = torch.empty(len(rows), self.num, dtype=state.candidates.dtype, device=state.device)
            mask = torch.empty(len(rows), self.num, dtype=torch.bool, device=state.device)
            pool, shown = state.pool.index_select(0, rows), state.slot_shown.index_select(0, rows)
        window = cfg.candidates.mask_window
        thresh = t - window  # shown at env time x is allowed again when x < now - window
        for col, lo, hi in _window_slices(start, n_pool, self.pool_size):
            cand[:, col : col + hi - lo].copy_(pool[:, lo:hi])
            if window > 0:
                torch.lt(shown[:, lo:hi], thresh, out=mask[:, col : col + hi - lo])
        if window == 0:
            mask[:, :n_pool].fill_(True)
        if s:
            lo, hi = rng_new
            n = hi - lo
            offset = uniforms[:, :1].mul(n).long()  # uniforms < 1: offset < n
            j = torch.add(offset, self._slot_index[:s]).remainder_(n).add_(lo)
            cand[:, n_pool:] = self.params.new_order[j]
            if window > 0:  # new-item columns: slot P + rank
                torch.lt(shown.gather(1, j + self.pool_size), thresh, out=mask[:, n_pool:])
            else:
                mask[:, n_pool:].fill_(True)
            if n < s:  # more slots than recent items: the repeats are masked
                mask[:, n_pool + n :].fill_(False)
        if self.mask_can_run_short and window > 0:
            # Never leave fewer than K choices: if nearly every candidate was shown lately, they come back.
            short = (mask.sum(1) < cfg.slate_size).nonzero().squeeze(1)
            if len(short):
                mask.index_fill_(0, short, True)
                if s and n < s:
                    mask[short, n_pool + n :] = False
        if rows is not None:
            state.candidates.index_copy_(0, rows, cand)
            state.mask.index_copy_(0, rows, mask)

    def view(self, state: SimState, positions: torch.Tensor | None = None,
             items: torch.Tensor | None = None) -> SlateView:
        """The :class:`SlateView` of candidate ``positions`` ``(B, X)`` int64 (every candidate when None)."""
        p, t = self.params, state.t
        if positions is None:
            positions = self._all_positions.expand(state.batch_size, self.num)
            items = state.candidates
        elif items is None:
            items = state.candidates.gather(1, positions)
        keys = torch.add(positions, self.window_start(t)).remainder_(self.pool_size)
        n_pool = self.pool_columns(t)
        if n_pool < self.num:
            keys = torch.where(positions < n_pool, keys, take_rows(p.new_rank, items).add_(self.pool_size))
        return SlateView(p, positions, items, keys)

    def record_shown(self, state: SimState, view: SlateView) -> None:
        """Stamp the slate's slots with the env clock (for the mask)."""
        if self.config.candidates.mask_window > 0:
            state.slot_shown.scatter_(1, view.keys, state.t)


def _window_slices(start: int, num: int, width: int) -> list[tuple[int, int, int]]:
    """The window of ``num`` columns ``(start + j) mod width`` as ``(first output column, lo, hi)`` slices."""
    if start + num <= width:
        return [(0, start, start + num)]
    return [(0, start, width), (width - start, 0, start + num - width)]
