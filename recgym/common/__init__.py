"""Shared core used by every recgym package: strict configs, atomic file writes, device selection."""

from recgym.common.config import ConfigError, StrictModel, suggest
from recgym.common.device import resolve_device
from recgym.common.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    sha256_bytes,
    sha256_texts,
)

__all__ = [
    "ConfigError",
    "StrictModel",
    "suggest",
    "resolve_device",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "sha256_bytes",
    "sha256_texts",
]
