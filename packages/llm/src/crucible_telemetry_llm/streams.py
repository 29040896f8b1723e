"""Stream wrappers: the same chunks, unchanged, with time to first token and ``stop`` at the end.

The wrapper passes for the wrapped stream (``isinstance(s, openai.Stream)`` holds, unknown
attributes are forwarded). ``stop`` is emitted when the stream is exhausted or closed (``close()``,
``with``), ``exception`` when it fails mid-way; a stream dropped unfinished stops when collected.

Per chunk the user's loop pays only for a generator step, a timestamp and an append (and, when we
asked for usage, the usage-only chunk test): ``Call.read_chunks`` reads the kept chunks at the end.
"""

from __future__ import annotations

import atexit
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from .privacy import warn_once

if TYPE_CHECKING:
    from .call import Call

__all__ = ["BATCH", "InstrumentedAsyncStream", "InstrumentedStream", "wrap_stream"]

#: Chunks kept (with their arrival time) before the call reads them: bounds what a long stream holds.
BATCH = 256

_now = time.monotonic_ns
_END = object()

# Streams not ended yet: weak reference to the chunk generator -> its call. The callback of the
# reference ends the call as "abandoned" when the generator is collected unfinished (by whoever held
# it last: the wrapper or ``iter(wrapper)``). A plain dict entry costs less than ``weakref.finalize``;
# held here, the reference outlives the generator even in a collected cycle. Cleared at exit (no
# events from interpreter shutdown).
_open: dict[weakref.ref[Any], Call] = {}
atexit.register(_open.clear)


def _abandoned(ref: weakref.ref[Any]) -> None:
    """Weak reference callback: the chunk generator was collected before its stream ended."""
    try:
        call = _open.pop(ref, None)
        if call is not None:
            call.end_stream("abandoned")
    except Exception:  # late in interpreter shutdown: nothing left to record to
        pass


def _track(it: Any, call: Call) -> weakref.ref[Any]:
    """Watch a chunk generator: collected before its stream ended, it ends the call as abandoned."""
    ref = weakref.ref(it, _abandoned)
    _open[ref] = call
    return ref


def _ended(ref: weakref.ref[Any], call: Call, state: str) -> None:
    """The stream ended (``completed`` or ``closed``): ``stop``, once."""
    _open.pop(ref, None)
    call.end_stream(state)


def _failed(ref: weakref.ref[Any], call: Call, exc: BaseException) -> None:
    """The stream raised mid-way: ``exception``, once."""
    _open.pop(ref, None)
    call.fail(exc)


def _usage_only(chunk: Any) -> bool:
    """The usage-only chunk we asked for (no choices): hidden from the user. Never raises."""
    try:
        if type(chunk) is dict:
            return chunk.get("usage") is not None and not chunk.get("choices")
        return getattr(chunk, "usage", None) is not None and not getattr(chunk, "choices", None)
    except Exception as exc:
        warn_once("observe", "could not read a streamed chunk", exc)
        return False


def _chunks(stream: Any, call: Call) -> tuple[Iterator[Any], weakref.ref[Any]]:
    """The chunks of a sync stream, each kept as ``(arrival ns, chunk)``; ``stop`` / ``exception`` at
    its end; ``stop`` (abandoned) when dropped unfinished, by whoever held it last."""
    source = stream if hasattr(type(stream), "__iter__") else iter(stream.__next__, _END)
    seen: list[tuple[int, Any]] = []
    call.seen = seen
    hide = call.hide_usage

    def chunks() -> Iterator[Any]:
        try:
            for chunk in source:
                seen.append((_now(), chunk))
                if len(seen) >= BATCH:
                    call.read_chunks()
                if hide and _usage_only(chunk):
                    continue
                yield chunk
        except GeneratorExit:  # closed or collected unfinished: close() or _abandoned records it
            raise
        except BaseException as exc:
            _failed(ref, call, exc)
            raise
        _ended(ref, call, "completed")

    it = chunks()
    ref = _track(it, call)
    return it, ref


async def _anext_loop(stream: Any) -> AsyncIterator[Any]:
    """An async iterator that only has ``__anext__``."""
    anext_ = stream.__anext__
    while True:
        try:
            chunk = await anext_()
        except StopAsyncIteration:
            return
        yield chunk


def _achunks(stream: Any, call: Call) -> tuple[AsyncIterator[Any], weakref.ref[Any]]:
    """``_chunks`` for an async stream: the same steps, awaited."""
    source = stream if hasattr(type(stream), "__aiter__") else _anext_loop(stream)
    seen: list[tuple[int, Any]] = []
    call.seen = seen
    hide = call.hide_usage

    async def chunks() -> AsyncIterator[Any]:
        try:
            async for chunk in source:
                seen.append((_now(), chunk))
                if len(seen) >= BATCH:
                    call.read_chunks()
                if hide and _usage_only(chunk):
                    continue
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            _failed(ref, call, exc)
            raise
        _ended(ref, call, "completed")

    it = chunks()
    ref = _track(it, call)
    return it, ref


class _Base:
    """What the sync and async wrappers share: the stream, its call, the chunk generator."""

    __slots__ = ("__weakref__", "_call", "_it", "_ref", "_stream")
    _make: Callable[[Any, Call], tuple[Any, weakref.ref[Any]]]  # _chunks or _achunks

    def __init__(self, stream: Any, call: Call) -> None:
        self._stream = stream
        self._call = call
        self._it, self._ref = self._make(stream, call)

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
        _ended(self._ref, self._call, state)


class InstrumentedStream(_Base):
    """Wraps a sync stream (``openai.Stream`` or any iterator of chunks)."""

    __slots__ = ()
    _it: Iterator[Any]
    _make = staticmethod(_chunks)

    def __iter__(self) -> Iterator[Any]:
        return self._it  # a generator: ``for`` and ``list`` step it without a Python call per chunk

    def __next__(self) -> Any:
        return self._it.__next__()

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
    _it: AsyncIterator[Any]
    _make = staticmethod(_achunks)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._it

    def __anext__(self) -> Any:
        return self._it.__anext__()

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
