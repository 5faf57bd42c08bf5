"""The ``features:`` section of an experiment: fuse a world's item modalities into the observable item vector.

A world may carry per-item modalities beside the text (``Catalog.modalities``: the synthetic world's optional
``image`` vectors, a log's ``columns`` and ``vectors``). ``features: {fuse: all}`` (the default) fuses every one
of them with the LM text vector by the fixed rule of :mod:`recgym.encoders.fusion` - per-modality centring,
PCA cap and L2 normalisation, weighted concatenation, unit rows - and pads the profile vectors with zeros;
``fuse: text`` keeps the text vectors only (the ablation's baseline); a list names the modalities to fuse.
Only the observable vectors change: the hidden preference model is the world's, so a fused and a text-only
run simulate the same users and items. A world without modalities is returned unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from recgym.common.config import ConfigError, StrictModel

__all__ = ["FeaturesConfig", "fuse_world"]


class FeaturesConfig(StrictModel):
    """How the item modalities beside the text reach the agents (:mod:`recgym.encoders.fusion`)."""

    config_path: ClassVar[str] = "features"
    fuse: Literal["all", "text"] | list[str] = Field(
        "all", description="modalities fused with the text: all (every one the world has), text (none) or a list")
    weights: dict[str, float] = Field(
        default_factory=dict, description="modality -> weight >= 0 (text included; unset: 1 for every modality)")
    max_dim: int = Field(32, ge=1, le=4096, description="PCA dim cap of each non-text modality")

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        for name, w in v.items():
            if not (w >= 0 and w < float("inf")):
                raise ConfigError(f"features.weights.{name}: expected a finite weight >= 0, received {w}")
        return v

    @field_validator("fuse")
    @classmethod
    def _fuse(cls, v: Any) -> Any:
        if isinstance(v, list) and ("text" in v or len(set(v)) != len(v)):
            raise ConfigError(f"features.fuse: expected distinct modality names other than 'text' (the text is always "
                              f"fused), received {v}")
        return v


def fuse_world(world: Any, features: FeaturesConfig | None = None) -> Any:
    """The world with its modalities fused into ``Catalog.embeddings`` and zero-padded ``Population.embeddings``.

    The fusion is fitted on the initial items (``~is_new``); the world's ``source`` records the fused modalities,
    weights and dims. Unchanged when the world has no modality or ``fuse == "text"``.

    Raises:
        ConfigError: ``fuse`` or ``weights`` name a modality the world does not have (the message lists the ones
            it has); all weights zero.
    """
    from recgym.encoders.fusion import fuse_item_vectors, pad_profiles

    features = features or FeaturesConfig()
    have = dict(world.catalog.modalities)
    if features.fuse == "text":
        names: list[str] = []
    elif features.fuse == "all":
        names = list(have)
    else:
        names = list(features.fuse)
    unknown = [n for n in [*names, *features.weights] if n != "text" and n not in have]
    if unknown:
        raise ConfigError(f"features: expected modalities of world {world.name!r} ({', '.join(['text', *have]) }), "
                          f"received unknown {unknown}")
    if not names:
        return world
    weights = {n: float(features.weights.get(n, 1.0)) for n in ["text", *names]}
    if sum(weights.values()) <= 0:
        raise ConfigError(f"features.weights: expected a positive sum over the fused modalities, received {weights}")
    catalog, population = world.catalog, world.population
    fused = fuse_item_vectors(catalog.embeddings, {n: have[n] for n in names}, weights, max_dim=features.max_dim,
                              fit_mask=~catalog.is_new)
    source = dict(world.source or {})
    source["fusion"] = ", ".join(f"{n}:{weights[n]:g}" for n in weights) + f" (max_dim {features.max_dim}, "
    source["fusion"] += f"dim {catalog.dim} -> {fused.shape[1]})"
    return dataclasses.replace(
        world, catalog=dataclasses.replace(catalog, embeddings=fused),
        population=dataclasses.replace(population, embeddings=pad_profiles(population.embeddings, fused.shape[1])),
        source=source,
    )
