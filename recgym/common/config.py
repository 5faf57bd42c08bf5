"""Typed, frozen configuration models that reject unknown keys with a "did you mean" suggestion.

Every config in recgym derives from :class:`StrictModel`. Validation happens at construction, before any
data, encoder or model is touched, so a typo in a YAML file fails in milliseconds with a message naming
the offending key, the place it was found and the closest valid key.

Rules every field of every config follows (nested configs and agent hyper-parameters included):

* **Strict types.** An ``int`` field takes an integer only: not ``True``/``False``, not ``"100"``, not
  ``100.0``. A ``float`` field takes an integer or a float, never a bool or a string. A ``str`` field takes a
  string only. numpy scalars count as the Python number they hold; a tuple or 1-D array is accepted where
  a list is expected.
* **Finite, bounded numbers.** Every float anywhere in a config (also inside free-form mappings such as
  ``world_config``) is finite and either 0 or of magnitude in ``[1e-12, 1e15]`` (:data:`FLOAT_TINY`,
  :data:`FLOAT_LIMIT`): recgym computes in float32, where larger values — or the quotient by a smaller one
  (a temperature of ``5e-324``) — overflow to ``inf`` and give non-finite rewards. Every integer fits int64.
* **Seeds** (:data:`Seed`) are integers in ``[0, 2**63 - 1]``: what numpy's ``SeedSequence`` and
  ``torch.manual_seed`` both accept.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = ["ConfigError", "StrictModel", "suggest", "Seed", "SEED_MAX", "FLOAT_LIMIT", "FLOAT_TINY", "INT_MIN",
           "INT_MAX"]

FLOAT_LIMIT = 1e15
"""Largest magnitude of a float anywhere in a config (float32 arithmetic stays finite well above it)."""
FLOAT_TINY = 1e-12
"""Smallest magnitude of a non-zero float anywhere in a config (dividing by it stays finite in float32)."""
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
SEED_MAX = 2**63 - 1
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
"""A seed: an integer in ``[0, 2**63 - 1]`` (accepted by numpy ``SeedSequence`` and ``torch.manual_seed``)."""


class ConfigError(ValueError):
    """A configuration value or key is invalid. The message says what was expected, what was received and where."""


class ComponentError(ConfigError, TypeError):
    """A component argument (``choice_model=``, ``reward_fn=`` ...) is of the wrong kind; also a ``TypeError``."""


def suggest(name: str, known: Iterable[str]) -> str:
    """Return `` (did you mean 'x'?)`` for the closest known name, or an empty string when nothing is close."""
    if not isinstance(name, str):
        return ""
    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def _accepts_list(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is list:
        return True
    if origin is Union or type(annotation).__name__ == "UnionType":
        return any(_accepts_list(a) for a in get_args(annotation))
    if origin is Annotated:
        return _accepts_list(get_args(annotation)[0])
    return False


def _plain(value: Any, to_list: bool) -> Any:
    """numpy scalars -> Python scalars (recursively in lists and mappings); tuples/arrays -> lists when
    the field takes a list. Everything else is left for the strict validators to judge."""
    if isinstance(value, np.generic):
        return value.item() if isinstance(value, (np.bool_, np.integer, np.floating)) else value
    if to_list and isinstance(value, (tuple, np.ndarray)) and np.ndim(value) == 1:
        value = value.tolist() if isinstance(value, np.ndarray) else list(value)
    if isinstance(value, list):
        return [_plain(v, False) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, False) for k, v in value.items()}
    return value


def _out_of_bounds(value: Any, path: str = "") -> str | None:
    """First number in ``value`` (walking lists and plain mappings, not models) outside the config bounds,
    as ``"<relative path>: expected ..., received ..."``; None when all are fine."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, BaseModel)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > FLOAT_LIMIT or 0 < abs(value) < FLOAT_TINY:
            return (f"{path}: expected a finite number, 0 or of magnitude in [{FLOAT_TINY:g}, {FLOAT_LIMIT:g}], "
                    f"received {value!r}")
        return None
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            return f"{path}: expected an integer in the int64 range [-2**63, 2**63 - 1], received {value!r}"
        return None
    if isinstance(value, (list, tuple)):
        for j, v in enumerate(value):
            if (bad := _out_of_bounds(v, f"{path}[{j}]")) is not None:
                return bad
    elif isinstance(value, Mapping):
        for k, v in value.items():
            if (bad := _out_of_bounds(v, f"{path}.{k}")) is not None:
                return bad
    return None


