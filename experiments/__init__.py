"""recgym.experiments: configs, the runner, evaluation, metrics, plots and reports.

``evaluate(agent, env_or_config, ...)`` runs the evaluation protocol of ``recgym run`` from Python
(:mod:`recgym.experiments.protocol`); it is imported on first use, so ``import recgym.experiments.config``
stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate", "EvaluationResult"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from recgym.experiments import protocol

        return getattr(protocol, name)
    raise AttributeError(f"module 'recgym.experiments' has no attribute {name!r}")
