"""Typed, frozen configuration models that reject unknown keys with a "did you mean" suggestion.

Every config in recgym derives from :class:`StrictModel`. Validation happens at construction, before any
data, encoder or model is touched, so a typo in a YAML file fails in milliseconds with a message naming
the offending key, the place it was found and the closest valid key.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


class ConfigError(ValueError):
    """A configuration value or key is invalid. The message says what was expected, what was received and where."""


def suggest(name: str, known: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest known name, or an empty string when nothing is close."""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


class StrictModel(BaseModel):
    """Frozen pydantic model; unknown keys raise :class:`ConfigError` naming the closest valid key.

    Subclasses set ``config_path`` (e.g. ``"env"``) so messages say where in a nested config the key was.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, protected_namespaces=())
    config_path: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = set(cls.model_fields)
            for key in data:
                if key not in known:
                    where = f" in {cls.config_path!r}" if cls.config_path else ""
                    raise ConfigError(
                        f"unknown key {key!r}{where} for {cls.__name__}{suggest(str(key), known)}; "
                        f"expected one of: {', '.join(sorted(known))}"
                    )
        return data

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_format(exc, type(self))) from None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Validate a mapping; every problem is reported as one :class:`ConfigError`."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise ConfigError(_format(exc, cls)) from None

    def replace(self, **changes: Any) -> StrictModel:
        """Return a validated copy with ``changes`` applied (unknown keys still rejected)."""
        return type(self).model_validate({**self.model_dump(), **changes})


def _format(exc: ValidationError, cls: type[StrictModel]) -> str:
    """One line per problem: ``where: message, received value``."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in (cls.config_path, *err["loc"]) if p != "")
        msg = str(err["msg"]).removeprefix("Value error, ")
        if msg.startswith(("unknown key", cls.config_path + ".")) or err["type"] == "value_error":
            lines.append(msg if not loc or msg.startswith(loc) else (f"{loc}: {msg}" if err["loc"] else msg))
        else:
            lines.append(f"{loc or cls.__name__}: {msg}, received {err.get('input')!r}")
    return "; ".join(lines)
