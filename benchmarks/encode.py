"""Encoding throughput by precision, bf16-vs-fp32 agreement, and warm-cache load time.

Measures, on the default world's item texts (``recgym.envs.worlds.synthetic``; a built-in generator over
:func:`recgym.encoders.item_text` when that module is absent):

- the bundled MiniLM (``TransformerEncoder``) in texts/s for each precision (``fp32``, and ``bf16`` where
  this CPU has native bf16) and batch size. One window is one full :meth:`encode` pass over all texts
  (tokenisation included); the precisions take turns window by window (interleaved, so that a change of
  load on a shared machine hits both alike) and the figure is the median window (every window is kept in
  ``*_runs``). The thread count is what the encoder uses by default (load-aware, see
  :func:`recgym.encoders.auto_threads`) unless ``threads`` is given, and is reported per window;
- the tokenizer alone (texts/s), so the share of the pass that is not the transformer is visible;
- the agreement of each non-fp32 precision with fp32 on every text: minimum and mean cosine, and top-10
  neighbour overlap (the bars of issue 17: cosine >= 0.999 on every text, overlap >= 99 %);
- ``HashingEncoder(dim=384)`` texts/s; a warm 10,000 x 384 cache load through :func:`encode_with_cache`
  (full verification) - target < 1 s.

The 1-minute load average is recorded before and after: figures taken at a load above ~0.5 on this 2-core
machine are provisional.

Run: ``recgym bench encode [--precision fp32 --precision bf16] [--batch-size 64] [--repeats 5] [--json]``
(or ``python -m recgym.benchmarks.encode``). The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from recgym.encoders import (
    HashingEncoder,
    TransformerEncoder,
    cpu_has_native_bf16,
    encode_with_cache,
    item_text,
    load_cache,
    vector_agreement,
)

__all__ = ["default_world_texts", "run_encode_benchmark", "time_warm_cache_load", "default_precisions"]


def default_world_texts(n_items: int = 2000, seed: int = 0) -> tuple[list[str], str]:
    """Item texts of the default synthetic world; returns ``(texts, source)``."""
    try:
        from recgym.envs.worlds.synthetic import SyntheticWorldConfig, make_synthetic_texts
    except ImportError:
        return _fallback_texts(n_items, seed), "fallback item_text generator"
    # The world config needs n_items >= latent_dim; fewer texts are the first n of a larger world.
    n_world = max(n_items, SyntheticWorldConfig().latent_dim)
    items, _ = make_synthetic_texts(SyntheticWorldConfig(n_items=n_world, n_users=1, seed=seed))
    return [it.text for it in items[:n_items]], "recgym.envs.worlds.synthetic.make_synthetic_texts"


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


def default_precisions() -> list[str]:
    """``["fp32", "bf16"]`` on a CPU with native bf16, else ``["fp32"]``."""
    return ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


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


def run_encode_benchmark(
    texts: Sequence[str],
    batch_sizes: Sequence[int] = (64,),
    precisions: Sequence[str] | None = None,
    repeats: int = 5,
    threads: int | None = None,
    warm_cache: bool = True,
) -> dict[str, Any]:
    """Time the bundled MiniLM per precision and batch size (interleaved windows, median), its tokenizer, the
    hashing encoder and a warm 10k x 384 cache load; measure each precision's agreement with fp32.

    Args:
        texts: ``n`` item texts (realistic lengths matter: cost grows with tokens).
        batch_sizes: MiniLM batch sizes to time.
        precisions: precisions to time (``"fp32"``, ``"bf16"``); default :func:`default_precisions`.
        repeats: timed windows (full passes over ``texts``) per precision and batch size; the median is reported.
        threads: torch intra-op threads; ``None`` = the encoder's load-aware default.
        warm_cache: also time the warm-cache load.

    Returns:
        A JSON-serialisable dict of figures plus machine, load-average and token-length context:
        ``minilm[precision][batch_size]`` = ``{"texts_per_s", "texts_per_s_runs", "threads_runs",
        "texts_per_cpu_s"}`` (the last: texts per second of this process's CPU time, all threads - on a
        loaded machine a better guide than wall time to what a quiet one gives per core),
        ``agreement[precision]`` = :func:`~recgym.encoders.vector_agreement` vs fp32.
    """
    texts = list(texts)
    precisions = list(precisions) if precisions else default_precisions()
    load_before = _load()
    t0 = time.perf_counter()
    encoders = {p: TransformerEncoder(device="cpu", precision=p, threads=threads) for p in precisions}
    load_s = (time.perf_counter() - t0) / len(encoders)
    any_enc = next(iter(encoders.values()))
    t0 = time.perf_counter()
    lengths = any_enc.count_tokens(texts)
    tokenizer_tps = len(texts) / (time.perf_counter() - t0)
    vectors: dict[str, np.ndarray] = {}
    for p, enc in encoders.items():  # warm-up (allocator, kernels, bf16 weight copies) and the vectors compared
        vectors[p] = enc.encode(texts, batch_size=batch_sizes[0], progress=False)
    rates: dict[str, dict[str, list[float]]] = {p: {str(bs): [] for bs in batch_sizes} for p in precisions}
    cpu_rates: dict[str, dict[str, list[float]]] = {p: {str(bs): [] for bs in batch_sizes} for p in precisions}
    used: dict[str, dict[str, list[int]]] = {p: {str(bs): [] for bs in batch_sizes} for p in precisions}
    for _ in range(repeats):
        for bs in batch_sizes:
            for p, enc in encoders.items():
                t0, c0 = time.perf_counter(), time.process_time()
                enc.encode(texts, batch_size=bs, progress=False)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                rates[p][str(bs)].append(len(texts) / wall)
                cpu_rates[p][str(bs)].append(len(texts) / max(cpu, 1e-9))
                used[p][str(bs)].append(enc.last_threads)
    minilm = {p: {bs: {"texts_per_s": statistics.median(r), "texts_per_s_runs": r, "threads_runs": used[p][bs],
                       "texts_per_cpu_s": statistics.median(cpu_rates[p][bs])}
                  for bs, r in by_bs.items()} for p, by_bs in rates.items()}
    agreement = ({p: vector_agreement(vectors["fp32"], v, k=10) for p, v in vectors.items() if p != "fp32"}
                 if "fp32" in vectors else {})
    hashing = HashingEncoder(dim=384)
    hashing.encode(texts[:32])
    t0 = time.perf_counter()
    hashing.encode(texts)
    hashing_tps = len(texts) / (time.perf_counter() - t0)
    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__, "native_bf16": cpu_has_native_bf16()},
        "load_avg_1min": {"before": load_before, "after": _load()},
        "repeats": repeats,
        "n_texts": len(texts),
        "tokens_mean": float(lengths.mean()),
        "tokens_max": int(lengths.max()),
        "truncated": any_enc.last_truncated,
        "minilm_load_s": load_s,
        "tokenizer_texts_per_s": tokenizer_tps,
        "minilm": minilm,
        "agreement_vs_fp32": agreement,
        "hashing_texts_per_s": hashing_tps,
        "warm_cache": time_warm_cache_load() if warm_cache else None,
    }


def summary_lines(res: dict[str, Any]) -> list[str]:
    """Human-readable lines for a :func:`run_encode_benchmark` result."""
    load = res["load_avg_1min"]
    lines = [f"texts: {res['n_texts']} ({res.get('texts_source', '?')}); tokens mean {res['tokens_mean']:.1f}, "
             f"max {res['tokens_max']}; load average {load['before']} -> {load['after']}; "
             f"median of {res['repeats']} windows"]
    for p, by_bs in res["minilm"].items():
        for bs, r in by_bs.items():
            lines.append(f"MiniLM {p} batch {bs} (threads {sorted(set(r['threads_runs']))}): "
                         f"{r['texts_per_s']:,.0f} texts/s (windows {', '.join(f'{x:,.0f}' for x in r['texts_per_s_runs'])}); "
                         f"{r['texts_per_cpu_s']:,.0f} texts per CPU-second")
    for p, q in res["agreement_vs_fp32"].items():
        lines.append(f"{p} vs fp32: cosine min {q['cos_min']:.5f}, mean {q['cos_mean']:.6f}; "
                     f"top-{q['k']} neighbour overlap {q['topk_overlap']:.2%}")
    lines.append(f"tokenizer alone: {res['tokenizer_texts_per_s']:,.0f} texts/s; "
                 f"HashingEncoder(dim=384): {res['hashing_texts_per_s']:,.0f} texts/s")
    wc = res.get("warm_cache")
    if wc:
        lines.append(f"warm cache {wc['n']}x{wc['dim']} ({wc['file_mb']:.1f} MB): encode_with_cache hit "
                     f"{wc['encode_with_cache_hit_s'] * 1000:.0f} ms, load_cache {wc['load_cache_s'] * 1000:.0f} ms")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-items", type=int, default=2000, help="item texts from the default world")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64], help="MiniLM batch sizes")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    texts, source = default_world_texts(args.n_items)
    res = {"texts_source": source, "date": time.strftime("%Y-%m-%d"),
           **run_encode_benchmark(texts, args.batch_sizes, args.precisions, args.repeats, args.threads)}
    print("\n".join(summary_lines(res)))
    print(json.dumps(res, sort_keys=True))


if __name__ == "__main__":
    main()
