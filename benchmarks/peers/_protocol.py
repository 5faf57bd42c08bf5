"""The timing protocol every peer script shares (stdlib only: it runs inside the peer's own venv).

Standalone, a peer script prints one JSON line with the steps/s of ``--repeats`` consecutive windows.
With ``--serve`` it warms up, prints one JSON line (its settings, ``"ready": true``) and then times one
window per line it reads on stdin (the number of steps), answering each with ``{"steps_per_s": x}``.
``compare.py`` drives it that way: recgym and the peer take turns window by window in one run, so both see
the same machine load, and the peer process sits blocked on stdin (idle) while recgym is timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable


def parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every peer script takes; each adds its own sizes."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--slate-size", type=int, default=10)
    p.add_argument("--steps", type=int, default=2000, help="steps per timed window")
    p.add_argument("--repeats", type=int, default=3, help="timed windows (standalone)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--serve", action="store_true", help="time one window per stdin line (see _protocol.py)")
    return p


def window(step: Callable[[int], None], n: int) -> float:
    """Steps/s of ``n`` calls of ``step(i)``."""
    t0 = time.perf_counter()
    for i in range(n):
        step(i)
    return n / (time.perf_counter() - t0)


def run(step: Callable[[int], None], settings: dict, *, steps: int, repeats: int, serve: bool) -> None:
    window(step, 200)  # warm-up
    if not serve:
        print(json.dumps({**settings, "steps_per_s": [window(step, steps) for _ in range(repeats)]}))
        return
    print(json.dumps({**settings, "ready": True}), flush=True)
    for line in sys.stdin:
        n = int(line)
        print(json.dumps({"steps_per_s": window(step, n)}), flush=True)
