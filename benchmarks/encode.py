"""Encoding throughput and warm-cache load time.

Measures, on the default world's item texts (``recgym.envs.worlds.synthetic``; a built-in generator over
:func:`recgym.encoders.item_text` when that module is absent):

- bundled MiniLM (``TransformerEncoder()``) texts/s at each batch size (one warm-up batch first, then one
  timed pass over all texts);
- ``HashingEncoder(dim=384)`` texts/s;
- time to load a warm cache of 10,000 x 384 float32 through :func:`encode_with_cache` (key computation, full
  verification: manifest, shape, dtype, finiteness, sha256 of the file) - target < 1 s.

Run: ``HF_HUB_OFFLINE=1 python -m recgym.benchmarks.encode [--n-items 2000] [--batch-sizes 64 256]``.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from recgym.encoders import HashingEncoder, TransformerEncoder, encode_with_cache, item_text, load_cache

__all__ = ["default_world_texts", "run_encode_benchmark", "time_warm_cache_load"]


def default_world_texts(n_items: int = 2000, seed: int = 0) -> tuple[list[str], str]:
    """Item texts of the default synthetic world; returns ``(texts, source)``."""
    try:
        from recgym.envs.worlds.synthetic import SyntheticWorldConfig, make_synthetic_texts
    except ImportError:
        return _fallback_texts(n_items, seed), "fallback item_text generator"
    items, _ = make_synthetic_texts(SyntheticWorldConfig(n_items=n_items, n_users=1, seed=seed))
    return [it.text for it in items], "recgym.envs.worlds.synthetic.make_synthetic_texts"


def _fallback_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    genres = ["science fiction", "romance", "thriller", "comedy", "documentary", "horror", "western", "fantasy",
              "cooking", "history", "animation", "crime", "musical", "sports", "war", "mystery"]
    adjs = ["Silent", "Crimson", "Last", "Hidden", "Golden", "Broken", "Distant", "Wild", "Quiet", "Burning"]
    nouns = ["Harbor", "Empire", "Garden", "Signal", "Voyage", "Kitchen", "Frontier", "Mirror", "River", "Crown"]
    plots = ["a reluctant hero must cross {p} to save {q}", "two rivals fall for each other in {p}",
             "a detective uncovers a conspiracy reaching {p}", "a family cooks its way through {p}",
             "an old crew reunites for one last job in {p}"]
    places = ["a dying galaxy", "a small coastal town", "post-war Berlin", "the Arctic", "a haunted school"]
    out = []
    for i in range(n):
        g = [genres[j] for j in rng.choice(len(genres), size=int(rng.integers(1, 3)), replace=False)]
        plot = plots[int(rng.integers(len(plots)))].format(p=places[int(rng.integers(len(places)))],
                                                           q=places[int(rng.integers(len(places)))])
        title = f"{adjs[int(rng.integers(len(adjs)))]} {nouns[int(rng.integers(len(nouns)))]} {i}"
        out.append(item_text(title, year=int(rng.integers(1950, 2025)), genres=g, description=plot.capitalize()))
    return out


def _throughput(encoder: Any, texts: Sequence[str], **kwargs: Any) -> float:
    t0 = time.perf_counter()
    encoder.encode(texts, **kwargs)
    return len(texts) / (time.perf_counter() - t0)


def time_warm_cache_load(n: int = 10_000, dim: int = 384, repeats: int = 3) -> dict[str, float]:
    """Build an ``(n, dim)`` cache with the hashing encoder in a temp dir, then time warm loads (best of
    ``repeats``): through ``encode_with_cache`` (incl. key hashing of the texts) and ``load_cache`` alone."""
    enc = HashingEncoder(dim=dim)
    texts = [f"item {i}: a cached text about topic {i % 97} and theme {i % 13}" for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        built = encode_with_cache(enc, texts, tmp, name="bench")
        assert not built.hit
        full, bare = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = encode_with_cache(enc, texts, tmp, name="bench")
            full.append(time.perf_counter() - t0)
            assert res.hit and res.vectors.shape == (n, dim)
            t0 = time.perf_counter()
            load_cache(res.path, encoder=enc, texts=texts)
            bare.append(time.perf_counter() - t0)
        size = (res.path / "vectors.npy").stat().st_size
    return {"n": n, "dim": dim, "encode_with_cache_hit_s": min(full), "load_cache_s": min(bare),
            "file_mb": size / 1e6}


def run_encode_benchmark(texts: Sequence[str], batch_sizes: Sequence[int] = (64, 256)) -> dict[str, Any]:
    """Time the bundled MiniLM at each batch size, the hashing encoder, and a warm 10k x 384 cache load.

    Args:
        texts: ``n`` item texts (realistic lengths matter: cost grows with tokens).
        batch_sizes: MiniLM batch sizes to time.

    Returns:
        A JSON-serialisable dict of figures (texts/s, seconds) plus machine and token-length context.
    """
    texts = list(texts)
    t0 = time.perf_counter()
    minilm = TransformerEncoder(device="cpu")
    load_s = time.perf_counter() - t0
    lengths = minilm.count_tokens(texts)
    minilm.encode(texts[:32])  # warm-up (allocator, kernels)
    minilm_tps = {str(bs): _throughput(minilm, texts, batch_size=bs, progress=False) for bs in batch_sizes}
    hashing = HashingEncoder(dim=384)
    hashing.encode(texts[:32])
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "torch": torch.__version__},
        "n_texts": len(texts),
        "tokens_mean": float(lengths.mean()),
        "tokens_max": int(lengths.max()),
        "truncated": minilm.last_truncated,
        "minilm_load_s": load_s,
        "minilm_texts_per_s": minilm_tps,
        "hashing_texts_per_s": _throughput(hashing, texts),
        "warm_cache": time_warm_cache_load(),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-items", type=int, default=2000, help="item texts from the default world")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256], help="MiniLM batch sizes")
    args = parser.parse_args(argv)
    texts, source = default_world_texts(args.n_items)
    res = {"texts_source": source, "date": time.strftime("%Y-%m-%d"),
           **run_encode_benchmark(texts, batch_sizes=args.batch_sizes)}
    print(f"texts: {res['n_texts']} from {source}; tokens mean {res['tokens_mean']:.1f}, max {res['tokens_max']}")
    for bs, tps in res["minilm_texts_per_s"].items():
        print(f"MiniLM (CPU, {res['machine']['torch_threads']} threads) batch {bs}: {tps:,.0f} texts/s")
    print(f"HashingEncoder(dim=384): {res['hashing_texts_per_s']:,.0f} texts/s")
    wc = res["warm_cache"]
    print(f"warm cache {wc['n']}x{wc['dim']} ({wc['file_mb']:.1f} MB): encode_with_cache hit "
          f"{wc['encode_with_cache_hit_s'] * 1000:.0f} ms, load_cache {wc['load_cache_s'] * 1000:.0f} ms (target < 1 s)")
    print(json.dumps(res, sort_keys=True))


if __name__ == "__main__":
    main()
