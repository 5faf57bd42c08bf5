"""The :class:`TextEncoder` protocol and input validation shared by every encoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["TextEncoder", "validate_texts", "vector_agreement"]


@runtime_checkable
class TextEncoder(Protocol):
    """Turns texts into vectors.

    Attributes:
        dim: output dimension ``d``.
        fingerprint: a stable string that changes whenever the vectors could change (model weights, pooling,
            max_length, normalisation, dtype). Cache keys and manifests use it.
    """

    dim: int
    fingerprint: str

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Return ``(n, d)`` float32 L2-normalised vectors for ``n`` texts, in order."""
        ...

    def describe(self) -> dict[str, Any]:
        """Manifest fields: model (path or name), revision or weights hash, pooling, max_length, normalisation,
        dim, dtype."""
        ...


def validate_texts(texts: Sequence[str], where: str = "texts") -> list[str]:
    """Check ``texts`` is a non-empty sequence of non-empty strings; return it as a list.

    Raises:
        TypeError: ``texts`` is a bare string or not iterable, or an element is not a string (index and type
            named).
        ValueError: the sequence is empty, or an element is empty/whitespace or holds a lone surrogate that
            UTF-8 cannot encode (index named).
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{where}: expected a sequence of strings, received a single {type(texts).__name__}")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"{where}: expected a sequence of strings, received {type(texts).__name__}") from None
    if not texts:
        raise ValueError(f"{where}: expected at least one text, received an empty sequence")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{where}[{i}]: expected str, received {type(t).__name__} ({t!r:.60})")
        if not t.strip():
            raise ValueError(f"{where}[{i}]: expected a non-empty text, received {t!r}")
        if not t.isascii():
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as exc:  # lone surrogates, e.g. from a mis-decoded file
                raise ValueError(
                    f"{where}[{i}]: expected text encodable as UTF-8, received a lone surrogate "
                    f"{t[exc.start]!r} at character {exc.start}"
                ) from None
    return texts


def vector_agreement(reference: np.ndarray, other: np.ndarray, k: int = 10) -> dict[str, float]:
    """How closely ``other`` reproduces ``reference`` (two ``(n, d)`` unit-row encodings of the same texts).

    Returns:
        ``cos_min`` / ``cos_mean``: row-wise cosine between the two encodings; ``topk_overlap``: the mean over
        rows of ``|N_ref(i) & N_other(i)| / k``, where ``N(i)`` is the set of the ``k`` nearest other rows of
        row ``i`` by cosine (the neighbours a recommender would retrieve); ``k`` is capped at ``n - 1``.

    Raises:
        ValueError: shapes differ, or fewer than 2 rows.
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"vector_agreement: expected two (n, d) arrays of one shape with n >= 2, "
                         f"received {a.shape} and {b.shape}")
    k = min(int(k), a.shape[0] - 1)
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))

    def neighbours(x: np.ndarray) -> np.ndarray:
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return np.argpartition(-sim, k - 1, axis=1)[:, :k]

    na, nb = neighbours(a), neighbours(b)
    overlap = np.mean([np.intersect1d(x, y).size / k for x, y in zip(na, nb, strict=True)])
    return {"cos_min": float(cos.min()), "cos_mean": float(cos.mean()), "topk_overlap": float(overlap), "k": k}
