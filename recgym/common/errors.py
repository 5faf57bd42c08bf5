"""Error classes for bad input that are not configuration errors.

:class:`~recgym.common.config.ConfigError` covers settings (config files, keyword arguments, options);
:class:`DataError` covers data files recgym reads (interaction logs, item and user tables). Both are
``ValueError`` subclasses whose messages name where the problem is, what was expected and what was received.
"""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """A data file recgym reads is malformed or unusable (message: file, column, line, expected vs received)."""
