"""``span``: a start event, then a stop event with its duration or an exception event."""

from __future__ import annotations

import time
import traceback
from typing import TYPE_CHECKING, Any

from .names import normalize

if TYPE_CHECKING:
    from .hub import Telemetry

__all__ = ["Span"]


class Span:
    """Sync and async context manager; ``as meta`` gives a dict merged into the stop metadata."""

    __slots__ = ("_hub", "_start", "metadata", "parts")

    def __init__(self, hub: Telemetry, prefix: Any, metadata: dict[str, Any] | None = None) -> None:
        self._hub = hub
        self.parts = normalize(prefix)[1]
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._start = 0

    def __enter__(self) -> dict[str, Any]:
        self._start = time.monotonic_ns()
        self._hub.emit(
            (*self.parts, "start"), {"monotonic_time": self._start, "system_time": time.time_ns()}, dict(self.metadata)
        )
        return self.metadata

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        end = time.monotonic_ns()
        m = {"duration": end - self._start, "monotonic_time": end}
        if exc_type is None:
            self._hub.emit((*self.parts, "stop"), m, self.metadata)
        else:
            md = dict(self.metadata)
            md["kind"] = exc_type.__name__
            md["reason"] = str(exc)
            md["stacktrace"] = "".join(traceback.format_exception(exc_type, exc, tb, limit=20))
            self._hub.emit((*self.parts, "exception"), m, md)
        # returning None re-raises the user's exception unchanged

    async def __aenter__(self) -> dict[str, Any]:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)
