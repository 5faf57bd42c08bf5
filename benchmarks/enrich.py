"""LM enrichment throughput (issue 16, part 1): seconds per text of :class:`CausalLMEnricher` by variant.

On the default world's first ``--limit`` item texts (or user prompts), every variant — a batch size, a
compute dtype, a decode thread count, with or without the early stop of settled rows — generates the same
texts; the variants take turns window by window (interleaved, so a change of load on a shared machine hits
all alike) and the figure is the median window (all windows are kept in ``runs``). Each variant also reports
the work done (prompt tokens prefilled, decode passes, row-tokens decoded) and whether its answers equal
the first variant's (they must, for the same dtype and batch size: the early stop never changes an answer).
Nothing is cached: the timing is the generation itself (model loading and a 4-text warm-up excluded).

Run (the default model needs the enrichment extra; see README "LM enrichment")::

    python -m recgym.benchmarks.enrich --limit 128 --batch-size 64 --threads 2 --json
    python -m recgym.benchmarks.enrich --limit 64 --variant bs64 --variant bs64-nostop --variant bs32 --windows 2

A variant is ``bs<N>`` plus optional suffixes ``-fp32`` / ``-bf16`` (dtype), ``-dt<N>`` (decode threads,
default 1) and ``-nostop`` (decode every row to EOS / ``max_new_tokens``, the path before the early stop).
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from typing import Any

_VARIANT = re.compile(r"^bs(\d+)((?:-(?:fp32|bf16|dt\d+|nostop))*)$")


def parse_variant(name: str) -> dict[str, Any]:
    """``"bs64-fp32-dt2-nostop"`` -> ``{"batch_size": 64, "dtype": "float32", "decode_threads": 2, "stop": False}``."""
    m = _VARIANT.match(name)
    if m is None:
        raise ValueError(f"--variant: expected bs<N>[-fp32|-bf16][-dt<N>][-nostop], received {name!r}")
    opts: dict[str, Any] = {"batch_size": int(m.group(1)), "dtype": "auto", "decode_threads": 1, "stop": True}
    for part in filter(None, m.group(2).split("-")):
        if part in ("fp32", "bf16"):
            opts["dtype"] = {"fp32": "float32", "bf16": "bfloat16"}[part]
        elif part == "nostop":
            opts["stop"] = False
        else:
            opts["decode_threads"] = int(part[2:])
    return opts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--which", choices=("items", "users"), default="items")
    ap.add_argument("--limit", type=int, default=64, help="first N texts of the default world")
    ap.add_argument("--variant", action="append", help="bs<N>[-fp32|-bf16][-dt<N>][-nostop] (repeatable)")
    ap.add_argument("--batch-size", type=int, default=64, help="the variant when none is given: bs<batch-size>")
    ap.add_argument("--windows", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the prefill")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--model", default=None, help="local causal-LM directory or .gguf (default: SmolLM2-135M)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch

    from recgym.encoders.enrich import ITEM_PROMPT, USER_PROMPT, CausalLMEnricher
    from recgym.envs import make_world
    from recgym.experiments.enrichment import user_prompt_texts

    torch.set_num_threads(args.threads)
    world = make_world("synthetic")
    texts = list(world.catalog.texts) if args.which == "items" else user_prompt_texts(world)
    texts = texts[: args.limit]
    template = ITEM_PROMPT if args.which == "items" else USER_PROMPT
    names = args.variant or [f"bs{args.batch_size}"]
    enrichers = {}
    for name in names:
        opts = parse_variant(name)
        enr = CausalLMEnricher(args.model, max_new_tokens=args.max_new_tokens, batch_size=opts["batch_size"],
                               dtype=opts["dtype"], decode_threads=opts["decode_threads"])
        if not opts["stop"]:
            enr._settled = lambda generated: False  # decode to EOS / max_new_tokens, like generate()
        enrichers[name] = enr
    for enr in enrichers.values():  # load the model and warm the kernels up outside the timed windows
        enr.generate(texts[:4], template)
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    outputs: dict[str, list[str]] = {}
    for window in range(args.windows):
        for name, enr in enrichers.items():
            t0 = time.perf_counter()
            outs, tokens, seconds = enr.generate(texts, template)
            st = enr.last_stats
            runs[name].append({"seconds": round(seconds, 2), "s_per_text": round(seconds / len(texts), 4),
                               "tokens": tokens, "prefill_tokens": st.prefill_tokens, "decode_passes": st.steps,
                               "row_tokens_decoded": st.row_steps, "prefill_s": round(st.prefill_seconds, 2),
                               "decode_s": round(st.decode_seconds, 2), "wall": round(time.perf_counter() - t0, 2),
                               "load_avg_1min": round(os.getloadavg()[0], 2)})
            outputs.setdefault(name, outs)
            if not args.json:
                print(f"window {window} {name}: {runs[name][-1]}", flush=True)
    first = outputs[names[0]]
    result = {"which": args.which, "texts": len(texts), "threads": args.threads, "max_new_tokens": args.max_new_tokens,
              "dtype": {n: e.dtype_name for n, e in enrichers.items()}, "load_avg_before": round(load_before, 2),
              "load_avg_after": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
              "median_s_per_text": {n: statistics.median(r["s_per_text"] for r in runs[n]) for n in names},
              "same_answers_as_first": {n: sum(a == b for a, b in zip(first, outputs[n], strict=True)) / len(texts)
                                        for n in names},
              "examples": [[t[:80], o] for t, o in list(zip(texts, first, strict=True))[:3]], "runs": runs}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
