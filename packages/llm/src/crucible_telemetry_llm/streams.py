"""Stream wrappers: the same chunks, unchanged, with time to first token and ``stop`` at the end.

The wrapper passes for the wrapped stream (``isinstance(s, openai.Stream)`` holds, unknown
attributes are forwarded). ``stop`` is emitted when the stream is exhausted or closed (``close()``,
``with``), ``exception`` when it fails mid-way; a stream dropped unfinished stops when collected.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any

from .privacy import warn_once

if TYPE_CHECKING:
    from .call import Call

__all__ = ["BATCH", "InstrumentedAsyncStream", "InstrumentedStream", "wrap_stream"]

#: Chunks kept (with their arrival time) before the call reads them: bounds what a long stream holds.
BATCH = 256

_now = time.monotonic_ns


def _usage_only(chunk: Any) -> bool:
    """The usage-only chunk we asked for (no choices): hidden from the user. Never raises."""
    try:
        if type(chunk) is dict:
            return chunk.get("usage") is not None and not chunk.get("choices")
        return getattr(chunk, "usage", None) is not None and not getattr(chunk, "choices", None)
    except Exception as exc:
        warn_once("observe", "could not read a streamed chunk", exc)
        return False


class _Base:
    """What the sync and async wrappers share. Per chunk they only keep ``(monotonic ns, chunk)``
    (and, when we asked for usage, look for the usage-only chunk); ``Call.read_chunks`` reads them
    at the end, so the user's loop pays for a timestamp and an append."""

    __slots__ = ("__weakref__", "_call", "_finalizer", "_hide", "_seen", "_stream")

    def __init__(self, stream: Any, call: Call) -> None:
        self._stream = stream
        self._call = call
        self._seen: list[tuple[int, Any]] = []
        call.seen = self._seen
        self._hide = call.hide_usage
        self._finalizer = weakref.finalize(self, call.end_stream, "abandoned")
        self._finalizer.atexit = False

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(wrapper, type(stream)) holds
        return type(self._stream)

    def __getattr__(self, name: str) -> Any:
        if name in _Base.__slots__:
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __repr__(self) -> str:
        return f"<instrumented {self._stream!r}>"

    def _end(self, state: str) -> None:
        self._finalizer.detach()
        self._call.end_stream(state)

    def _fail(self, exc: BaseException) -> None:
        self._finalizer.detach()
        self._call.fail(exc)


class InstrumentedStream(_Base):
    """Wraps a sync stream (``openai.Stream`` or any iterator of chunks)."""

    __slots__ = ()

    def __iter__(self) -> InstrumentedStream:
        return self

    def __next__(self) -> Any:
        seen = self._seen
        while True:
            try:
                chunk = self._stream.__next__()
            except StopIteration:
                self._end("completed")
                raise
            except BaseException as exc:
                self._fail(exc)
                raise
            seen.append((_now(), chunk))
            if len(seen) >= BATCH:
                self._call.read_chunks()
            if not self._hide or not _usage_only(chunk):
                return chunk

    def close(self) -> None:
        """Close the underlying stream (releases the connection) and emit ``stop``."""
        try:
            close = getattr(self._stream, "close", None)
            if close is not None:
                close()
        finally:
            self._end("closed")

    def __enter__(self) -> InstrumentedStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class InstrumentedAsyncStream(_Base):
    """Wraps an async stream (``openai.AsyncStream`` or any async iterator of chunks)."""

    __slots__ = ()

    def __aiter__(self) -> InstrumentedAsyncStream:
        return self

    async def __anext__(self) -> Any:
        seen = self._seen
        while True:
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                self._end("completed")
                raise
            except BaseException as exc:
                self._fail(exc)
                raise
            seen.append((_now(), chunk))
            if len(seen) >= BATCH:
                self._call.read_chunks()
            if not self._hide or not _usage_only(chunk):
                return chunk

    async def close(self) -> None:
        """Close the underlying stream (releases the connection) and emit ``stop``."""
        try:
            close = getattr(self._stream, "close", None)
            if close is not None:
                res = close()
                if hasattr(res, "__await__"):
                    await res
        finally:
            self._end("closed")

    async def __aenter__(self) -> InstrumentedAsyncStream:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def wrap_stream(result: Any, call: Call) -> Any:
    """The wrapper for a streamed result, or None when ``result`` is not a stream (a raw response)."""
    if hasattr(type(result), "__next__"):
        return InstrumentedStream(result, call)
    if hasattr(type(result), "__anext__"):
        return InstrumentedAsyncStream(result, call)
    return None
