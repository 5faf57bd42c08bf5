"""SlateQ's replay buffer: transitions with the shown slate, the observed choice and the next slate.

A flat ring of ``capacity`` transitions held as torch tensors on the agent's device. One transition is

==================  ==================  ==================================================================
key                 shape, dtype        meaning
==================  ==================  ==================================================================
``obs/<key>``       obs key's shape     observation ``s``: every key the env returns (``profile``,
                                        ``history``, ``context``, ``candidates``, ``mask``, ...; dtypes kept)
``next_obs/<key>``  obs key's shape     observation ``s'`` (the final one when the episode ended)
``obs/_cos``,       ``(N, 2)`` float32  cosine features of ``s`` / ``s'`` (:data:`~recgym.agents.scorer.COS_KEY`;
``next_obs/_cos``                       optional: computed once while acting, reused by every update)
``slate``           ``(K,)`` int64      candidate positions shown, best first
``click``           ``()`` int64        clicked slot, or ``K`` for no click (the null item)
``reward``          ``()`` float32      step reward
``bootstrap``       ``()`` bool         False when the user left (``terminated``): no value after ``s'``
``next_slate``      ``(K,)`` int64      slate shown at ``s'`` (SARSA), valid where ``has_next_slate``
``has_next_slate``  ``()`` bool         False at the end of an episode (truncation: ``s'`` got no slate)
==================  ==================  ==================================================================

Sampling draws indices uniformly with replacement from a CPU ``torch.Generator`` the caller owns.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

__all__ = ["SlateReplayBuffer"]

class SlateReplayBuffer:
    """Ring buffer of SlateQ transitions (see the module docstring). Tensors are allocated at the first
    :meth:`add`, from the shapes and dtypes of that batch."""

    def __init__(self, capacity: int, device: torch.device) -> None:
        if capacity < 1:
            raise ValueError(f"buffer_size: expected >= 1, received {capacity}")
        self.capacity = int(capacity)
        self.device = device
        self.data: dict[str, torch.Tensor] = {}
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, batch: Mapping[str, torch.Tensor]) -> None:
        """Append ``T`` transitions: ``batch`` maps every key of the module table to ``(T, ...)`` tensors."""
        if not self.data:
            for key, val in batch.items():
                self.data[key] = torch.zeros((self.capacity, *val.shape[1:]), dtype=val.dtype, device=self.device)
        missing = set(self.data) ^ set(batch)
        if missing:
            raise KeyError(f"SlateReplayBuffer.add: expected keys {sorted(self.data)}, mismatched {sorted(missing)}")
        t = int(next(iter(batch.values())).shape[0])
        if t == 0:
            return
        if t > self.capacity:  # only the newest capacity transitions can be kept
            batch = {k: v[t - self.capacity:] for k, v in batch.items()}
            t = self.capacity
        idx = (self.pos + torch.arange(t, device=self.device)) % self.capacity
        for key, val in batch.items():
            self.data[key].index_copy_(0, idx, val.to(self.device, self.data[key].dtype))
        self.pos = (self.pos + t) % self.capacity
        self.size = min(self.size + t, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``batch_size`` transitions drawn uniformly with replacement (``generator``: CPU)."""
        if self.size == 0:
            raise RuntimeError("SlateReplayBuffer.sample: the buffer is empty")
        idx = torch.randint(0, self.size, (batch_size,), generator=generator).to(self.device)
        return {k: v.index_select(0, idx) for k, v in self.data.items()}
