"""The complete mutable state of a simulation: :class:`SimState`.

Everything that changes while a simulation runs lives here — per-user tables, the env clock, the random
streams — and nothing of it on :class:`~recgym.envs.core.RankingCore`, which holds frozen parameters only.
So a state is a value: :meth:`SimState.clone` is a complete snapshot, :meth:`SimState.repeat` forks it,
:meth:`SimState.state_dict` serialises it as plain tensors (``torch.load(..., weights_only=True)`` reads it
back) and :meth:`SimState.to` moves it to another device.

Fields:

* **batched** ``(B, ...)`` tensors, one row per simulated user: the core's own (``user``, ``rng``, ``step``,
  ``profile``, ``history``, ``cold``, ``last_click_rate``, ``pool``, ``candidates``, ``mask``,
  ``slot_shown``) and those the components declare (default preference: ``interest``, ``user_bias``;
  default dynamics: ``budget``, ``genre_fatigue``, ``slot_consumed``);
* **shared** tensors that belong to the simulated platform as a whole (not batched; cloned with the state);
* ``t``: the env clock (env steps since seeding; drives item releases and the candidate window).

Fields read as attributes (``state.budget``). :meth:`RankingCore.step` updates the tensors *in place* — the
fast path, like JAX's buffer donation: copying the per-user tables every step would cost more than the
step. Keep a snapshot with :meth:`clone` before stepping when you need the old state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

from recgym.envs import rng as rng_mod

__all__ = ["SimState", "NEVER"]

_FORMAT = 1
# "Last shown/consumed at env time NEVER" in per-slot tables: long ago for any window or decay (while the
# env clock stays below 2**30 steps, so that clock - NEVER fits an int32).
NEVER = -(2**30)


class SimState:
    """Batched simulation state (see the module docstring). ``batched``: name -> ``(B, ...)`` tensor;
    ``shared``: name -> tensor; ``t``: env clock."""

    def __init__(self, batched: Mapping[str, torch.Tensor], shared: Mapping[str, torch.Tensor] | None = None,
                 t: int = 0) -> None:
        shared = dict(shared or {})
        clash = set(batched) & set(shared)
        if clash:
            raise ValueError(f"SimState: field names must be unique, {sorted(clash)} are both batched and shared")
        if "user" not in batched:
            raise ValueError("SimState: the batched fields need a 'user' field")
        b = batched["user"].shape[0]
        bad = {name: tuple(v.shape) for name, v in batched.items() if v.dim() == 0 or v.shape[0] != b}
        if bad:
            raise ValueError(f"SimState: every batched field needs the leading size {b}, received {bad}")
        d = self.__dict__
        d.update(batched)
        d.update(shared)
        d["_batched"] = tuple(batched)
        d["_shared"] = tuple(shared)
        d["t"] = int(t)

    def __setattr__(self, name: str, value: object) -> None:
        if name != "t" and name not in self._batched and name not in self._shared:
            raise AttributeError(f"SimState has no field {name!r}; fields: {', '.join(self.names())}")
        self.__dict__[name] = value

    # ------------------------------------------------------------------ views
    @property
    def batch_size(self) -> int:
        return int(self.user.shape[0])

    @property
    def device(self) -> torch.device:
        return self.user.device

    def names(self) -> tuple[str, ...]:
        """Names of all tensor fields, batched first."""
        return self._batched + self._shared

    def batched(self) -> Iterator[tuple[str, torch.Tensor]]:
        return ((n, self.__dict__[n]) for n in self._batched)

    def shared(self) -> Iterator[tuple[str, torch.Tensor]]:
        return ((n, self.__dict__[n]) for n in self._shared)

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}{tuple(v.shape)}" for n, v in (*self.batched(), *self.shared()))
        return f"SimState(B={self.batch_size}, t={self.t}, {fields})"

    # ------------------------------------------------------------------ copies and forks
    def _map(self, batched_fn, shared_fn=None) -> SimState:  # noqa: ANN001 - tensor -> tensor callables
        shared_fn = shared_fn or batched_fn
        return SimState({n: batched_fn(v) for n, v in self.batched()},
                        {n: shared_fn(v) for n, v in self.shared()}, self.t)

    def clone(self) -> SimState:
        """A complete snapshot: stepping either never changes the other, and both stepped with the same
        actions give bit-identical trajectories (same random streams)."""
        return self._map(torch.clone)

    def to(self, device: str | torch.device) -> SimState:
        """A copy on ``device`` (a CPU state continues on a CUDA core of the same world, and back)."""
        return self._map(lambda v: v.to(device, copy=True))

    def repeat(self, copies: int, *, split_rng: bool = False) -> SimState:
        """Fork every user into ``copies`` adjacent rows: row ``b * copies + f`` is copy ``f`` of row ``b``
        (``B -> B * copies``; shared fields are cloned once). Costs one copy of the tables.

        ``split_rng=False``: the copies keep the original's random stream, so they draw common random numbers
        — identical actions give identical trajectories, and different actions are compared under the same
        luck (paired lookahead). ``split_rng=True``: copy 0 keeps the stream, the others get independent
        ones (Monte-Carlo rollouts). Compose both: ``s.repeat(S, split_rng=True).repeat(F)``.
        """
        if not isinstance(copies, int) or copies < 1:
            raise ValueError(f"repeat: expected a positive int number of copies, received {copies!r}")
        out = self._map(lambda v: v.repeat_interleave(copies, dim=0), torch.clone)
        if split_rng:
            out.rng = rng_mod.split(self.rng, copies)
        return out

    def take(self, rows: torch.Tensor | list[int]) -> SimState:
        """The sub-batch ``rows`` ``(R,)`` (indices, in that order; e.g. the best fork of each user); shared
        fields are cloned. The result shares no memory with ``self``."""
        idx = torch.as_tensor(rows, dtype=torch.int64, device=self.device)
        return self._map(lambda v: v.index_select(0, idx), torch.clone)

    # ------------------------------------------------------------------ serialisation
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain tensors only (``torch.save`` then ``torch.load(..., weights_only=True)``): ``batched.<name>``,
        ``shared.<name>``, ``t`` and ``format``. Copies, so later steps do not change it."""
        out = {f"batched.{n}": v.detach().clone() for n, v in self.batched()}
        out.update({f"shared.{n}": v.detach().clone() for n, v in self.shared()})
        out["t"] = torch.tensor(self.t, dtype=torch.int64)
        out["format"] = torch.tensor(_FORMAT, dtype=torch.int64)
        return out

    @classmethod
    def from_state_dict(cls, d: Mapping[str, torch.Tensor], device: str | torch.device | None = None) -> SimState:
        """Rebuild a state written by :meth:`state_dict` (on ``device``, default where the tensors are)."""
        fmt = int(d.get("format", torch.tensor(-1)))
        if fmt != _FORMAT:
            raise ValueError(f"SimState.from_state_dict: expected format {_FORMAT}, received {fmt}")
        unknown = [k for k in d if k not in ("t", "format") and not k.startswith(("batched.", "shared."))]
        if unknown:
            raise ValueError(f"SimState.from_state_dict: unexpected keys {unknown}")

        def load(v: torch.Tensor) -> torch.Tensor:
            return v.to(device, copy=True) if device is not None else v.clone()

        batched = {k.removeprefix("batched."): load(v) for k, v in d.items() if k.startswith("batched.")}
        shared = {k.removeprefix("shared."): load(v) for k, v in d.items() if k.startswith("shared.")}
        return cls(batched, shared, int(d["t"]))

    def equal(self, other: SimState) -> bool:
        """Same fields, clock and bit-identical tensors."""
        if self.names() != other.names() or self.t != other.t:
            return False
        return all(torch.equal(getattr(self, n), getattr(other, n)) for n in self.names())
