"""The :class:`TextEncoder` protocol and input validation shared by every encoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["TextEncoder", "validate_texts"]


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
        TypeError: ``texts`` is a bare string, or an element is not a string (index and type named).
        ValueError: the sequence is empty, or an element is empty/whitespace (index named).
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{where}: expected a sequence of strings, received a single {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise ValueError(f"{where}: expected at least one text, received an empty sequence")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{where}[{i}]: expected str, received {type(t).__name__} ({t!r:.60})")
        if not t.strip():
            raise ValueError(f"{where}[{i}]: expected a non-empty text, received {t!r}")
    return texts
