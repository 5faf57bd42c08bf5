"""The batched simulator core: a step function over a complete state, B users at once, no Python loop.

:class:`RankingCore` holds frozen parameters only — the world's tensors (:class:`WorldTensors`), the
config and the components of the user model — and no mutable state: everything that changes is in the
:class:`~recgym.envs.state.SimState` it is given (per-user tables, the env clock, the random streams). So
``core.step(state, slate)`` is a pure function of ``(state, slate)`` up to the in-place update of ``state``
(the documented fast path; :meth:`SimState.clone` keeps a snapshot), states fork cheaply
(:meth:`SimState.repeat`) and serialise as plain tensors (:meth:`SimState.state_dict`).

Components (RecSim's decomposition, each swappable by constructor argument):

=================  ==========================================  =============================================
part               default                                     protocol / module
=================  ==========================================  =============================================
candidates         retrieval pools, step window, new items     :mod:`recgym.envs.candidates` (built in)
preference         :class:`LatentPreference` (bilinear logit)  :class:`~recgym.envs.preference.PreferenceModel`
user dynamics      :class:`SessionDynamics` (budget, fatigue)  :class:`~recgym.envs.dynamics.UserDynamics`
choice             multinomial logit / cascade / PBM           :class:`~recgym.envs.choice.ChoiceModel`
response, reward   quality-driven dwell, weighted reward       :mod:`recgym.envs.response`
=================  ==========================================  =============================================

One step: the slate's items and their parameters (:class:`~recgym.envs.params.SlateView`) -> hidden
logits (preference + the dynamics' offset) -> click probabilities (choice) -> clicks, dwell, satisfaction
(response) -> reward -> user dynamics, the platform's records (shown slots, history summary, last click
rate) -> leaving / time limit -> clock + 1 -> next candidates. Every random number comes from the rows'
own streams (:mod:`recgym.envs.rng`): one event per row and step, one per episode start.
"""

from __future__ import annotations

import numpy as np
import torch

from recgym.common.config import ConfigError
from recgym.common.device import resolve_device
from recgym.envs import rng
from recgym.envs.candidates import CandidateGenerator
from recgym.envs.choice import ChoiceModel, make_choice_model, sample_clicks
from recgym.envs.config import EnvConfig
from recgym.envs.dynamics import SessionDynamics, UserDynamics
from recgym.envs.feedback import (
    FEEDBACK_FIELD,
    candidate_feedback,
    feedback_fields,
    record_feedback,
    warm_table,
)
from recgym.envs.params import SlateView, WorldTensors, weighted_row_sum
from recgym.envs.preference import LatentPreference, PreferenceModel
from recgym.envs.response import (
    QualityResponse,
    ResponseModel,
    Responses,
    RewardFn,
    WeightedReward,
    make_reward,
)
from recgym.envs.sessions import MultiSessionDynamics
from recgym.envs.state import SimState
from recgym.envs.world import World

__all__ = ["RankingCore", "SimState", "WorldTensors", "CONTEXT_FEATURES"]

CONTEXT_FEATURES = ("remaining", "step_fraction", "last_click_rate", "cold_user")
_DENSE_HISTORY_MAX = 1 << 16  # B * K * d up to which the history update runs dense (no host sync)


def _check_component(obj: object, protocol: type, arg: str) -> None:
    if not isinstance(obj, protocol):
        missing = [m for m in dir(protocol) if not m.startswith("_") and not hasattr(obj, m)]
        raise TypeError(f"{arg}: expected an object implementing {protocol.__name__}, received "
                        f"{type(obj).__name__} (missing: {', '.join(missing)})")


