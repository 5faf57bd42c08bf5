"""Device selection: ``"auto"`` picks CUDA when present, else CPU."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:N"`` to a :class:`torch.device`.

    Raises:
        ValueError: an explicit CUDA device was asked for but none is available, or the name is unknown.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', received {device!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {str(dev)!r} was requested but torch sees no CUDA device; use 'cpu' or 'auto'")
    return dev
