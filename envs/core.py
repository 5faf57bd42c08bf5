"""The batched simulator core: B users at once, all tensors on one device, no Python loop over users.

:class:`RankingCore` holds the frozen world tensors (:class:`WorldTensors`), the swappable components
(candidate pools, choice model, response model, reward) and one seeded ``torch.Generator``. Its
:meth:`RankingCore.step` takes a :class:`SimState` and a slate ``(B, K)`` of candidate positions and returns
the next observation, reward, ``terminated`` / ``truncated`` flags and an info dict of tensors.

Like JAX's buffer donation, ``step`` and ``reset_rows`` update the state's tensors in place (copying the
per-user tables every step would dominate the cost); call :meth:`SimState.clone` to keep a snapshot.

Slots: within one episode every item a user can see has one *slot*: its position in the user's retrieval
pool (``0 .. P-1``), or ``P + r`` for the r-th injected item (new-item columns; pools never hold items
inside their new window, so the two sets are disjoint). "Last shown" and "last consumed" are tracked per
slot, ``(B, P + n_new + 1)`` int32 (the last column is a write sink), instead of per catalogue item. The Gymnasium shells (:mod:`recgym.envs.ranking`, :mod:`recgym.envs.vector`) and the SB3 adapter
(:mod:`recgym.envs.sb3`) are thin wrappers over this class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from recgym.common.config import ConfigError
from recgym.common.device import resolve_device
from recgym.envs.candidates import RetrievalIndex, sample_pools, take_window, window_positions
from recgym.envs.choice import ChoiceModel, make_choice_model, sample_clicks
from recgym.envs.config import EnvConfig
from recgym.envs.response import QualityResponse, ResponseModel, RewardFn, make_reward
from recgym.envs.world import World

__all__ = ["RankingCore", "SimState", "WorldTensors", "CONTEXT_FEATURES", "NEVER", "public_item_features"]

CONTEXT_FEATURES = ("budget_fraction", "step_fraction", "last_click_rate", "cold_user")
NEVER = -(2**30)  # "last shown/consumed at step NEVER": long enough ago for any window or decay
_RETRIEVAL_CACHE_MAX = 64_000_000  # users x items above which per-user retrieval tables are not kept


def _take(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` via ``index_select`` (several times faster on CPU than advanced indexing)."""
    return table.index_select(0, idx.reshape(-1)).view(*idx.shape, *table.shape[1:])


