"""One seed tree per run: every random stream of an experiment derives from a root seed and a path of names.

    tree = SeedTree(cfg.seed)
    tree.seed("eval", 3, "users")     # the users of replicate 3
    tree.seed("train", 3, "env", 0)   # replicate 3's training env, started at step 0

``evaluation.seeds`` are *replicate ids*; the seeds the code uses are derived from them with
:class:`numpy.random.SeedSequence` (root as entropy, the path as spawn key), so two purposes never share a
stream by accident (the old ``seed * 1000 + episode`` scheme collided for ``seed=1, episode=0`` and
``seed=0, episode=1000``) and changing the root re-draws every stream of the run at once.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

__all__ = ["SeedTree"]


def _key(part: str | int) -> int:
    if isinstance(part, bool) or not isinstance(part, (str, int, np.integer)):
        raise TypeError(f"seed path: expected str or int parts, received {type(part).__name__}")
    if isinstance(part, str):
        return zlib.crc32(part.encode()) | (1 << 32)  # strings and small ints never collide
    if part < 0:
        raise ValueError(f"seed path: expected non-negative ints, received {part}")
    return int(part)


@dataclass(frozen=True)
class SeedTree:
    """Deterministic seeds from ``root`` and a path; see the module docstring."""

    root: int = 0

    def seed(self, *path: str | int) -> int:
        """A 31-bit non-negative int seed for ``path`` (the same path always gives the same seed)."""
        ss = np.random.SeedSequence(entropy=int(self.root), spawn_key=tuple(_key(p) for p in path))
        return int(ss.generate_state(1, np.uint32)[0] >> 1)
