"""Helpers shared by the Gymnasium shells and the SB3 adapter: build a core, convert tensors to numpy."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np
import torch

from recgym.common.config import SEED_MAX, ComponentError, ConfigError, suggest
from recgym.encoders.transformer import allowed_cpus as _cpus
from recgym.encoders.transformer import busy_elsewhere
from recgym.envs.config import EnvConfig, deep_merge
from recgym.envs.core import RankingCore
from recgym.envs.factory import (
    adapt_env_config,
    apply_world_env_defaults,
    explicit_paths,
    make_env_config,
    make_world,
)
from recgym.envs.feedback import FEEDBACK_FIELD, feedback_view
from recgym.envs.state import SimState
from recgym.envs.world import World

CHOICE_MODELS = ("mnl", "cascade", "pbm")


def build_core(
    world: str | World,
    config: EnvConfig | Mapping[str, Any] | None,
    overrides: Mapping[str, Any],
    *,
    world_config: Mapping[str, Any] | None,
    data_dir: str | None,
    encoder: str | None,
    device: str | torch.device,
    components: Mapping[str, Any],
) -> RankingCore:
    """Validate the config first (fail fast), then build or fetch the world, then the core; env sizes the user did
    not set follow the world (:func:`~recgym.envs.factory.adapt_env_config`). ``components``:
    ``preference_model``, ``user_dynamics``, ``choice_model``, ``response_model``, ``reward_fn`` (``None``: default).

    ``choice_model`` takes a name (``"mnl"``, ``"cascade"``, ``"pbm"``: the config's ``choice.model``) or a
    component object.
    """
    components = dict(components)
    if isinstance(components.get("choice_model"), str):
        overrides = {**overrides, "choice": components.pop("choice_model")}
    for key, field in (("response_model", None), ("reward_fn", "reward")):
        if isinstance(components.get(key), str):
            hint = f"; for a named reward use reward={components[key]!r}" if field else ""
            raise ComponentError(f"{key}: expected a component object (or None), received the string "
                            f"{components[key]!r}{hint}")
    choice = components.get("choice_model")
    if choice is not None and not callable(getattr(choice, "click_probs", None)):
        raise ComponentError(f"choice_model: expected a name ('mnl', 'cascade', 'pbm') or a ChoiceModel with "
                        f"click_probs(logits), received {type(choice).__name__}")
    cfg = make_env_config(config, overrides)
    user_keys = explicit_paths(config) | explicit_paths(overrides)
    w = make_world(world, world_config=world_config, data_dir=data_dir, encoder=encoder)
    if w.env_defaults:  # the world's own settings under the keys the user gave (they count as given below)
        given = config.model_dump(exclude_unset=True) if isinstance(config, EnvConfig) else dict(config or {})
        cfg = apply_world_env_defaults(cfg, w, deep_merge(given, overrides))
        user_keys |= explicit_paths(w.env_defaults)
    cfg = adapt_env_config(cfg, int((~w.catalog.is_new).sum()), user_keys)
    return RankingCore(w, cfg, device=device, **components)


class CoreShell:
    """Construction and accessors shared by the shells that own a :class:`RankingCore` as ``self.core`` and
    its :class:`SimState` as ``self._state``."""

    core: RankingCore
    _state: SimState | None
    _item_features: np.ndarray

    def _build_core(self, world: str | World, config: EnvConfig | Mapping[str, Any] | None,
                    overrides: Mapping[str, Any], **kwargs: Any) -> None:
        """Set ``core``, ``config`` and the item feature table; ``kwargs``: :func:`build_core`'s."""
        self.core = build_core(world, config, overrides, **kwargs)
        self.config = self.core.config
        self._item_features = self.core.world.catalog.public_item_features()
        self._state = None

    @property
    def item_embeddings(self) -> np.ndarray:
        """``(M, d)`` float32 read-only LM item embeddings; index with ``obs["candidates"]``."""
        arr = self.core.world.catalog.embeddings.view()
        arr.flags.writeable = False
        return arr

    @property
    def item_features(self) -> np.ndarray:
        """``(M, 2)`` float32 read-only public item features (:meth:`Catalog.public_item_features`): popularity
        percentile in [0, 1] (of the prior, among initial items; what view counts would tell), and the
        new-item flag (1 = injected during a run)."""
        arr = self._item_features.view()
        arr.flags.writeable = False
        return arr

    @property
    def item_feedback(self) -> np.ndarray | None:
        """``(M, 3)`` float32 read-only copy of the platform's feedback table (impressions, clicks, mean dwell per
        click of every item, over all simulated users so far; :mod:`recgym.envs.feedback`), or ``None`` when
        ``feedback.enabled`` is off or before the first reset."""
        if self._state is None or FEEDBACK_FIELD not in self._state.names():
            return None
        arr = feedback_view(self._state.item_feedback).cpu().numpy()
        arr.flags.writeable = False
        return arr

    def simulator(self) -> tuple[RankingCore, SimState]:
        """``(core, live state)`` for planning agents that read the hidden model (the lookahead oracle): they
        must fork the state (``state.clone()`` / ``repeat``), never step it."""
        if self._state is None:
            raise RuntimeError("simulator() called before reset(); call env.reset() first")
        return self.core, self._state

    @property
    def world(self) -> World:
        return self.core.world

    @property
    def state(self) -> SimState | None:
        """The live simulation state (``None`` before the first reset). Stepping the env updates it in place;
        ``env.state.clone()`` is a complete snapshot (see :class:`~recgym.envs.state.SimState`)."""
        return self._state

    @property
    def t_global(self) -> int:
        """The env clock: env steps since the last seeding (drives item releases)."""
        return 0 if self._state is None else self._state.t

    def _oracle_batch(self) -> np.ndarray:
        """``(B, N)`` hidden click logits of the current candidates (copy)."""
        return self.core.candidate_logits(self._state).cpu().numpy().copy()

    def oracle_view(self) -> tuple[np.ndarray, np.ndarray]:
        """``(candidates (B, N) int64, logits (B, N) float32)``: the item ids of the current observation and
        their hidden click logits (copies; ``B = 1`` for the single-user env). For env-bound references (the
        myopic oracle): the ids let them check that an observation they rank comes from this env, now."""
        if getattr(self, "_state", None) is None:
            raise RuntimeError("oracle_view() called before reset(); call env.reset() first")
        return self._state.candidates.cpu().numpy().copy(), self._oracle_batch()


def to_numpy(tensors: Mapping[str, torch.Tensor], squeeze: bool = False,
             fresh: Collection[str] = ()) -> dict[str, np.ndarray]:
    """Numpy arrays that share nothing with live state: copies, except for the keys in ``fresh`` — tensors
    the caller made for this call alone (the core's ``info``, its observation's ``context`` and ``mask``),
    which are handed over without a copy. ``squeeze`` drops the batch dim."""
    out = {}
    for k, v in tensors.items():
        if v.device.type != "cpu":
            a = v.detach().cpu().numpy()  # .cpu() is the copy
        elif k in fresh:
            a = v.numpy()
        elif v.numel() < _TORCH_COPY_MIN:
            a = v.numpy().copy()  # small: numpy's copy, no torch op
        else:
            a = v.clone().numpy()  # large: torch's copy runs on every intra-op thread (numpy's on one)
        out[k] = a[0] if squeeze else a
    return out


_TORCH_COPY_MIN = 1 << 16
OBS_FRESH = frozenset({"context", "mask"})  # observe() makes these anew on every call


def check_options(
    options: Mapping[str, Any] | None, known: tuple[str, ...], *, num_users: int | None = None,
    num_envs: int | None = None,
) -> dict[str, Any]:
    """Validate ``reset(options=...)``: unknown keys (with a suggestion), and the user index options.

    ``user_index``: an int in ``[0, num_users)``; ``user_indices``: a 1-D sequence of ``num_envs`` such ints.
    Raises :class:`ConfigError` naming the option, what was expected and what was received.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"reset(options): expected a dict or None, received {type(options).__name__}")
    options = dict(options)
    for key in options:
        if key not in known:
            raise ConfigError(
                f"reset(options): unknown key {key!r}{suggest(str(key), known)}; expected one of: {', '.join(known) or 'none'}"
            )
    span = f"0 <= index < {num_users}" if num_users is not None else "index >= 0"
    if "user_index" in options:
        options["user_index"] = _user_index(options["user_index"], "reset(options['user_index'])", num_users, span)
    if "user_indices" in options:
        where = "reset(options['user_indices'])"
        raw = options["user_indices"]
        if isinstance(raw, torch.Tensor):
            raw = raw.detach().cpu().numpy()
        if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, (list, tuple, np.ndarray, range)):
            raise ConfigError(f"{where}: expected a 1-D sequence of user indices, received {type(raw).__name__}")
        if isinstance(raw, np.ndarray) and raw.ndim != 1:
            raise ConfigError(f"{where}: expected a 1-D sequence of user indices, received shape {raw.shape}")
        if num_envs is not None and len(raw) != num_envs:
            raise ConfigError(f"{where}: expected {num_envs} users (one per env), received {len(raw)}")
        users = [_user_index(u, f"{where}[{j}]", num_users, span) for j, u in enumerate(raw)]
        options["user_indices"] = np.asarray(users, dtype=np.int64).reshape(len(users))
    return options


def _user_index(value: Any, where: str, num_users: int | None, span: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"{where}: expected an integer user index, {span}, received {value!r} "
                          f"({type(value).__name__})")
    if value < 0 or (num_users is not None and value >= num_users):
        raise ConfigError(f"{where}: expected {span}, received {int(value)}")
    return int(value)


def check_seed(seed: Any) -> int | None:
    """A seed must be ``None`` or an int in ``[0, 2**63 - 1]`` (what numpy and torch generators both accept)."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed: expected None or a non-negative int, received {seed!r} ({type(seed).__name__})")
    if not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"seed: expected None or a non-negative int, received {seed} (a seed is at most 2**63 - 1)")
    return int(seed)


