"""Event names: tuples of strings, or the equivalent dotted string."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import InvalidArgumentError

__all__ = ["EventName", "normalize"]

EventName = tuple[str, ...] | str | Sequence[str]

# name (as given) -> (dotted, tuple). Bounded so dynamic names cannot grow it forever.
_CACHE: dict[object, tuple[str, tuple[str, ...]]] = {}
_CACHE_LIMIT = 50_000


def normalize(name: object) -> tuple[str, tuple[str, ...]]:
    """Return ``(dotted, parts)`` for an event name, raising on malformed names."""
    try:
        return _CACHE[name]
    except (KeyError, TypeError):
        pass
    if isinstance(name, str):
        parts = tuple(name.split("."))
    elif isinstance(name, (tuple, list)):
        parts = tuple(name)
    else:
        raise InvalidArgumentError(
            "name", f"an event name is a tuple of strings or a dotted string, got {type(name).__name__}"
        )
    if not parts or not all(isinstance(p, str) and p and "." not in p for p in parts):
        raise InvalidArgumentError("name", f"malformed event name {name!r}: need non-empty string parts without dots")
    result = (".".join(parts), parts)
    if len(_CACHE) < _CACHE_LIMIT:
        try:
            _CACHE[name] = result
            _CACHE[result[0]] = result
            _CACHE[parts] = result
        except TypeError:
            pass
    return result
