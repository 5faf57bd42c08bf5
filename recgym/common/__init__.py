"""Shared core used by every recgym package: strict configs, safe YAML, file errors, atomic file writes,
device selection."""

from recgym.common.config import ConfigError, StrictModel, suggest
from recgym.common.device import check_device, resolve_device
from recgym.common.errors import CorruptFileError, DataError, DiskFullError, UnsafeFileError, UnsafePathError
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
    "DataError",
    "StrictModel",
    "suggest",
    "check_device",
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
