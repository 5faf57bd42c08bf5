"""recgym.encoders: text -> vectors, a manifest-verified embedding cache, and item/profile text builders.

- :class:`TransformerEncoder`: any local Hugging Face model directory (default: the bundled all-MiniLM-L6-v2),
  mean pooling + L2 normalisation; never downloads.
- :class:`HashingEncoder`: deterministic, model-free feature hashing (tests, ablations).
- :func:`encode_with_cache` / :func:`load_cache`: the embedding cache (see :mod:`recgym.encoders.cache`).
- :func:`item_text` / :func:`profile_text`: deterministic text builders.
"""

from recgym.encoders.base import TextEncoder, validate_texts
from recgym.encoders.cache import (
    CachedEmbeddings,
    CacheError,
    cache_key,
    default_cache_dir,
    encode_with_cache,
    load_cache,
)
from recgym.encoders.hashing import HashingEncoder
from recgym.encoders.text import item_text, profile_text
from recgym.encoders.transformer import ModelNotFoundError, TransformerEncoder, weights_digest

__all__ = [
    "TextEncoder",
    "validate_texts",
    "TransformerEncoder",
    "ModelNotFoundError",
    "weights_digest",
    "HashingEncoder",
    "CacheError",
    "CachedEmbeddings",
    "cache_key",
    "default_cache_dir",
    "encode_with_cache",
    "load_cache",
    "item_text",
    "profile_text",
]