class step_threads:  # noqa: N801 - used like a function: ``with step_threads(1): ...``
    """Run a block with ``n`` torch intra-op threads and restore the previous count after (``None``: leave
    the count alone; a callable, e.g. :class:`AdaptiveThreads`: ask it at entry).

    Why: a small batch gains nothing from a second thread, but OpenMP's worker threads spin after every
    parallel region, and on a busy machine a spinning worker fights the main thread for a core — a 10x
    cliff for one simulated user stepped from a user's own Python. The shells therefore step small batches
    at one thread (the count is process-wide: it is changed for the step only, and only when it differs).
    """

    __slots__ = ("n", "old", "cur")

    def __init__(self, n: int | Callable[[], int] | None) -> None:
        self.n = n
        self.old = 0
        self.cur: int | None = None

    def __enter__(self) -> None:
        self.cur = n = self.n() if callable(self.n) else self.n
        if n is not None:
            self.old = torch.get_num_threads()
            if self.old != n:
                torch.set_num_threads(n)

    def __exit__(self, *exc: object) -> None:
        if self.cur is not None and self.old != self.cur:
            torch.set_num_threads(self.old)


class AdaptiveThreads:
    """Threads for a large CPU step: torch's current count, lowered while *some but not all* CPUs are busy
    elsewhere, to the CPUs left free (2 cores with one CPU-bound process beside us: 1 thread). Checked at most
    every ``recheck_s`` seconds (a check reads ``/proc``, ~0.1 ms); never more than your setting.

    Why both limits: a second thread that shares a core with one other busy process makes every parallel
    op wait at its barrier for that thread's time slice (the core at B = 8,192 ran 4.2x slower beside one
    CPU-bound process at two threads), while one thread has a core to itself. When every core is busy
    the scheduler shares CPU time per thread, so fewer threads may only get less of it; measured under load
    ~9 on 2 cores (three alternations), one thread against two gave 0.41x-1.56x (vector env) and
    0.74x-2.34x (core): no consistent gain, so the count is kept there (benchmarks/RESULTS.md, issue 17).
    ``busy`` is the smaller of the 1-minute load average and the threads runnable elsewhere now
    (:func:`recgym.encoders.transformer.busy_elsewhere`).
    """

    __slots__ = ("recheck_s", "_n", "_for", "_at")

    def __init__(self, recheck_s: float = 1.0) -> None:
        self.recheck_s = recheck_s
        self._n, self._for, self._at = 0, -1, -math.inf  # answer, torch count it was for, when

    def __call__(self) -> int:
        current, now = torch.get_num_threads(), time.monotonic()
        if current != self._for or now - self._at >= self.recheck_s:
            self._n, self._for, self._at = threads_beside(current, busy_elsewhere(), _cpus()), current, now
        return self._n


def threads_beside(current: int, busy: float | None, cpus: int) -> int:
    """:class:`AdaptiveThreads`' rule: ``current`` threads unless ``0 < round(busy) < cpus``, then the CPUs
    left free (at least 1, at most ``current``). ``busy`` None (unknown): ``current``."""
    if busy is None:
        return current
    taken = int(busy + 0.5)
    if taken <= 0 or taken >= cpus:
        return current
    return max(1, min(current, cpus - taken))


SMALL_STEP = 16_384  # B * N below which a step runs at one thread (measured: benchmarks/RESULTS.md)


def step_thread_count(batch: int, num_candidates: int, device: torch.device) -> int | AdaptiveThreads | None:
    """Threads for a step of ``batch`` users over ``num_candidates`` candidates on ``device``: 1 for small CPU
    batches (see :class:`step_threads`), :class:`AdaptiveThreads` for large ones, ``None`` off the CPU."""
    if device.type != "cpu":
        return None
    return 1 if batch * num_candidates < SMALL_STEP else AdaptiveThreads()
