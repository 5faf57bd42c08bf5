"""Helpers shared by the Gymnasium shells and the SB3 adapter: build a core, convert tensors to numpy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from recgym.common.config import ConfigError, suggest
from recgym.envs.config import EnvConfig
from recgym.envs.core import RankingCore
from recgym.envs.factory import make_env_config, make_world
from recgym.envs.world import World


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
    """Validate the config first (fail fast), then build or fetch the world, then the core.

    ``choice_model`` is both an :class:`EnvConfig` field (a name: ``"mnl"``, ``"cascade"``, ``"pbm"``) and a
    component argument: a string is the config name, anything else a component object.
    """
    components = dict(components)
    if isinstance(components.get("choice_model"), str):
        overrides = {**overrides, "choice_model": components.pop("choice_model")}
    for key, field in (("response_model", None), ("reward_fn", "reward")):
        if isinstance(components.get(key), str):
            hint = f"; for a named reward use reward={components[key]!r}" if field else ""
            raise TypeError(f"{key}: expected a component object (or None), received the string "
                            f"{components[key]!r}{hint}")
    choice = components.get("choice_model")
    if choice is not None and not callable(getattr(choice, "click_probs", None)):
        raise TypeError(f"choice_model: expected a name ('mnl', 'cascade', 'pbm') or a ChoiceModel with "
                        f"click_probs(logits), received {type(choice).__name__}")
    cfg = make_env_config(config, overrides)
    w = make_world(world, world_config=world_config, data_dir=data_dir, encoder=encoder)
    return RankingCore(w, cfg, device=device, **components)


class CoreShell:
    """Accessors shared by the shells that own a :class:`RankingCore` as ``self.core``."""

    core: RankingCore

    @property
    def item_embeddings(self) -> np.ndarray:
        """``(M, d)`` float32 read-only LM item embeddings; index with ``obs["candidates"]``."""
        arr = self.core.world.catalog.embeddings.view()
        arr.flags.writeable = False
        return arr

    @property
    def item_features(self) -> np.ndarray:
        """``(M, 2)`` float32 read-only public item features: popularity percentile in [0, 1] (of the prior,
        among initial items; what view counts would tell), and the new-item flag (1 = injected during a run)."""
        arr = self.core.public_item_features.view()
        arr.flags.writeable = False
        return arr

    @property
    def world(self) -> World:
        return self.core.world

    def _oracle_batch(self) -> np.ndarray:
        """``(B, N)`` hidden click logits of the current candidates (copy)."""
        return self.core.candidate_logits(self._state).cpu().numpy().copy()


def to_numpy(tensors: Mapping[str, torch.Tensor], squeeze: bool = False) -> dict[str, np.ndarray]:
    """Fresh numpy copies (never views of live tensors); drop the batch dim when ``squeeze``."""
    out = {}
    for k, v in tensors.items():
        v = v.detach()
        # torch's copy runs on all intra-op threads (numpy's on one); off-CPU, .cpu() is the copy already.
        a = (v.clone() if v.device.type == "cpu" else v.cpu()).numpy()
        out[k] = a[0] if squeeze else a
    return out


def check_options(options: Mapping[str, Any] | None, known: tuple[str, ...]) -> dict[str, Any]:
    """Reject unknown ``reset(options=...)`` keys with a suggestion."""
    options = dict(options or {})
    for key in options:
        if key not in known:
            raise ConfigError(
                f"reset(options): unknown key {key!r}{suggest(str(key), known)}; expected one of: {', '.join(known) or 'none'}"
            )
    return options


def check_seed(seed: Any) -> int | None:
    """A seed must be ``None`` or a non-negative int."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected None or a non-negative int, received {seed!r}")
    return int(seed)