class StrictModel(BaseModel):
    """Frozen, strictly typed pydantic model; unknown keys raise :class:`ConfigError` naming the closest
    valid key; numbers are finite and bounded (see the module docstring).

    Subclasses set ``config_path`` (e.g. ``"env"``) so messages say where in a nested config the key was.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=True, protected_namespaces=(), strict=True,
        allow_inf_nan=False,
    )
    config_path: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = set(cls.model_fields)
            for key in data:
                if key not in known:
                    raise ConfigError(
                        f"unknown key {key!r} for {cls.__name__}{suggest(str(key), known)}; "
                        f"expected one of: {', '.join(sorted(known))}"
                    )
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _python_scalars(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        return _plain(value, field is not None and _accepts_list(field.annotation))

    @field_validator("*", mode="after")
    @classmethod
    def _bounded_numbers(cls, value: Any) -> Any:
        bad = _out_of_bounds(value)
        if bad is not None:
            raise ValueError(bad)  # pydantic prefixes the field's location
        return value

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(_format(exc, type(self))) from None
        except RecursionError:
            raise ConfigError(f"{type(self).__name__}: expected a config nested a few levels deep, received "
                              "one nested too deeply to validate") from None

    # Nested configs are validated by pydantic directly (not through __init__), so an error deep inside is
    # reported once, by the outermost model, with its full path (agents[1].hyperparams.gamma).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Validate a mapping; every problem is reported as one :class:`ConfigError`."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise ConfigError(_format(exc, cls)) from None
        except RecursionError:
            raise ConfigError(f"{cls.__name__}: expected a config nested a few levels deep, received one "
                              "nested too deeply to validate") from None

    def replace(self, **changes: Any) -> StrictModel:
        """Return a validated copy with ``changes`` applied (unknown keys still rejected)."""
        return type(self).model_validate({**self.model_dump(), **changes})


# What a pydantic error type means, phrased as "expected ...".
_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a string",
    "list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "none_required": "null",
}
_TYPE_ERRORS = set(_EXPECTED) - {"finite_number"}


def _format(exc: ValidationError, cls: type[StrictModel]) -> str:
    """One line per problem: ``where: expected ..., received ...``."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in (cls.config_path, *err["loc"]) if p != "")
        loc = re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", loc)  # agents.1.name -> agents[1].name
        msg = str(err["msg"]).removeprefix("Value error, ")
        kind = err["type"]
        if kind == "value_error":
            if msg.startswith((".", "[", ": ")) and loc:  # a bound check: relative path inside the field
                msg = f"{loc}{msg}"
            elif loc and not msg.startswith(loc) and not (cls.config_path and msg.startswith(cls.config_path + ".")):
                msg = f"{loc}: {msg}"
            lines.append(msg)
            continue
        where = loc or cls.__name__
        received = err.get("input")
        if kind == "missing":
            lines.append(f"{where}: expected a value (required key), received nothing")
            continue
        if kind in _EXPECTED:
            expected = _EXPECTED[kind]
        else:
            expected = msg.removeprefix("Input should be ")
            if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of"):
                expected = f"a value {expected}"
        shown = f"{received!r} ({type(received).__name__})" if kind in _TYPE_ERRORS else repr(received)
        hint = ""
        if kind == "literal_error" and isinstance(received, str):
            hint = suggest(received, re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", ""))))
        lines.append(f"{where}: expected {expected}, received {shown}{hint}")
    return "; ".join(lines)
