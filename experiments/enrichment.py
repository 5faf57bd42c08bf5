"""The ``text:`` section of an experiment: LM enrichment of a world's item and user texts before encoding.

``text: {enrich: items | users | both}`` runs a local causal LM (:mod:`recgym.encoders.enrich`) over the
world's item texts (keywords) and/or user profiles plus their prior history titles (interest summaries),
appends the generations to the texts and re-encodes them with the run's encoder. Only the *observable*
vectors change (``Catalog.texts/embeddings``, ``Population.texts/embeddings``); the hidden preference
model stays as the world made it, so a run with and without enrichment simulates the same users and items
and differs only in what the platform sees.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from pydantic import Field

from recgym.common.config import StrictModel

__all__ = ["TextConfig", "build_world", "enrich_world", "user_prompt_texts"]


class TextConfig(StrictModel):
    """LM enrichment of the texts before they are encoded (needs the optional enrichment install)."""

    config_path: ClassVar[str] = "text"
    enrich: Literal["none", "items", "users", "both"] = Field("none", description="which texts to enrich")
    model: str | None = Field(None, description="a local causal-LM directory or .gguf file (null: SmolLM2-135M)")
    max_new_tokens: int = Field(24, ge=1, le=512, description="generation length cap")
    batch_size: int = Field(32, ge=1, le=4096, description="prompts per generate call")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    history_titles: int = Field(10, ge=0, le=100, description="prior history titles added to the user prompt")


def user_prompt_texts(world: Any, n_titles: int = 10) -> list[str]:
    """Per user: the profile text plus the titles of the last ``n_titles`` prior-history items."""
    titles = world.catalog.titles
    out = []
    for text, hist in zip(world.population.texts, world.population.history, strict=True):
        items = [int(i) for i in hist if i >= 0][-n_titles:] if n_titles else []
        out.append(text + (f" Consumed before: {'; '.join(titles[i] for i in items)}." if items else ""))
    return out


def enrich_world(world: Any, text: TextConfig, encoder_spec: str | None, *, cache_dir: Any = None,
                 progress: bool = False, console: Any = None) -> Any:
    """The world with enriched and re-encoded item and/or user texts (``text.enrich == "none"``: unchanged).

    Generations and vectors are cached and verified (:func:`~recgym.encoders.enrich.enrich_with_cache`,
    :func:`~recgym.encoders.encode_with_cache`); the returned world's ``source`` names both cache keys.
    """
    if text.enrich == "none":
        return world
    from recgym.encoders import encode_with_cache
    from recgym.encoders.enrich import (
        ITEM_PROMPT,
        USER_PROMPT,
        CausalLMEnricher,
        enrich_with_cache,
        enriched_texts,
    )
    from recgym.envs.factory import make_encoder

    enricher = CausalLMEnricher(text.model, max_new_tokens=text.max_new_tokens, batch_size=text.batch_size,
                                dtype=text.dtype)
    encoder = make_encoder(encoder_spec)
    source = dict(world.source or {})

    def part(kind: str, prompts: list[str], texts: list[str], template: str, label: str, vec_name: str) -> tuple:
        res = enrich_with_cache(enricher, prompts, template, cache_dir, name=f"{world.name}-{kind}", progress=progress)
        _say(console, kind, res)
        new = enriched_texts(texts, res.texts, label)
        vec = encode_with_cache(encoder, new, cache_dir, name=f"{world.name}-{vec_name}-enriched", progress=progress)
        source[f"enrichment_{kind}"] = res.manifest["key"]
        return new, vec.vectors

    catalog, population = world.catalog, world.population
    if text.enrich in ("items", "both"):
        texts, vectors = part("items", catalog.texts, catalog.texts, ITEM_PROMPT, "Keywords", "items")
        catalog = dataclasses.replace(catalog, texts=texts, embeddings=vectors)
    if text.enrich in ("users", "both"):
        texts, vectors = part("users", user_prompt_texts(world, text.history_titles), population.texts, USER_PROMPT,
                              "Interests", "profiles")
        population = dataclasses.replace(population, texts=texts, embeddings=vectors)
    return dataclasses.replace(world, catalog=catalog, population=population, source=source)


def _say(console: Any, what: str, res: Any) -> None:
    if console is None:
        return
    m = res.manifest
    state = "cache hit" if res.hit else f"generated in {res.seconds:.0f} s"
    console.print(f"enrich {what}: {m['n']} texts, {m['tokens']} tokens ({state}; built in {m['seconds']} s, "
                  f"{m['tokens'] / max(m['seconds'], 1e-9):.0f} tokens/s), {m['model']} {m['dtype']}, {res.path}")


def build_world(cfg: Any, *, progress: bool = False, console: Any = None) -> Any:
    """The world of an :class:`~recgym.experiments.config.ExperimentConfig`: enriched per its ``text``, then its
    item modalities fused per its ``features`` (:func:`recgym.experiments.multimodal.fuse_world`)."""
    from recgym.envs import make_world
    from recgym.experiments.multimodal import fuse_world

    world = make_world(cfg.world, world_config=cfg.world_config, data_dir=cfg.data_dir, encoder=cfg.encoder,
                       progress=progress)
    world = enrich_world(world, cfg.text, cfg.encoder, progress=progress, console=console)
    return fuse_world(world, cfg.features)