@dataclass(frozen=True, eq=False)
class WorldTensors:
    """Frozen world arrays on the core's device. ``item_scalars[:, 0]`` is the state-independent part of the
    click logit: ``popularity_weight * log(M * pop) + appeal_weight * appeal + bias``; the other columns are
    hidden quality, genre, new flag and head flag, fused so a slate needs one lookup."""

    item_emb: torch.Tensor  # (M, d) float32, observable
    item_latent: torch.Tensor  # (M, k) float32, hidden
    item_genre: torch.Tensor  # (M,) int64
    item_popularity: torch.Tensor  # (M,) float32
    item_new: torch.Tensor  # (M,) bool
    item_release: torch.Tensor  # (M,) int64 env step of release (0 initial; huge = never)
    item_scalars: torch.Tensor  # (M, 5) float32 [static, quality, genre, new, head]: one gather per slate
    new_order: torch.Tensor  # (n_new,) int64 new items in release order
    new_rank: torch.Tensor  # (M,) int64 position of an item in new_order (-1 for initial items)
    user_emb: torch.Tensor  # (U, d) float32, observable
    user_latent: torch.Tensor  # (U, k) float32, hidden
    user_bias: torch.Tensor  # (U,) float32, hidden
    user_history: torch.Tensor  # (U, H) int64, -1 padded
    user_cold: torch.Tensor  # (U,) bool
    affinity_scale: float
    num_genres: int

    @classmethod
    def from_world(cls, world: World, config: EnvConfig, device: torch.device) -> WorldTensors:
        c, p, pref = world.catalog, world.population, world.preference
        m = c.num_items
        static = (
            pref.popularity_weight * np.log(np.maximum(c.popularity, 1e-12) * m)
            + pref.appeal_weight * c.appeal
            + pref.bias
        ).astype(np.float32)
        new_idx = np.flatnonzero(c.is_new)
        never = np.iinfo(np.int64).max // 4
        release = np.zeros(m, dtype=np.int64)
        if config.new_items_per_step > 0:
            # Item j is out once floor(t * rate) > j (the count RankingCore._recent_new_range uses); the
            # epsilon keeps float rounding (1 / 0.05 = 20.000000000000004) from delaying it a step.
            release[new_idx] = np.ceil((np.arange(len(new_idx)) + 1 - 1e-9) / config.new_items_per_step).astype(np.int64)
        else:
            release[new_idx] = never

        new_rank = np.full(m, -1, dtype=np.int64)
        new_rank[new_idx] = np.arange(len(new_idx))

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a), device=device)

        return cls(
            item_emb=t(c.embeddings), item_latent=t(c.latent), item_genre=t(c.genres),
            item_popularity=t(c.popularity), item_new=t(c.is_new), item_release=t(release), new_order=t(new_idx),
            new_rank=t(new_rank),
            item_scalars=t(np.stack([static, c.quality, c.genres, c.is_new, c.head_mask()], 1).astype(np.float32)),
            user_emb=t(p.embeddings), user_latent=t(p.latent), user_bias=t(p.bias), user_history=t(p.history),
            user_cold=t(p.cold), affinity_scale=float(pref.affinity_scale), num_genres=len(c.genre_names),
        )


@dataclass(eq=False)
class SimState:
    """Per-user simulation state, every field batched on dim 0 (B users)."""

    user: torch.Tensor  # (B,) int64 population index
    profile: torch.Tensor  # (B, d) float32 LM profile embedding (copied at reset: no per-step gather)
    user_bias: torch.Tensor  # (B,) float32 hidden click offset
    cold: torch.Tensor  # (B,) bool new user (no history)
    interest: torch.Tensor  # (B, k) float32 current latent interest (drifts)
    history: torch.Tensor  # (B, d) float32 summary of consumed items' LM embeddings
    budget: torch.Tensor  # (B,) float32 remaining time budget
    step: torch.Tensor  # (B,) int64 slates shown in this episode
    last_click_rate: torch.Tensor  # (B,) float32 clicks / K of the previous slate
    genre_fatigue: torch.Tensor  # (B, G) float32
    pool: torch.Tensor  # (B, P) int64 retrieval pool
    candidates: torch.Tensor  # (B, N) int64 item indices
    mask: torch.Tensor  # (B, N) bool, True = may be recommended
    slot_shown: torch.Tensor  # (B, S) int32 episode step a slot was last shown (NEVER if not); see module doc
    slot_consumed: torch.Tensor  # (B, S) int32 episode step a slot's item was last clicked (NEVER if not)

    def clone(self) -> SimState:
        return SimState(**{f.name: getattr(self, f.name).clone() for f in fields(self)})

    def to(self, device: str | torch.device) -> SimState:
        """A copy of the state on ``device`` (e.g. to continue a CPU state on a CUDA core of the same world)."""
        return SimState(**{f.name: getattr(self, f.name).to(device, copy=True) for f in fields(self)})

    @property
    def batch_size(self) -> int:
        return int(self.user.shape[0])


def public_item_features(world: World) -> np.ndarray:
    """``(M, 2)`` float32: popularity percentile of the prior among initial items (new items 0), new flag."""
    c = world.catalog
    pct = np.zeros(c.num_items, dtype=np.float32)
    initial = np.flatnonzero(~c.is_new)
    order = initial[np.argsort(c.popularity[initial], kind="stable")]
    pct[order] = (np.arange(len(order)) + 1) / len(order)
    return np.stack([pct, c.is_new.astype(np.float32)], axis=1)


