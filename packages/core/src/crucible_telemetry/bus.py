"""Handlers attached to event names, resolved into a plain dispatch table.

A handler that raises is detached and reported once; the caller never sees the error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArgumentError
from .names import normalize

__all__ = ["Handler", "HandlerTable"]

log = logging.getLogger("crucible_telemetry")

HandlerFn = Callable[[tuple[str, ...], dict[str, Any], dict[str, Any] | None], Any]


@dataclass(frozen=True)
class Handler:
    """One attached handler."""

    id: str
    event_names: tuple[tuple[str, ...], ...]
    function: HandlerFn
    config: Any = None


class HandlerTable:
    """``dotted name -> tuple of handlers``, rebuilt on attach/detach, read lock-free by emit."""

    def __init__(self, on_change: Callable[[dict[str, tuple[Handler, ...]]], None] | None = None) -> None:
        self._on_change = on_change
        self._lock = threading.Lock()
        self._handlers: dict[str, Handler] = {}
        self.table: dict[str, tuple[Handler, ...]] = {}
        self.failures: list[tuple[str, BaseException]] = []

    def attach(self, handler_id: str, event_names: Iterable[Any] | Any, fn: HandlerFn, config: Any = None) -> None:
        """Attach ``fn`` to one or several event names under a unique id."""
        if not isinstance(handler_id, str) or not handler_id:
            raise InvalidArgumentError("handler_id", "a non-empty string is required")
        if not callable(fn):
            raise InvalidArgumentError("fn", f"a handler must be callable, got {type(fn).__name__}")
        if isinstance(event_names, (str, tuple)) and (
            isinstance(event_names, str) or all(isinstance(p, str) for p in event_names)
        ):
            names = [event_names]
        else:
            names = list(event_names)
        if not names:
            raise InvalidArgumentError("event_names", "at least one event name is required")
        parts = tuple(normalize(n)[1] for n in names)
        with self._lock:
            if handler_id in self._handlers:
                raise InvalidArgumentError("handler_id", f"{handler_id!r} is already attached")
            self._handlers[handler_id] = Handler(handler_id, parts, fn, config)
            self._rebuild()

    def detach(self, handler_id: str) -> bool:
        """Detach a handler; returns whether it was attached."""
        with self._lock:
            found = self._handlers.pop(handler_id, None) is not None
            if found:
                self._rebuild()
            return found

    def list(self, prefix: Any = None) -> list[Handler]:
        """Handlers attached to an event starting with ``prefix`` (all when None)."""
        pre = normalize(prefix)[1] if prefix is not None else ()
        return [h for h in self._handlers.values() if any(n[: len(pre)] == pre for n in h.event_names)]

    def _rebuild(self) -> None:
        table: dict[str, list[Handler]] = {}
        for h in self._handlers.values():
            for n in h.event_names:
                table.setdefault(".".join(n), []).append(h)
        self.table = {k: tuple(v) for k, v in table.items()}
        if self._on_change is not None:
            self._on_change(self.table)

    def dispatch(
        self,
        handlers: tuple[Handler, ...],
        parts: tuple[str, ...],
        measurements: dict[str, Any],
        metadata: dict[str, Any] | None,
    ) -> None:
        """Call each handler; one that raises is detached and logged once."""
        for h in handlers:
            try:
                h.function(parts, measurements, metadata)
            except Exception as exc:
                self.failures.append((h.id, exc))
                if self.detach(h.id):
                    log.error(
                        "crucible_telemetry: handler %r raised on %s and was detached: %r",
                        h.id,
                        ".".join(parts),
                        exc,
                        exc_info=exc,
                    )
