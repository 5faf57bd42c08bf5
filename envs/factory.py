"""Build worlds by name and cores from user-facing arguments (shared by every shell).

Known worlds: ``synthetic`` (the offline default), ``analytic`` (closed-form optimum), and the real-data
worlds ``movielens-100k``, ``ml-latest-small`` and ``log`` (fitted to interactions; need ``data_dir``).
Worlds are memoised per process by their arguments, so ``gym.make`` twice does not rebuild (or re-encode)
anything; a world is frozen, so sharing it is safe.

Env defaults adapt to the world: the default retrieval pool (300 items) cannot be filled from a 100-item
catalogue, so :func:`world_env_defaults` sizes ``pool_size``, ``num_candidates``, ``new_item_slots`` and
``slate_size`` to the world's initial items, and :func:`adapt_env_config` applies them to every key the user
did not set (an explicit setting always wins, and is checked against the world with a clear error).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from recgym.common.config import ConfigError, suggest
from recgym.envs.config import EnvConfig
from recgym.envs.world import World

__all__ = ["KNOWN_WORLDS", "REAL_WORLDS", "make_encoder", "make_world", "make_env_config", "world_env_defaults", "adapt_env_config", "initial_item_count",
           "explicit_paths"]

REAL_WORLDS = ("movielens-100k", "ml-latest-small", "log")  # fitted to interactions (need data)
KNOWN_WORLDS = ("synthetic", "analytic", *REAL_WORLDS)  # the one list of world names (configs import it)


def make_env_config(config: EnvConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> EnvConfig:
    """Deep-merge keyword overrides (``slate_size=5``, ``dynamics={"step_cost": 0}``) into an :class:`EnvConfig`
    (or mapping); unknown keys raise with their path and a suggestion, old flat keys say where they moved."""
    if config is not None and not isinstance(config, (EnvConfig, Mapping)):
        raise ConfigError(f"config: expected an EnvConfig, a mapping or None, received {type(config).__name__}")
    base = config if isinstance(config, EnvConfig) else EnvConfig.model_validate(dict(config or {}))
    return base.merged(overrides) if overrides else base


ADAPTED_KEYS = ("candidates.pool_size", "num_candidates", "new_items.slots", "slate_size")


def _default(path: str) -> Any:
    value: Any = EnvConfig()
    for part in path.split("."):
        value = getattr(value, part)
    return value


def world_env_defaults(n_initial: int) -> dict[str, Any]:
    """Env settings (dotted paths) for a world with ``n_initial`` initial items (``{}`` when the global defaults
    fit): ``candidates.pool_size = min(300, n_initial)``, ``num_candidates = min(100, pool_size)``,
    ``new_items.slots = min(5, num_candidates // 10)``, ``slate_size = min(10, num_candidates - slots)``."""
    if n_initial >= _default("candidates.pool_size"):
        return {}
    pool = max(int(n_initial), 2)
    n = min(_default("num_candidates"), pool)
    slots = min(_default("new_items.slots"), n // 10)
    return {"candidates.pool_size": pool, "num_candidates": n, "new_items.slots": slots,
            "slate_size": max(1, min(_default("slate_size"), n - slots))}


def explicit_paths(config: EnvConfig | Mapping[str, Any] | None) -> set[str]:
    """Dotted paths of the keys given explicitly in an :class:`EnvConfig` (its ``model_fields_set``, recursively)
    or a mapping (its keys, recursively)."""
    out: set[str] = set()
    if isinstance(config, Mapping):
        for key, value in config.items():
            out.add(str(key))
            out |= {f"{key}.{sub}" for sub in explicit_paths(value if isinstance(value, Mapping) else None)}
    elif config is not None:
        for key in config.model_fields_set:
            out.add(key)
            value = getattr(config, key)
            if hasattr(value, "model_fields_set"):
                out |= {f"{key}.{sub}" for sub in explicit_paths(value)}
    return out


def adapt_env_config(config: EnvConfig, n_initial: int | None, user_keys: set[str] | None = None) -> EnvConfig:
    """``config`` with :func:`world_env_defaults` applied to the paths of :data:`ADAPTED_KEYS` not in ``user_keys``
    (dotted paths; default: :func:`explicit_paths` of ``config``, the keys given explicitly).

    Raises:
        ConfigError: an explicit ``candidates.pool_size`` larger than the world's ``n_initial`` initial items.
    """
    if n_initial is None:
        return config
    user_keys = explicit_paths(config) if user_keys is None else user_keys
    defaults = {k: v for k, v in world_env_defaults(n_initial).items() if k not in user_keys}
    pool = config.candidates.pool_size
    if pool > n_initial and "candidates.pool_size" in user_keys:
        raise ConfigError(f"env.candidates.pool_size: expected <= the {n_initial} initial items of the world, "
                          f"received {pool}; leave it unset to size it to the world")
    if not defaults:
        return config
    changes: dict[str, Any] = {}
    for path, value in defaults.items():
        head, _, leaf = path.rpartition(".")
        (changes.setdefault(head, {}) if head else changes)[leaf] = value
    return config.merged(changes)


def initial_item_count(world: str | World, *, world_config: Mapping[str, Any] | None = None,
                       data_dir: str | None = None) -> int | None:
    """Initial (non-injected) items of a world, computed cheaply: no text is encoded and nothing is fitted
    (real-data worlds: the data is loaded and split). ``None`` for the analytic world (sized by its config)."""
    if isinstance(world, World):
        return int((~world.catalog.is_new).sum())
    cfg = dict(world_config or {})
    if world == "synthetic":
        from recgym.envs.worlds.synthetic import SyntheticWorldConfig

        sc = SyntheticWorldConfig(**cfg)
        return sc.n_items - sc.n_new_items
    if world in ("movielens-100k", "ml-latest-small", "log"):
        import numpy as np

        from recgym.envs.datasets import load_dataset, split_interactions
        from recgym.envs.worlds.fitted import FitConfig

        fit = FitConfig.model_validate(cfg)
        split = split_interactions(load_dataset(world, data_dir), fit.split, np.random.default_rng(fit.seed))
        return int((~split.cold_items).sum())
    return None


def make_world(
    world: str | World = "synthetic",
    *,
    world_config: Mapping[str, Any] | None = None,
    data_dir: str | None = None,
    encoder: str | None = None,
    progress: bool = False,
) -> World:
    """Return a :class:`World` instance for a name (memoised), or ``world`` itself when it already is one.

    Args:
        world: a name in :data:`KNOWN_WORLDS` or a :class:`World`.
        world_config: the world's own settings (e.g. ``SyntheticWorldConfig`` fields).
        data_dir: folder of the real data (real-data worlds; else ``RECGYM_DATA``).
        encoder: ``None`` (default MiniLM), ``"hashing"`` or a local model directory.
        progress: show the encoder's progress bar if texts must be encoded (not part of the memo key).
    """
    if isinstance(world, World):
        return world
    if world not in KNOWN_WORLDS:
        raise ConfigError(f"world: expected one of {', '.join(KNOWN_WORLDS)}, received {world!r}{suggest(world, KNOWN_WORLDS)}")
    if world_config is not None and not isinstance(world_config, Mapping):
        raise ConfigError(f"world_config: expected a mapping or None, received {type(world_config).__name__}")
    key = (world, json.dumps(dict(world_config or {}), sort_keys=True, default=str), data_dir, encoder)
    if key not in _WORLDS:
        _WORLDS[key] = _build_world(*key, progress=progress)
        while len(_WORLDS) > _MAX_WORLDS:
            _WORLDS.popitem(last=False)
    _WORLDS.move_to_end(key)
    return _WORLDS[key]


def make_encoder(spec: str | None):  # noqa: ANN201 - returns a TextEncoder
    """The encoder named by ``spec`` (the one place names map to encoders; the CLI and the runner use it):
    ``None`` the bundled MiniLM, ``"hashing"`` the model-free :class:`~recgym.encoders.HashingEncoder`, else a
    local Hugging Face model directory."""
    from recgym.encoders import HashingEncoder, TransformerEncoder

    if spec is None:
        return TransformerEncoder()
    if spec == "hashing":
        return HashingEncoder()
    return TransformerEncoder(spec)


_MAX_WORLDS = 8
_WORLDS: OrderedDict[tuple[str, str, str | None, str | None], World] = OrderedDict()  # per-process LRU memo


def _build_world(name: str, world_config_json: str, data_dir: str | None, encoder: str | None, *,
                 progress: bool) -> World:
    cfg = json.loads(world_config_json)
    if name == "analytic":
        from recgym.envs.worlds.analytic import AnalyticWorldConfig, make_analytic_world

        return make_analytic_world(**AnalyticWorldConfig.model_validate(cfg).model_dump())
    if name == "synthetic":
        from recgym.envs.worlds.synthetic import SyntheticWorldConfig, make_synthetic_world

        return make_synthetic_world(SyntheticWorldConfig(**cfg), encoder=make_encoder(encoder), progress=progress)
    from recgym.envs.worlds.fitted import make_fitted_world

    return make_fitted_world(name, data_dir=data_dir, encoder=make_encoder(encoder), progress=progress or None, **cfg)