class RankingCore:
    """Batched recommendation simulator over a :class:`~recgym.envs.world.World`.

    Args:
        world: the world (catalogue, population, hidden preferences).
        config: :class:`~recgym.envs.config.EnvConfig`.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        choice_model / response_model / reward_fn: swappable components; default from ``config``.
        seed: seed of the core's only random source, a ``torch.Generator``.
    """

    def __init__(
        self,
        world: World,
        config: EnvConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        choice_model: ChoiceModel | None = None,
        response_model: ResponseModel | None = None,
        reward_fn: RewardFn | None = None,
        seed: int | None = None,
    ) -> None:
        self.world = world
        self.config = config = config or EnvConfig()
        self.device = resolve_device(device)
        n_initial = int((~world.catalog.is_new).sum())
        if config.pool_size > n_initial:
            raise ConfigError(
                f"env.pool_size: expected <= the {n_initial} initial items of world {world.name!r}, "
                f"received {config.pool_size}"
            )
        self.w = WorldTensors.from_world(world, config, self.device)
        self.choice = choice_model or make_choice_model(
            config.choice_model, no_click_logit=config.no_click_logit, pbm_eta=config.pbm_eta
        )
        self.response = response_model or QualityResponse(config.dwell_scale, config.dwell_noise, config.quality_threshold)
        self.reward_fn = reward_fn or make_reward(config.reward, config.reward_weights)
        test = world.population.test
        cohorts = {"train": np.flatnonzero(~test), "test": np.flatnonzero(test), "all": np.arange(len(test))}
        self.cohort_users = torch.as_tensor(cohorts[config.cohort], device=self.device)
        if len(self.cohort_users) == 0:
            raise ConfigError(f"env.cohort: expected a cohort with users, received {config.cohort!r}: world "
                              f"{world.name!r} has none")
        self.budget_cap = 2.0 * config.initial_budget
        self.public_item_features = public_item_features(world)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(np.random.SeedSequence(seed).generate_state(1)[0]) if seed is None else seed)
        self.t_global = 0  # env steps since the last seeding; drives item injection
        # Set by each candidate refresh (all rows refresh at the same env step, so they share them):
        self._window_pos = torch.arange(config.num_candidates, device=self.device)
        self._pool_cols = config.num_candidates  # candidate columns that come from the pool
        self._sink = config.pool_size + len(self.w.new_order)  # slot column that absorbs masked-out writes
        # A fresh episode's retrieval query depends only on the user's profile and prior history. Retrieval
        # columns: initial items, then injected ones in release order, so the poolable set is a prefix.
        hist = self.w.user_history
        valid = (hist >= 0).unsqueeze(-1)
        self._history0 = (_take(self.w.item_emb, hist.clamp_min(0)) * valid).sum(1) / valid.sum(1).clamp_min(1)
        mix = config.candidate_mix
        self._n_initial = n_initial
        self.retrieval = RetrievalIndex(
            torch.nn.functional.normalize(self.w.user_emb + self._history0, dim=1), self.w.item_emb,
            self.w.item_popularity, torch.cat([(~self.w.item_new).nonzero().squeeze(1), self.w.new_order]),
            mix=(mix.nearest, mix.popular, mix.random), temperature=config.similarity_temperature,
            max_cache=_RETRIEVAL_CACHE_MAX,
        )
        # At most mask_window * K candidates were shown lately, plus s - 1 duplicate new-item slots: when that
        # always leaves K choices, the per-step "too few left" check is skipped.
        s = config.new_item_slots
        self._mask_can_run_short = (
            config.num_candidates - config.mask_window * config.slate_size - max(s - 1, 0) < config.slate_size
        )

    # ----------------------------------------------------------------- randomness
    def seed(self, seed: int | None) -> None:
        """Re-seed the generator (``None``: fresh OS entropy) and restart the injection clock."""
        s = int(np.random.SeedSequence().generate_state(1)[0]) if seed is None else int(seed)
        self.generator.manual_seed(s)
        self.t_global = 0

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device)

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    # ----------------------------------------------------------------- state
    def released(self) -> torch.Tensor:
        """``(M,)`` bool: items in the catalogue at the current env step."""
        return self.w.item_release <= self.t_global

    def poolable(self) -> torch.Tensor:
        """``(M,)`` bool: items a retrieval pool may hold now: initial items, and injected items past their
        ``new_item_window`` (until then they reach users through the new-item slots only). Pool items and
        new-slot items are therefore disjoint, so candidates need no cross-block duplicate check."""
        return ~self.w.item_new | (self.w.item_release <= self.t_global - self.config.new_item_window)

    def _released_new_count(self, t: int) -> int:
        """How many injected items are out by env step ``t`` (item j is out once floor(t * rate) > j)."""
        n, rate = len(self.w.new_order), self.config.new_items_per_step
        if rate <= 0:
            return 0
        return max(0, min(n, int(math.floor(t * rate + 1e-9))))

    def _poolable_new_count(self) -> int:
        """How many injected items are past their window (the poolable set only grows with this count)."""
        return self._released_new_count(self.t_global - self.config.new_item_window)

    def _user_retrieval_probs(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Retrieval mixture for fresh episodes of ``users`` ``(R,)``: ``(R, M')`` probabilities over the
        ``(M',)`` int64 currently poolable items (sampling skips the others' columns altogether)."""
        m = self._n_initial + self._poolable_new_count()
        return self.retrieval.probs(users, m), self.retrieval.order[:m]

    def sample_users(self, n: int) -> torch.Tensor:
        """``(n,)`` int64 users drawn uniformly (with replacement) from the configured cohort."""
        idx = torch.randint(0, len(self.cohort_users), (n,), generator=self.generator, device=self.device)
        return self.cohort_users[idx]

    def init_state(self, users: torch.Tensor) -> SimState:
        """A fresh state for ``users`` ``(B,)`` int64 (population indices)."""
        b, cfg, w, dev = len(users), self.config, self.w, self.device
        k, d = w.item_latent.shape[1], w.item_emb.shape[1]
        state = SimState(
            user=torch.zeros(b, dtype=torch.int64, device=dev),
            profile=torch.zeros(b, d, device=dev),
            user_bias=torch.zeros(b, device=dev),
            cold=torch.zeros(b, dtype=torch.bool, device=dev),
            interest=torch.zeros(b, k, device=dev),
            history=torch.zeros(b, d, device=dev),
            budget=torch.zeros(b, device=dev),
            step=torch.zeros(b, dtype=torch.int64, device=dev),
            last_click_rate=torch.zeros(b, device=dev),
            genre_fatigue=torch.zeros(b, w.num_genres, device=dev),
            pool=torch.zeros(b, cfg.pool_size, dtype=torch.int64, device=dev),
            candidates=torch.zeros(b, cfg.num_candidates, dtype=torch.int64, device=dev),
            mask=torch.ones(b, cfg.num_candidates, dtype=torch.bool, device=dev),
            slot_shown=torch.full((b, self._sink + 1), NEVER, dtype=torch.int32, device=dev),
            slot_consumed=torch.full((b, self._sink + 1), NEVER, dtype=torch.int32, device=dev),
        )
        self.reset_rows(state, torch.arange(b, device=dev), users)
        return state

    def validate_users(self, users: torch.Tensor | np.ndarray | list[int]) -> torch.Tensor:
        """Check population indices; return them as an int64 tensor on the device."""
        arr = np.asarray(users)
        n_users = self.w.user_emb.shape[0]
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"user indices: expected a 1-D integer array, received {arr.dtype} shape {arr.shape}")
        bad = np.flatnonzero((arr < 0) | (arr >= n_users))
        if bad.size:
            raise ValueError(f"user indices[{bad[0]}]: expected 0 <= index < {n_users}, received {arr[bad[0]]}")
        return torch.as_tensor(arr, dtype=torch.int64, device=self.device)

    def reset_rows(self, state: SimState, rows: torch.Tensor, users: torch.Tensor) -> None:
        """Start new episodes in ``rows`` ``(R,)`` for ``users`` ``(R,)`` (in place); refresh their candidates."""
        if len(rows) == 0:
            return
        w, cfg = self.w, self.config
        state.user[rows] = users
        state.profile[rows] = w.user_emb.index_select(0, users)
        state.user_bias[rows] = w.user_bias.index_select(0, users)
        state.cold[rows] = w.user_cold.index_select(0, users)
        state.interest[rows] = w.user_latent.index_select(0, users)
        state.history[rows] = self._history0.index_select(0, users)
        state.budget[rows] = cfg.initial_budget
        state.step[rows] = 0
        state.last_click_rate[rows] = 0.0
        state.genre_fatigue[rows] = 0.0
        state.slot_shown[rows] = NEVER
        state.slot_consumed[rows] = NEVER
        probs, poolable_items = self._user_retrieval_probs(users)
        state.pool[rows] = poolable_items[sample_pools(probs, cfg.pool_size, self.generator)]
        self._refresh_candidates(state, rows)

    def _refresh_candidates(self, state: SimState, rows: torch.Tensor | None = None) -> None:
        cfg, w = self.config, self.w
        pool = state.pool if rows is None else state.pool[rows]
        pos = window_positions(cfg.pool_size, cfg.num_candidates, self.t_global, self.device)
        cand = take_window(pool, pos)
        n_new = self._recent_new_range()
        s = cfg.new_item_slots if n_new is not None else 0
        self._window_pos, self._pool_cols = pos, cfg.num_candidates - s
        mask = torch.ones_like(cand, dtype=torch.bool)
        if s > 0 and n_new is not None:
            lo, hi = n_new
            j = lo + (self._rand(cand.shape[0], s) * (hi - lo)).long().clamp_(max=hi - lo - 1)
            new_items = w.new_order[j]
            cand[:, -s:] = new_items
            # Pools never hold items inside their new window (see poolable), so the only possible
            # duplicates are two slots drawing the same new item: mask the later copy.
            same = new_items.unsqueeze(2) == new_items.unsqueeze(1)
            mask[:, -s:] = ~torch.tril(same, diagonal=-1).any(2)
        if cfg.mask_window > 0:
            shown = state.slot_shown if rows is None else state.slot_shown[rows]
            last = take_window(shown[:, : cfg.pool_size], pos)
            if s > 0:  # new-item columns: slot P + rank
                last[:, -s:] = shown.gather(1, j + cfg.pool_size)
            step = state.step if rows is None else state.step[rows]
            # shown at step s is masked while now - s <= window, i.e. allowed when s < now - window
            recent = last >= (step - cfg.mask_window).to(torch.int32).unsqueeze(1)
            if self._mask_can_run_short:
                # Never leave fewer than K choices: if nearly every candidate was shown lately, they come back.
                recent &= ((mask & ~recent).sum(1) >= cfg.slate_size).unsqueeze(1)
            mask &= ~recent
        if rows is None:
            state.candidates, state.mask = cand, mask
        else:
            state.candidates[rows], state.mask[rows] = cand, mask

    def _recent_new_range(self) -> tuple[int, int] | None:
        """[lo, hi) positions in ``new_order`` of items released within the last ``new_item_window`` steps."""
        hi = self._released_new_count(self.t_global)
        lo = self._poolable_new_count()
        return (lo, hi) if hi > lo else None

    # ----------------------------------------------------------------- hidden model
    def slot_keys(self, slate: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``(B, X)`` int64 slot (see the module doc) of the candidates at positions ``slate`` ``(B, X)``,
        whose items are ``items`` ``(B, X)``; valid until the next candidate refresh."""
        pos = self._window_pos[slate]
        if self._pool_cols == self.config.num_candidates:
            return pos
        return torch.where(slate < self._pool_cols, pos, self.config.pool_size + _take(self.w.new_rank, items))

    def slate_logits(
        self, state: SimState, slate: torch.Tensor, *, items: torch.Tensor | None = None,
        scalars: torch.Tensor | None = None, keys: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden click logits ``(B, K)`` of the candidates at positions ``slate`` ``(B, K)`` for each user now,
        and their latents ``(B, K, k)``. ``items`` / ``scalars`` / ``keys``: the slate's items, their
        ``item_scalars`` rows and :meth:`slot_keys`, when the caller already has them."""
        w, cfg = self.w, self.config
        if items is None:
            items = state.candidates.gather(1, slate)
        if scalars is None:
            scalars = _take(w.item_scalars, items)
        lat = _take(w.item_latent, items)  # (B, K, k)
        logits = w.affinity_scale * torch.bmm(lat, state.interest.unsqueeze(2)).squeeze(2)
        logits = logits + scalars[..., 0] + state.user_bias.unsqueeze(1)
        if cfg.genre_fatigue_weight > 0:
            genre = scalars[..., 2].long()
            logits = logits - cfg.genre_fatigue_weight * state.genre_fatigue.gather(1, genre)
        if cfg.item_fatigue_weight > 0:
            if keys is None:
                keys = self.slot_keys(slate, items)
            # item_fatigue_weight * item_fatigue_decay ** (slates since the item was last consumed)
            age = (state.step.unsqueeze(1) - state.slot_consumed.gather(1, keys)).to(torch.float32)
            logits = logits - cfg.item_fatigue_weight * torch.pow(cfg.item_fatigue_decay, age)
        return logits, lat

    def candidate_logits(self, state: SimState) -> torch.Tensor:
        """Hidden click logits ``(B, N)`` of every current candidate (for the myopic oracle and NDCG)."""
        n = self.config.num_candidates
        all_positions = torch.arange(n, device=self.device).expand(state.batch_size, n)
        return self.slate_logits(state, all_positions, items=state.candidates)[0]

    # ----------------------------------------------------------------- step
    def observe(self, state: SimState, copy: bool = True) -> dict[str, torch.Tensor]:
        """Observation tensors: profile ``(B,d)``, history ``(B,d)``, context ``(B,4)``, candidates ``(B,N)``
        int64, mask ``(B,N)`` int8. With ``copy=False`` ``history`` and ``candidates`` alias the state (valid
        until the next step; the shells copy them into numpy anyway)."""
        cfg = self.config
        context = torch.stack(
            [
                (state.budget / self.budget_cap).clamp(0.0, 1.0),
                state.step.to(torch.float32) / cfg.max_steps,
                state.last_click_rate,
                state.cold.to(torch.float32),
            ],
            dim=1,
        )
        return {
            "profile": state.profile.clone() if copy else state.profile,
            "history": state.history.clone() if copy else state.history,
            "context": context,
            "candidates": state.candidates.clone() if copy else state.candidates,
            "mask": state.mask.to(torch.int8),
        }

    def step(self, state: SimState, slate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Show ``slate`` ``(B, K)`` int64 candidate positions to every user; update ``state`` in place.

        Returns ``(reward (B,) float32, terminated (B,) bool, truncated (B,) bool, info)``; ``info`` holds
        fresh tensors: ``slate_items``, ``click_probs``, ``clicks``, ``engagement`` (B,K), ``satisfaction``
        (B,), ``user``, ``user_cold`` (B,), ``item_new``, ``item_head`` (B,K), and ``candidate_click_probs``
        (B,N) when ``config.info_candidate_relevance``. The slate is not validated here (the shells do it).
        """
        w, cfg = self.w, self.config
        b = state.batch_size
        if cfg.info_candidate_relevance:
            cand_probs = torch.sigmoid(self.candidate_logits(state))
        items = state.candidates.gather(1, slate)
        scalars = _take(w.item_scalars, items)  # (B, K, 5)
        keys = self.slot_keys(slate, items)
        logits, lat = self.slate_logits(state, slate, items=items, scalars=scalars, keys=keys)
        probs = self.choice.click_probs(logits)
        clicks = sample_clicks(probs, self._rand(b, cfg.slate_size), self.choice.multi_click)
        noise = self._randn(b, cfg.slate_size)
        resp = self.response(clicks, scalars[..., 1], noise)
        reward = self.reward_fn(resp)
        self._advance(state, keys, items, scalars[..., 2].long(), lat, clicks, resp.satisfaction)
        terminated = state.budget <= 0
        truncated = (state.step >= cfg.max_steps) & ~terminated
        info = {
            "slate_items": items,
            "click_probs": probs,
            "clicks": clicks,
            "engagement": resp.engagement,
            "satisfaction": resp.satisfaction,
            "user": state.user.clone(),
            "user_cold": state.cold.clone(),
            "item_new": scalars[..., 3] > 0.5,
            "item_head": scalars[..., 4] > 0.5,
        }
        if cfg.info_candidate_relevance:
            info["candidate_click_probs"] = cand_probs
        self.t_global += 1
        self._refresh_candidates(state)
        return reward, terminated, truncated, info

    def _advance(
        self, state: SimState, keys: torch.Tensor, items: torch.Tensor, genres: torch.Tensor, lat: torch.Tensor,
        clicks: torch.Tensor, satisfaction: torch.Tensor,
    ) -> None:
        """User dynamics after a slate (``keys``: its :meth:`slot_keys`): budget, fatigue, interest drift,
        history summary, shown/consumed steps."""
        w, cfg = self.w, self.config
        b, k = items.shape
        cf = clicks.to(torch.float32)
        n_clicks = cf.sum(1)
        now = state.step.to(torch.int32).unsqueeze(1).expand(b, k)
        state.slot_shown.scatter_(1, keys, now)
        state.slot_consumed.scatter_(1, torch.where(clicks, keys, self._sink), now)
        state.budget.add_(cfg.budget_gain * satisfaction - cfg.step_cost).clamp_(max=self.budget_cap)
        state.genre_fatigue.mul_(cfg.fatigue_decay).scatter_add_(
            1, genres, cf + cfg.exposure_fatigue * (1.0 - cf)
        )
        state.step.add_(1)
        state.last_click_rate = n_clicks / k
        flat = clicks.view(-1).nonzero().squeeze(1)  # (P,) clicked slots, flat index row * K + position
        if len(flat) == 0:
            return
        row = torch.div(flat, k, rounding_mode="floor")
        # Per-click weight 1 / (clicks of its user): sums over a user's clicks become means.
        share = n_clicks.reciprocal().index_select(0, row).unsqueeze(1)
        # Interest drifts toward the mean latent of consumed items, keeping its norm. (B, k) is small, so
        # this part runs dense; rows without clicks keep their interest.
        z = state.interest
        mean_lat = torch.zeros_like(z).index_add_(0, row, lat.reshape(b * k, -1).index_select(0, flat) * share)
        moved = z + cfg.interest_drift * (mean_lat - z)
        moved.mul_(z.norm(dim=1, keepdim=True) / moved.norm(dim=1, keepdim=True).clamp_min(1e-8))
        z.copy_(torch.where((n_clicks > 0).unsqueeze(1), moved, z))
        # History summary: EMA of consumed LM embeddings, h += a * (mean(e) - h) = sum a * (e - h) / n,
        # accumulated in place over the clicked slots only ((B, d) is too big to rewrite every step).
        emb = w.item_emb.index_select(0, items.reshape(-1).index_select(0, flat))
        emb.sub_(state.history.index_select(0, row)).mul_(share * cfg.history_ema)
        state.history.index_add_(0, row, emb)

    # ----------------------------------------------------------------- persistence
    def __getstate__(self) -> dict:
        d = self.__dict__.copy()
        d["generator"] = self.generator.get_state()
        d["_device_str"] = str(self.device)
        return d

    def __setstate__(self, d: dict) -> None:
        gen_state = d.pop("generator")
        d.pop("_device_str", None)
        self.__dict__.update(d)
        self.generator = torch.Generator(device=self.device)
        self.generator.set_state(gen_state)
