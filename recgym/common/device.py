"""Device selection: ``"auto"`` picks CUDA when present, else CPU.

Accepted names: ``auto``, ``cpu``, ``cuda``, ``cuda:N``. :func:`check_device` validates a name (and, when
asked, that the device exists on this machine) without touching it, so configs fail at validation rather
than after data and models are loaded.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

from recgym.common.config import ConfigError

__all__ = ["check_device", "resolve_device", "torch_threads"]

_DEVICE = re.compile(r"auto|cpu(:\d{1,3})?|cuda(:\d{1,3})?")


def check_device(device: object, *, where: str = "device", available: bool = True) -> str:
    """Return ``device`` if it names a device recgym runs on (and, with ``available``, one this machine has).

    Raises:
        ConfigError: naming ``where``, the accepted names and what was received.
    """
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ConfigError(f"{where}: expected 'auto', 'cpu', 'cuda' or 'cuda:N', received {device!r}")
    if available and device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"{where}: expected a device this machine has, received {device!r} but torch sees no "
                              "CUDA device; use 'cpu' or 'auto'")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"{where}: expected a CUDA index below {torch.cuda.device_count()} (the GPUs torch "
                              f"sees), received {device!r}")
    return device


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:N"`` to a :class:`torch.device`.

    Raises:
        ConfigError (a ``ValueError``): an explicit CUDA device was asked for but none is available, or the
            name is unknown.
    """
    if isinstance(device, torch.device):
        dev = device
        if dev.type not in ("cpu", "cuda"):
            raise ConfigError(f"device: expected a cpu or cuda device, received {str(dev)!r}")
        if dev.type == "cuda":
            check_device(str(dev) if dev.index is not None else "cuda")
        return dev
    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads (``None`` or ``n <= 0``: unchanged); the previous count is
    restored after."""
    old = torch.get_num_threads()
    change = n is not None and n > 0 and n != old
    if change:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(old)
