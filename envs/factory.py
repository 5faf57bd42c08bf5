"""Build worlds by name and cores from user-facing arguments (shared by every shell).

Known worlds: ``synthetic`` (the offline default), ``analytic`` (closed-form optimum), and the real-data
worlds ``movielens-100k``, ``ml-latest-small`` and ``log`` (fitted to interactions; need ``data_dir``).
Worlds are memoised per process by their arguments, so ``gym.make`` twice does not rebuild (or re-encode)
anything; a world is frozen, so sharing it is safe.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from recgym.common.config import ConfigError, suggest
from recgym.envs.config import EnvConfig
from recgym.envs.world import World

__all__ = ["KNOWN_WORLDS", "make_world", "make_env_config"]

KNOWN_WORLDS = ("synthetic", "analytic", "movielens-100k", "ml-latest-small", "log")


def make_env_config(config: EnvConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> EnvConfig:
    """Deep-merge keyword overrides (``slate_size=5``, ``dynamics={"step_cost": 0}``) into an :class:`EnvConfig`
    (or mapping); unknown keys raise with their path and a suggestion, old flat keys say where they moved."""
    if config is not None and not isinstance(config, (EnvConfig, Mapping)):
        raise ConfigError(f"config: expected an EnvConfig, a mapping or None, received {type(config).__name__}")
    base = config if isinstance(config, EnvConfig) else EnvConfig.model_validate(dict(config or {}))
    return base.merged(overrides) if overrides else base


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


def _encoder_from_spec(spec: str | None):  # noqa: ANN202 - returns a TextEncoder
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

        return make_synthetic_world(SyntheticWorldConfig(**cfg), encoder=_encoder_from_spec(encoder), progress=progress)
    from recgym.envs.worlds.fitted import make_fitted_world

    return make_fitted_world(name, data_dir=data_dir, encoder=_encoder_from_spec(encoder), **cfg)
