"""Shared core used by every recgym package: strict configs, safe YAML, errors, atomic file writes, devices."""

from recgym.common.config import ConfigError, StrictModel, suggest
from recgym.common.device import check_device, resolve_device
from recgym.common.errors import DataError
from recgym.common.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    sha256_bytes,
    sha256_texts,
)

__all__ = [
    "ConfigError",
    "DataError",
    "StrictModel",
    "suggest",
    "check_device",
    "resolve_device",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "sha256_bytes",
    "sha256_texts",
]
