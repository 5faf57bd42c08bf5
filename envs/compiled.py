"""Opt-in compiled kernels: ``torch.compile`` (inductor) of hot pure functions of the simulator's step.

Off by default. Turn on with the environment variable ``RECGYM_COMPILE=1`` (read once, at the first call) or
:func:`set_compile` (``True``/``False``; ``None`` goes back to the variable). Only functions whose compiled
form gives **bit-identical** results to the eager code are compiled — integer arithmetic and comparisons,
whose results do not depend on how inductor fuses or vectorises them — so switching compile on or off never
changes a trajectory (``tests/test_compiled.py`` checks it against the eager path). Today that is the top-K
of a large batch of float32 scores (:func:`recgym.envs.spaces.actions_to_slate`, ``B * N >= 32,768``): ~19 %
of a core step at B = 8,192, where the eager code needs ~30 small ops and the compiled one a few fused
loops. Float parts of the step (choice model, dynamics) stay eager: inductor may reassociate a reduction or
call another ``exp``, and a last-bit change flips a click sooner or later.

Costs and limits: the first call per input shape compiles (tens of seconds on a 2-core CPU; inductor keeps
an on-disk cache, so later processes take a few seconds), ``dynamic=False`` (a new batch size compiles
again; past torch's recompile limit the eager code runs). CPU tensors only (other devices run eagerly).
The compiled kernels use the thread count that was set when they were compiled. If compiling fails (no
C++ compiler on ``PATH``), one warning says so and the eager code runs from then on.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable

import torch

__all__ = ["ENV_VAR", "compile_enabled", "set_compile", "CompiledKernel"]

ENV_VAR = "RECGYM_COMPILE"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_setting: bool | None = None  # None: not decided yet (read ENV_VAR at the first call)


def _from_environment() -> bool:
    raw = os.environ.get(ENV_VAR, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{ENV_VAR}: expected one of {', '.join(_TRUE + _FALSE[1:])} (or unset), received {raw!r}")


def compile_enabled() -> bool:
    """Whether the compiled kernels run (:func:`set_compile`, else ``RECGYM_COMPILE``, read once)."""
    global _setting
    if _setting is None:
        _setting = _from_environment()
    return _setting


def set_compile(enabled: bool | None) -> None:
    """Switch the compiled kernels on (``True``) or off (``False``) for this process; ``None``: follow
    ``RECGYM_COMPILE`` again (re-read at the next call)."""
    global _setting
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_compile: expected True, False or None, received {enabled!r}")
    _setting = enabled


class CompiledKernel:
    """A pure tensor function with a compiled twin: ``kernel(*tensors)`` runs ``torch.compile(fn)`` when
    :func:`compile_enabled` and every tensor argument is on the CPU, else ``fn`` itself. The two must give
    identical results (only integer-exact functions are wrapped; see the module docstring)."""

    def __init__(self, fn: Callable[..., object]) -> None:
        self.fn = fn
        self._compiled: Callable[..., object] | None = None
        self._broken = False

    def __call__(self, *args: object) -> object:
        if self._broken or not compile_enabled() or not all(
                a.device.type == "cpu" for a in args if isinstance(a, torch.Tensor)):
            return self.fn(*args)
        if self._compiled is None:
            if not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
                return self._give_up("no C++ compiler (c++, g++ or clang++) on PATH", args)
            self._compiled = torch.compile(self.fn, dynamic=False)
        try:
            return self._compiled(*args)
        except Exception as exc:  # noqa: BLE001 - a backend failure (compiler, codegen) must not stop a run
            return self._give_up(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", args)

    def _give_up(self, why: str, args: tuple[object, ...]) -> object:
        self._broken = True
        warnings.warn(f"{ENV_VAR}=1: torch.compile of {self.fn.__name__} failed ({why}); running it eagerly "
                      f"from now on (same results, slower)", RuntimeWarning, stacklevel=3)
        return self.fn(*args)
