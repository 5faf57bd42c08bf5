"""A deterministic, model-free text encoder: signed feature hashing of word n-grams (for tests and ablations)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from recgym.encoders.base import validate_texts

__all__ = ["HashingEncoder"]

_WORD = re.compile(r"\w+")


class HashingEncoder:
    """Hash lower-cased word n-grams into ``dim`` signed buckets, then L2-normalise.

    Each n-gram ``g`` (words joined by one space) is hashed with ``blake2b(f"{seed}\\x00{g}")`` (8 bytes,
    stable across processes and platforms, unlike Python's ``hash``); the low bits pick the bucket
    (``h % dim``) and the top bit the sign (+1/-1). A text with no word characters (e.g. ``"!!!"``) is hashed
    as a single token so no row is ever zero.

    Args:
        dim: output dimension ``d`` (>= 1).
        ngram: inclusive range ``(lo, hi)`` of n-gram lengths, ``1 <= lo <= hi``.
        seed: integer salt; a different seed gives a different (equally valid) projection.

    Attributes:
        dim, fingerprint: see :class:`recgym.encoders.base.TextEncoder`.
        last_truncated: always 0 (nothing is truncated); present for interface parity.
    """

    version = 1

    def __init__(self, dim: int = 384, ngram: tuple[int, int] = (1, 2), seed: int = 0) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"HashingEncoder: dim: expected an int >= 1, received {dim!r}")
        lo_hi = tuple(ngram)
        if (
            len(lo_hi) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in lo_hi)
            or not 1 <= lo_hi[0] <= lo_hi[1]
        ):
            raise ValueError(f"HashingEncoder: ngram: expected (lo, hi) ints with 1 <= lo <= hi, received {ngram!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"HashingEncoder: seed: expected an int, received {seed!r}")
        self.dim = dim
        self.ngram: tuple[int, int] = (int(lo_hi[0]), int(lo_hi[1]))
        self.seed = seed
        self.last_truncated = 0
        self.fingerprint = hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()
        self._salt = f"{seed}\x00".encode()

    def describe(self) -> dict[str, Any]:
        """Manifest fields (all of them enter the fingerprint)."""
        return {
            "encoder": "HashingEncoder",
            "model": f"hashing-v{self.version}",
            "revision": None,
            "tokenizer": r"lowercase \w+ words",
            "ngram": list(self.ngram),
            "seed": self.seed,
            "pooling": "signed-count",
            "normalization": "l2",
            "dim": self.dim,
            "dtype": "float32",
        }

    def __repr__(self) -> str:
        return f"HashingEncoder(dim={self.dim}, ngram={self.ngram}, seed={self.seed})"

    def _grams(self, text: str) -> list[str]:
        words = _WORD.findall(text.lower()) or [text.strip().lower()]
        lo, hi = self.ngram
        return [" ".join(words[i : i + n]) for n in range(lo, hi + 1) for i in range(len(words) - n + 1)]

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool | None = None
    ) -> np.ndarray:
        """Encode ``n`` texts to ``(n, dim)`` float32 unit-L2 rows, in order. ``batch_size``/``progress`` are
        accepted for interface parity and ignored (hashing is a few microseconds per text)."""
        texts = validate_texts(texts, where="HashingEncoder.encode: texts")
        memo: dict[str, tuple[int, float]] = {}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        for r, text in enumerate(texts):
            for g in self._grams(text):
                hit = memo.get(g)
                if hit is None:
                    h = int.from_bytes(hashlib.blake2b(self._salt + g.encode(), digest_size=8).digest(), "little")
                    hit = memo[g] = (h % self.dim, 1.0 if h >> 63 else -1.0)
                rows.append(r)
                cols.append(hit[0])
                vals.append(hit[1])
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        np.add.at(out, (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)), vals)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        # Signed collisions can cancel to an all-zero row; give such a row a fixed unit vector rather than NaN.
        zero = norms[:, 0] == 0.0
        out[zero, 0] = 1.0
        norms[zero] = 1.0
        return (out / norms).astype(np.float32)
