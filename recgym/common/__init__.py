"""Shared core used by every recgym package: strict configs, atomic file writes, file errors, device selection."""

from recgym.common.config import ConfigError, StrictModel, suggest
from recgym.common.device import resolve_device
from recgym.common.errors import CorruptFileError, DiskFullError, UnsafeFileError, UnsafePathError
from recgym.common.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    clean_stale_temp_files,
    path_inside,
    read_json_file,
    sha256_bytes,
    sha256_texts,
)

__all__ = [
    "ConfigError",
    "StrictModel",
    "suggest",
    "resolve_device",
    "CorruptFileError",
    "DiskFullError",
    "UnsafeFileError",
    "UnsafePathError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "clean_stale_temp_files",
    "path_inside",
    "read_json_file",
    "sha256_bytes",
    "sha256_texts",
]
