"""recgym.encoders: text -> vectors, a manifest-verified embedding cache, and item/profile text builders.

- :class:`TransformerEncoder`: any local Hugging Face model directory (default: the bundled all-MiniLM-L6-v2),
  mean pooling + L2 normalisation, bf16 autocast where the CPU has native bf16 (``precision``); never downloads.
- :class:`HashingEncoder`: deterministic, model-free feature hashing (tests, ablations).
- :func:`encode_with_cache` / :func:`load_cache`: the embedding cache (see :mod:`recgym.encoders.cache`).
- :func:`item_text` / :func:`profile_text`: deterministic text builders.
"""

from recgym.encoders.base import TextEncoder, validate_texts, vector_agreement
from recgym.encoders.cache import (
    CachedEmbeddings,
    CacheError,
    UnsafeCacheError,
    cache_key,
    default_cache_dir,
    encode_with_cache,
    load_cache,
)
from recgym.encoders.hashing import HashingEncoder
from recgym.encoders.modelfiles import ModelNotFoundError, check_model_dir, weights_digest
from recgym.encoders.text import item_text, profile_text
from recgym.encoders.transformer import TransformerEncoder, auto_threads, cpu_has_native_bf16

__all__ = [
    "TextEncoder",
    "validate_texts",
    "vector_agreement",
    "TransformerEncoder",
    "ModelNotFoundError",
    "weights_digest",
    "check_model_dir",
    "cpu_has_native_bf16",
    "auto_threads",
    "HashingEncoder",
    "CacheError",
    "UnsafeCacheError",
    "CachedEmbeddings",
    "cache_key",
    "default_cache_dir",
    "encode_with_cache",
    "load_cache",
    "item_text",
    "profile_text",
]
