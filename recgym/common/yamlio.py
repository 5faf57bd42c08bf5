"""The one YAML reader of recgym: safe tags only, bounded, and strict about what silently goes wrong elsewhere.

Rules (every YAML text recgym parses — config files, ``--set`` values, a run's saved config — goes through
:func:`load_yaml_text`):

* only the safe YAML tags (no Python objects); one document per text;
* a **duplicate key** in a mapping is an error naming the key and both line numbers (PyYAML alone keeps the
  last value silently);
* **anchors and aliases** (``&base`` / ``*base``, ``<<: *base``) are allowed, but the document as expanded
  may hold at most :data:`MAX_NODES` values and nest at most :data:`MAX_DEPTH` levels, and an alias may not
  refer to its own ancestor: "billion laughs" documents are refused in milliseconds, before anything is
  built. Aliased mappings and lists are copied, so overriding one use never changes another;
* files are read as **UTF-8** (a UTF-8 byte-order mark is allowed); UTF-16/UTF-32, other encodings and
  binary data are refused with the encoding named; files larger than :data:`MAX_BYTES` are refused unread.

Errors are :class:`~recgym.common.config.ConfigError` naming the source (file or option), the line and what
was expected vs received.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from recgym.common.config import ConfigError

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "decode_yaml_bytes", "load_yaml_file", "load_yaml_text"]

MAX_BYTES = 256 * 1024
"""Largest YAML text accepted (a config is a few KiB; parsing 256 KiB takes well under a second)."""
MAX_NODES = 100_000
"""Most values (scalars, lists, mappings) in a document once its aliases are expanded."""
MAX_DEPTH = 64
"""Deepest nesting of lists/mappings accepted."""

_MERGE = "tag:yaml.org,2002:merge"
_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "UTF-32 (little-endian byte-order mark)"),
    (codecs.BOM_UTF32_BE, "UTF-32 (big-endian byte-order mark)"),
    (codecs.BOM_UTF16_LE, "UTF-16 (little-endian byte-order mark)"),
    (codecs.BOM_UTF16_BE, "UTF-16 (big-endian byte-order mark)"),
)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader (libyaml's parser when available: ~5x faster)."""


def decode_yaml_bytes(data: bytes, source: str) -> str:
    """UTF-8 text of ``data`` (a leading UTF-8 byte-order mark dropped), or a :class:`ConfigError` naming the
    encoding found."""
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{source}: expected a YAML file of at most {MAX_BYTES // 1024} KiB, received "
                          f"{len(data):,} bytes")
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise ConfigError(f"{source}: expected UTF-8 text, received {name}; re-save the file as UTF-8")
    nul = data.find(b"\x00")
    if nul >= 0:
        pairs = data[: 2 * 64]
        utf16 = len(pairs) >= 4 and (pairs[1::2].count(0) >= len(pairs) // 4 or pairs[0::2].count(0) >= len(pairs) // 4)
        what = "UTF-16 text without a byte-order mark" if utf16 else f"binary data (a NUL byte at offset {nul})"
        raise ConfigError(f"{source}: expected UTF-8 text, received {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise ConfigError(
            f"{source}: expected UTF-8 text, received byte 0x{data[exc.start]:02X} at line {line}, column {col} "
            "that is not UTF-8 (Latin-1 / Windows-1252?); re-save the file as UTF-8"
        ) from None


def load_yaml_file(path: str | os.PathLike[str], source: str | None = None) -> Any:
    """Parse the YAML file at ``path`` under the module's rules (size checked before reading)."""
    p = Path(path)
    where = source or str(p)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{where}: expected a YAML file of at most {MAX_BYTES // 1024} KiB, received "
                              f"{size:,} bytes")
        data = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: expected a readable file, received {exc.strerror or exc}") from None
    return load_yaml_text(decode_yaml_bytes(data, where), where)


def load_yaml_text(text: str, source: str) -> Any:
    """Parse one YAML document; ``source`` (a file name, ``--set key``) prefixes every error message.

    Returns plain Python data (dict/list/str/int/float/bool/None, and the other safe YAML types), no two
    containers shared; ``None`` for an empty document.
    """
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{source}: expected YAML text of at most {MAX_BYTES // 1024} KiB, received "
                          f"{len(text):,} characters")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, loader, source)
        data = loader.construct_document(node)
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = " ".join(x for x in (exc.context, exc.problem) if x) or str(exc)
        raise ConfigError(f"{source}{where}: expected valid YAML, received an error: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: expected valid YAML, received an error: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: expected at most {MAX_DEPTH} nested levels, received deeper nesting") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise ConfigError(f"{source}: expected valid YAML values, received {exc}") from None
    finally:
        loader.dispose()
    return _unshared(data)


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _check_graph(root: Node, loader: yaml.SafeLoader, source: str) -> None:
    """Duplicate keys, nesting depth, recursive aliases and the expanded size, in one pass over the node
    graph (each node visited once: an alias is a shared node, so a bomb costs as little as it is long)."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def visit(node: Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise ConfigError(f"{source}, line {_line(node)}: expected aliases to earlier values, received an alias "
                              "to one of its own enclosing values (a recursive structure)")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source}, line {_line(node)}: expected at most {MAX_DEPTH} nested levels, "
                              "received deeper nesting")
        total = 1
        if isinstance(node, (SequenceNode, MappingNode)):
            open_.add(key)
            if isinstance(node, MappingNode):
                _check_duplicates(node, loader, source)
                children = [n for pair in node.value for n in pair]
            else:
                children = list(node.value)
            for child in children:
                total += visit(child, depth + 1)
                if total > MAX_NODES:
                    raise ConfigError(
                        f"{source}, line {_line(node)}: expected at most {MAX_NODES:,} values once aliases "
                        "(*name) are expanded, received more (an alias bomb?); write the values out or use fewer aliases"
                    )
            open_.discard(key)
        sizes[key] = total
        return total

    visit(root, 0)


def _check_duplicates(node: MappingNode, loader: yaml.SafeLoader, source: str) -> None:
    seen: dict[Any, Node] = {}
    for k, _ in node.value:
        if k.tag == _MERGE or not isinstance(k, ScalarNode):
            continue  # merged keys may be overridden; complex keys are refused by the constructor
        name = loader.construct_object(k)
        try:
            first = seen.get(name)
        except TypeError:
            continue
        if first is not None:
            a, b = first.start_mark, k.start_mark
            where = (f"line {a.line + 1}, columns {a.column + 1} and {b.column + 1}" if a.line == b.line
                     else f"lines {a.line + 1} and {b.line + 1}")
            raise ConfigError(f"{source}: duplicate key {name!r} at {where}; expected each key once per mapping, "
                              "received it twice (YAML alone would silently keep the last value)")
        seen[name] = k


def _unshared(value: Any) -> Any:
    """A copy in which no list or dict appears twice (aliases are expanded into independent copies)."""
    if isinstance(value, dict):
        return {k: _unshared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unshared(v) for v in value]
    return value