class RankingCore:
    """Batched recommendation simulator over a :class:`~recgym.envs.world.World` (see the module docstring).

    Args:
        world: the world (catalogue, population, hidden preference parameters).
        config: :class:`~recgym.envs.config.EnvConfig` (default: ``recgym/Ranking-v0``'s).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``.
        preference_model / user_dynamics / choice_model / response_model / reward_fn: components (see the
            module docstring); ``None``: the default, set up from ``config``.
    """

    def __init__(
        self,
        world: World,
        config: EnvConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        preference_model: PreferenceModel | None = None,
        user_dynamics: UserDynamics | None = None,
        choice_model: ChoiceModel | None = None,
        response_model: ResponseModel | None = None,
        reward_fn: RewardFn | None = None,
    ) -> None:
        self.world = world
        self.config = cfg = config or EnvConfig()
        self.device = resolve_device(device)
        self.params = p = WorldTensors.from_world(world, cfg, self.device)
        test = world.population.test
        cohorts = {"train": np.flatnonzero(~test), "test": np.flatnonzero(test), "all": np.arange(len(test))}
        self.cohort_users = torch.as_tensor(cohorts[cfg.cohort], device=self.device)
        if len(self.cohort_users) == 0:
            raise ConfigError(f"env.cohort: expected a cohort with users, received {cfg.cohort!r}: world "
                              f"{world.name!r} has none")
        self.candidates = CandidateGenerator(p, cfg, self.cohort_users)
        self.preference = LatentPreference() if preference_model is None else preference_model
        self.dynamics = SessionDynamics(cfg.dynamics) if user_dynamics is None else user_dynamics
        if cfg.sessions.count > 1:  # returning users: the (given or default) dynamics runs each session
            self.dynamics = MultiSessionDynamics(self.dynamics, cfg.sessions, cfg.dynamics.initial_budget)
        self.choice = choice_model or make_choice_model(
            cfg.choice.model, no_click_logit=cfg.choice.no_click_logit, pbm_eta=cfg.choice.pbm_eta)
        r = cfg.response
        self.response = response_model or QualityResponse(r.dwell_scale, r.dwell_noise, r.quality_threshold)
        self.reward_fn = reward_fn or make_reward(cfg.reward.name, cfg.reward.weights)
        # The slate's tail mask is built per step only for rewards that may read it (a custom reward, or
        # WeightedReward with a tail weight): the default rewards skip the op on the hot path.
        self._reward_reads_tail = not isinstance(self.reward_fn, WeightedReward) or any(self.reward_fn.w[3:])
        _check_component(self.preference, PreferenceModel, "preference_model")
        _check_component(self.dynamics, UserDynamics, "user_dynamics")
        probe = self._fields(1)
        for comp, arg in ((self.dynamics, "user_dynamics"), (self.preference, "preference_model")):
            missing = [f for f in getattr(comp, "requires", ()) if f not in probe]
            if missing:
                raise ValueError(f"{arg}: {type(comp).__name__} needs state fields {missing} that no component "
                                 f"provides (fields: {', '.join(sorted(probe))})")
        # Per step and row: click uniforms and dwell normals (K each for multi-click models, else one: at most
        # one item is clicked), then the new-item slots.
        self._per_click = cfg.slate_size if self.choice.multi_click else 1
        self.draws_per_step = 2 * self._per_click + 1
        self.context_features = CONTEXT_FEATURES + tuple(getattr(self.dynamics, "context_features", ()))
        self._retention = float(cfg.reward.weights.retention)
        self._expected_retention = cfg.sessions.retention_reward == "expected"

    # ----------------------------------------------------------------- state
    def _fields(self, b: int) -> dict[str, torch.Tensor]:
        p, dev = self.params, self.device
        d = p.item_emb.shape[1]
        own = {
            "user": torch.zeros(b, dtype=torch.int64, device=dev),
            "rng": torch.zeros(b, dtype=torch.int64, device=dev),
            "step": torch.zeros(b, dtype=torch.int32, device=dev),
            "profile": torch.zeros(b, d, device=dev),
            "history": torch.zeros(b, d, device=dev),
            "cold": torch.zeros(b, dtype=torch.bool, device=dev),
            "last_click_rate": torch.zeros(b, device=dev),
        }
        parts = [("candidates", self.candidates.fields(b)), ("preference_model", self.preference.fields(p, b)),
                 ("user_dynamics", self.dynamics.fields(p, b, self.candidates.num_slots))]
        for name, fields in parts:
            clash = set(fields) & set(own)
            if clash:
                raise ValueError(f"{name}: state fields {sorted(clash)} are already declared by another part")
            own.update(fields)
        return own

    def init_state(self, users: torch.Tensor | None = None, *, batch_size: int | None = None,
                   seed: int | None = None, warmup: bool = True) -> SimState:
        """A fresh state (clock 0) of ``batch_size`` rows — or one row per user of ``users`` ``(B,)`` int64 —
        with random streams from ``seed`` (``None``: fresh OS entropy); every row starts an episode (users
        drawn from the cohort when ``users`` is None). Row ``i``'s stream depends on ``(seed, i)`` only.
        With ``feedback.enabled`` the shared feedback table starts from the warm-up history of ``seed``
        (:mod:`recgym.envs.feedback`; ``warmup=False``: empty)."""
        if users is not None:
            users = torch.as_tensor(users, dtype=torch.int64, device=self.device)
            batch_size = len(users)
        if batch_size is None or batch_size < 1:
            raise ValueError(f"init_state: expected users or a positive batch_size, received {batch_size!r}")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(2, np.uint64)[0])
        fb = self.config.feedback
        shared = feedback_fields(self.params.num_items, self.device) if fb.enabled else None
        state = SimState(self._fields(batch_size), shared, t=0)
        state.retrieval_key.copy_(self.candidates.retrieval_key(seed).expand(batch_size))
        if fb.enabled and warmup and fb.warmup_users > 0 and fb.warmup_steps > 0:
            state.item_feedback.copy_(warm_table(self, (seed * 2 + 1) % 2**63, fb.warmup_users, fb.warmup_steps))
        state.rng.copy_(rng.seed_streams(seed, batch_size, self.device))
        self.reset_rows(state, torch.arange(batch_size, device=self.device), users)
        return state

    def validate_users(self, users: torch.Tensor | np.ndarray | list[int]) -> torch.Tensor:
        """Check population indices; return them as an int64 tensor on the device."""
        arr = np.asarray(users)
        n_users = self.params.num_users
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"user indices: expected a 1-D integer array, received {arr.dtype} shape {arr.shape}")
        bad = np.flatnonzero((arr < 0) | (arr >= n_users))
        if bad.size:
            raise ValueError(f"user indices[{bad[0]}]: expected 0 <= index < {n_users}, received {arr[bad[0]]}")
        return torch.as_tensor(arr, dtype=torch.int64, device=self.device)

    def reset_rows(self, state: SimState, rows: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        """Start new episodes in ``rows`` ``(R,)`` int64, in place: for ``users`` ``(R,)`` int64, or users drawn
        from the cohort by each row's stream. Returns the users ``(R,)``."""
        if len(rows) == 0:
            return torch.zeros(0, dtype=torch.int64, device=self.device)
        p = self.params
        words = rng.advance(state.rng.index_select(0, rows))
        state.rng.index_copy_(0, rows, words)
        draws = rng.hash_words(rng.event_bases(words), 1 + self.candidates.draws_at_reset(state.t))
        if users is None:
            n = len(self.cohort_users)
            pick = (rng.uniform(draws[:, :1]).squeeze(1) * n).long().clamp_(max=n - 1)
            users = self.cohort_users.index_select(0, pick)
        state.user.index_copy_(0, rows, users)
        state.profile.index_copy_(0, rows, p.user_emb.index_select(0, users))
        state.history.index_copy_(0, rows, p.history0.index_select(0, users))
        state.cold.index_copy_(0, rows, p.user_cold.index_select(0, users))
        state.step.index_fill_(0, rows, 0)
        state.last_click_rate.index_fill_(0, rows, 0.0)
        self.preference.reset(p, state, rows, users)
        self.dynamics.reset(p, state, rows, users)
        self.candidates.reset(state, rows, users, draws[:, 1:])
        return users

    # ----------------------------------------------------------------- hidden model
    def slate_view(self, state: SimState, slate: torch.Tensor | None = None) -> SlateView:
        """:class:`SlateView` of candidate positions ``slate`` ``(B, X)`` int64 (every candidate when None)."""
        return self.candidates.view(state, slate)

    def hidden_logits(self, state: SimState, view: SlateView) -> torch.Tensor:
        """``(B, X)`` hidden click logits of ``view``'s items now: preference + the dynamics' offset."""
        logits = self.preference.logits(self.params, state, view)
        offset = self.dynamics.logit_offset(self.params, state, view)
        return logits if offset is None else logits.add_(offset)

    def candidate_logits(self, state: SimState) -> torch.Tensor:
        """Hidden click logits ``(B, N)`` of every current candidate (for the myopic oracle and NDCG)."""
        return self.hidden_logits(state, self.candidates.view(state))

    def released(self, t: int) -> torch.Tensor:
        """``(M,)`` bool: items in the catalogue at env step ``t``."""
        return self.params.item_release <= t

    def poolable(self, t: int) -> torch.Tensor:
        """``(M,)`` bool: items a retrieval pool may hold at env step ``t``: initial items, and injected items
        past their ``new_items.window`` (until then they reach users through the new-item slots only)."""
        p = self.params
        return ~p.item_new | (p.item_release <= t - self.config.new_items.window)

    # ----------------------------------------------------------------- step
    def observe(self, state: SimState, copy: bool = True) -> dict[str, torch.Tensor]:
        """Observation tensors: profile ``(B,d)``, history ``(B,d)``, context ``(B,C)`` (:attr:`context_features`:
        :data:`CONTEXT_FEATURES`, then the dynamics' own, e.g. the session features of returning users),
        candidates ``(B,N)`` int64, mask ``(B,N)`` int8, and with ``feedback.enabled`` ``item_feedback``
        ``(B,3N)`` float32 (``(B,N,3)`` flattened) (:mod:`recgym.envs.feedback`). With ``copy=False`` ``profile``, ``history`` and
        ``candidates`` alias the state (valid until the next step; the shells copy them into numpy anyway)."""
        parts = [self.dynamics.remaining(self.params, state), state.step.to(torch.float32) / self.config.max_steps,
                 state.last_click_rate, state.cold.to(torch.float32)]
        context = torch.stack(parts, dim=1)
        if len(self.context_features) > len(CONTEXT_FEATURES):
            context = torch.cat([context, self.dynamics.context(self.params, state)], dim=1)
        obs = {
            "profile": state.profile.clone() if copy else state.profile,
            "history": state.history.clone() if copy else state.history,
            "context": context,
            "candidates": state.candidates.clone() if copy else state.candidates,
            "mask": state.mask.to(torch.int8),
        }
        if FEEDBACK_FIELD in state.names():
            obs["item_feedback"] = candidate_feedback(state).flatten(1)
        return obs

    def step(self, state: SimState, slate: torch.Tensor,
             active: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Show ``slate`` ``(B, K)`` int64 candidate positions to every user; update ``state`` in place.
        ``active`` ``(B,)`` bool: rows whose step counts for the shared feedback table (None: all; a vector
        env passes its placeholder rows as inactive).

        Returns ``(reward (B,) float32, terminated (B,) bool, truncated (B,) bool, info)``; ``info`` holds
        fresh tensors: ``slate_items``, ``click_probs``, ``clicks``, ``engagement`` (B,K), ``satisfaction``
        (B,), ``user``, ``user_cold`` (B,), ``item_new``, ``item_head`` (B,K), and ``candidate_click_probs``
        (B,N) when ``config.info_candidate_relevance``; with returning users also the session signals of
        :class:`~recgym.envs.sessions.MultiSessionDynamics` (``session_end``, ``returned``, ``return_gap``,
        ``return_prob``, ``session_index``). The slate is not validated here (the shells do it).
        """
        cfg, p = self.config, self.params
        if cfg.info_candidate_relevance:
            cand_probs = torch.sigmoid(self.candidate_logits(state))
        view = self.candidates.view(state, slate)
        probs = self.choice.click_probs(self.hidden_logits(state, view))
        u = rng.uniform(rng.hash_words(rng.event_bases(rng.advance(state.rng)), self.draws_per_step))
        nc, k = self._per_click, cfg.slate_size
        clicks = sample_clicks(probs, u[:, :nc], self.choice.multi_click)
        resp = self.response(clicks, view.quality, rng.normal_from_uniform(u[:, nc : 2 * nc]))
        if self._reward_reads_tail:
            resp = resp.with_slate_tail(~view.is_head)  # the tail_share metric's mask (reward terms tail_*)
        reward = self.reward_fn(resp)
        signals = self.dynamics.update(p, state, view, resp)
        if signals and self._retention:
            ret = signals["return_prob"] if self._expected_retention else signals["returned"].to(reward.dtype)
            reward = reward + self._retention * ret
        if FEEDBACK_FIELD in state.names():
            record_feedback(state, view.items, clicks, resp.engagement, active)
        self.candidates.record_shown(state, view)
        self._update_history(state, view, resp)
        state.last_click_rate = torch.div(resp.n_clicks, k)
        state.step.add_(1)
        terminated = self.dynamics.leaving(p, state)
        truncated = state.step >= cfg.max_steps
        if hasattr(self.dynamics, "time_limit"):
            truncated = truncated | self.dynamics.time_limit(p, state)
        truncated &= ~terminated
        info = {
            "slate_items": view.items,
            "click_probs": probs,
            "clicks": clicks,
            "engagement": resp.engagement,
            "satisfaction": resp.satisfaction,
            "user": state.user.clone(),
            "user_cold": state.cold.clone(),
            "item_new": view.is_new,
            "item_head": view.is_head,
        }
        if cfg.info_candidate_relevance:
            info["candidate_click_probs"] = cand_probs
        if signals:
            info.update(signals)
        state.t += 1
        self.candidates.refresh(state, u[:, 2 * nc :])
        return reward, terminated, truncated, info

    def _update_history(self, state: SimState, view: SlateView, resp: Responses) -> None:
        """History summary (what the platform knows of past consumption): an EMA of consumed items' LM
        embeddings, ``h += a * (mean(e) - h)`` for rows with clicks."""
        a = self.config.observation.history_ema
        h, emb, clicks = state.history, self.params.item_emb, resp.clicks
        b, k = clicks.shape
        if b * k * h.shape[1] <= _DENSE_HISTORY_MAX:  # small batches: dense, no host sync
            mean = weighted_row_sum(emb, view.items, resp.click_shares)
            h.lerp_(mean, resp.any_click * a)  # rows without clicks: weight 0, h unchanged
            return
        # Large batches: in place over the clicked slots only ((B, d) is too big to rewrite every step).
        flat = clicks.view(-1).nonzero().squeeze(1)  # (C,) flat index row * K + position
        if len(flat) == 0:
            return
        row = torch.div(flat, k, rounding_mode="floor")
        e = emb.index_select(0, view.items.reshape(-1).index_select(0, flat))
        old = h.index_select(0, row)
        if not self.choice.multi_click:  # one click per row at most: h + a * (e - h), rows written once
            h.index_copy_(0, row, old.lerp_(e, a))
            return
        share = resp.n_clicks.reciprocal().index_select(0, row).mul_(a).unsqueeze(1)
        h.index_add_(0, row, e.sub_(old).mul_(share))
