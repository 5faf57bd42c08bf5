"""``recgym/Ranking-v0``: one simulated user per env, a thin Gymnasium shell over :class:`RankingCore`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from recgym.common.config import ConfigError
from recgym.envs._shell import OBS_FRESH, CoreShell, check_options, check_seed, step_threads, to_numpy
from recgym.envs.config import EnvConfig
from recgym.envs.spaces import action_space, actions_to_slate, observation_space
from recgym.envs.world import World

__all__ = ["RankingEnv"]


class RankingEnv(CoreShell, gym.Env):
    """Rank candidate items for one simulated user whose tastes are language-model vectors.

    ## Description
    Each step the user is offered ``N`` candidates (a per-user retrieval pool mixing LM-nearest, popular and
    random items, plus slots for newly injected items); the policy returns a slate of ``K`` of them; a
    choice model (multinomial logit with a no-click option, cascade or position-based) samples clicks from
    the hidden click probabilities; clicked items yield dwell (from hidden quality) and satisfaction; the
    user's interest drifts toward consumed items, fatigue builds per item and per genre, and the time budget
    drains fast on clickbait (high appeal, low quality) and slowly on good items.

    ## Action Space
    ``action_type="scores"`` (default): ``Box(-1, 1, (N,), float32)``; the top-K unmasked scores form the
    slate (any finite float is accepted). ``"slate"``: ``MultiDiscrete([N]*K)``, distinct unmasked candidate
    positions, best first. ``"item"``: ``Discrete(N)`` with ``slate_size=1``. With ``strict=True`` an invalid
    action (shape, dtype, range, duplicate, NaN/inf, masked) raises :class:`~recgym.envs.spaces.InvalidActionError`
    before any state changes.

    ## Observation Space
    ``Dict``: ``profile`` ``(d,)`` LM profile embedding; ``history`` ``(d,)`` EMA of consumed items' LM
    embeddings (zeros for a new user); ``context`` ``(4,)`` = remaining session (budget fraction under the
    default dynamics), step fraction, last slate's click rate, cold-user flag; ``candidates`` ``(N,)`` int64
    item indices into :attr:`item_embeddings`; ``mask`` ``(N,)`` int8, 0 for items shown in the last
    ``candidates.mask_window`` slates (and for a new-item slot repeating another).

    ## Rewards
    ``reward="clicks"`` (default): number of clicks; ``"engagement"``: total dwell; ``"satisfaction"``: sum
    of ``quality - quality_threshold`` over clicks; ``"mix"``: weighted sum (``reward={"name": "mix",
    "weights": {...}}``).

    ## Starting State
    A user drawn uniformly from the ``cohort`` (``train``/``test``/``all``) or ``options={"user_index": u}``;
    interest = the user's hidden latent; history summary from their prior history; budget =
    ``dynamics.initial_budget``.

    ## Episode End
    ``terminated`` when the user leaves (default dynamics: the budget reaches 0); ``truncated`` after
    ``max_steps`` slates.

    ## Arguments
    ``world`` (``"synthetic"`` default, ``"analytic"``, ``"movielens-100k"``, ``"ml-latest-small"``, ``"log"``
    or a :class:`~recgym.envs.world.World`), ``config`` (:class:`~recgym.envs.config.EnvConfig` or mapping),
    ``world_config``, ``data_dir``, ``encoder``, ``device``, the components ``preference_model``,
    ``user_dynamics``, ``choice_model`` (an object, or a name: ``"mnl"``, ``"cascade"``, ``"pbm"``),
    ``response_model``, ``reward_fn`` (:mod:`recgym.envs.core`), ``render_mode``
    (``"ansi"``), and any :class:`EnvConfig` field as a keyword, sections as mappings that merge
    (``slate_size=5, dynamics={"step_cost": 0.5}``; unknown keys raise with their path and a suggestion).

    ``env.state`` is the live :class:`~recgym.envs.state.SimState`: ``env.state.clone()`` snapshots the
    simulation (the random stream included), e.g. to explore futures with the core.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        world: str | World = "synthetic",
        config: EnvConfig | Mapping[str, Any] | None = None,
        *,
        world_config: Mapping[str, Any] | None = None,
        data_dir: str | None = None,
        encoder: str | None = None,
        device: str | torch.device = "cpu",
        preference_model: Any = None,
        user_dynamics: Any = None,
        choice_model: Any = None,
        response_model: Any = None,
        reward_fn: Any = None,
        render_mode: str | None = None,
        **config_overrides: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(f"render_mode: expected None or 'ansi', received {render_mode!r}")
        components = {"preference_model": preference_model, "user_dynamics": user_dynamics, "choice_model": choice_model,
                      "response_model": response_model, "reward_fn": reward_fn}
        self._build_core(world, config, config_overrides, world_config=world_config, data_dir=data_dir,
                         encoder=encoder, device=device, components=components)
        self.render_mode = render_mode
        cat = self.core.world.catalog
        self.observation_space = observation_space(self.config, cat.dim, cat.num_items)
        self.action_space = action_space(self.config)
        self._row = torch.zeros(1, dtype=torch.int64, device=self.core.device)
        self._done = False
        self._last: dict[str, np.ndarray] | None = None

    # --------------------------------------------------------------------- public helpers
    def oracle_scores(self) -> np.ndarray:
        """``(N,)`` hidden click logits of the current candidates. For the myopic oracle and metrics only."""
        self._require_running("oracle_scores")
        return self._oracle_batch()[0]

    # --------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        seed = check_seed(seed)
        opts = check_options(options, ("user_index",), num_users=self.core.world.population.num_users)
        super().reset(seed=seed)
        users = self.core.validate_users([opts["user_index"]]) if "user_index" in opts else None
        with step_threads(1):
            if seed is not None or self._state is None:
                # The state's random stream is seeded from Gymnasium's np_random; later resets continue it.
                stream_seed = int(self.np_random.integers(0, 2**63 - 1))
                self._state = self.core.init_state(users, batch_size=1, seed=stream_seed)
            else:
                self.core.reset_rows(self._state, self._row, users)
            state = self._state
            self._done = False
            self._last = None
            obs = to_numpy(self.core.observe(state, copy=False), squeeze=True, fresh=OBS_FRESH)
        return obs, {"user": int(state.user[0]), "user_cold": bool(state.cold[0])}

    def step(self, action: Any):
        self._require_running("step")
        with step_threads(1):
            slate = actions_to_slate(action, self._state.mask, self.config, batched=False, strict=self.config.strict)
            reward, terminated, truncated, info_t = self.core.step(self._state, slate)
            obs = to_numpy(self.core.observe(self._state, copy=False), squeeze=True, fresh=OBS_FRESH)
            info = to_numpy(info_t, squeeze=True, fresh=info_t)
        term, trunc = bool(terminated[0]), bool(truncated[0])
        self._done = term or trunc
        info["user"] = int(info["user"])
        info["user_cold"] = bool(info["user_cold"])
        self._last = info
        return obs, float(reward[0]), term, trunc, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self._last is None:
            return "(no slate shown yet)"
        titles = self.core.world.catalog.titles
        lines = [f"user {self._last['user']} slate:"]
        for pos, (item, click, p) in enumerate(
            zip(self._last["slate_items"], self._last["clicks"], self._last["click_probs"], strict=True)
        ):
            lines.append(f"  {pos + 1:2d}. {'*' if click else ' '} {titles[item]}  (p={p:.3f})")
        return "\n".join(lines)

    def _require_running(self, what: str) -> None:
        if self._state is None:
            raise RuntimeError(f"{what}() called before reset(); call env.reset() first")
        if self._done:
            raise RuntimeError(f"{what}() called after the episode ended; call env.reset() first")
