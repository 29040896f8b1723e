"""Stream wrappers: the same chunks, unchanged, with time to first token and ``stop`` at the end.

The wrapper passes for the wrapped stream (``isinstance(s, openai.Stream)`` holds, unknown
attributes are forwarded). ``stop`` is emitted when the stream is exhausted or closed (``close()``,
``with``), ``exception`` when it fails mid-way; a stream dropped unfinished stops when collected.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from .privacy import warn_once

if TYPE_CHECKING:
    from .call import Call

__all__ = ["InstrumentedAsyncStream", "InstrumentedStream", "wrap_stream"]


class _Base:
    __slots__ = ("__weakref__", "_call", "_finalizer", "_stream")

    def __init__(self, stream: Any, call: Call) -> None:
        self._stream = stream
        self._call = call
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


class InstrumentedStream(_Base):
    """Wraps a sync stream (``openai.Stream`` or any iterator of chunks)."""

    __slots__ = ()

    def __iter__(self) -> InstrumentedStream:
        return self

    def __next__(self) -> Any:
        call = self._call
        while True:
            try:
                chunk = self._stream.__next__()
            except StopIteration:
                self._end("completed")
                raise
            except BaseException as exc:
                self._finalizer.detach()
                call.fail(exc)
                raise
            try:
                if not call.observe(chunk):
                    return chunk
            except Exception as exc:
                warn_once("observe", "could not read a streamed chunk", exc)
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
        call = self._call
        while True:
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                self._end("completed")
                raise
            except BaseException as exc:
                self._finalizer.detach()
                call.fail(exc)
                raise
            try:
                if not call.observe(chunk):
                    return chunk
            except Exception as exc:
                warn_once("observe", "could not read a streamed chunk", exc)
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
