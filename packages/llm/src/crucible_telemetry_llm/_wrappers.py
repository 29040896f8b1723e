"""The wrappers ``instrument`` puts in place of a client's methods: start, the call, then stop or exception.

Each wrapper calls straight through once its client is uninstrumented (a wrapper the client cached,
``with_raw_response``, may outlive the patch), and retries once, as the user wrote it, a stream the
server refused because of the ``stream_options`` we added (``Instrumentation.refused_usage``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import hooks

if TYPE_CHECKING:
    from .call import Call
    from .instrumentation import Instrumentation

__all__ = ["async_wrapper", "is_async", "sync_wrapper"]


def sync_wrapper(original: Callable[..., Any], op: str, inst: Instrumentation) -> Callable[..., Any]:
    cur = hooks.CURRENT

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = inst.begin(op, kwargs) if inst.active else None
        if call is None:
            return original(*args, **kwargs)
        token = cur.set(call)
        try:
            try:
                result = original(*args, **kwargs)
            except Exception as exc:
                if not inst.refused_usage(call, kwargs, exc):
                    raise
                result = original(*args, **kwargs)  # once more, as the user wrote it
        except BaseException as exc:
            cur.reset(token)
            call.fail(exc)
            raise
        cur.reset(token)
        if hasattr(type(result), "__await__"):  # a sync-looking method of an async client
            return _finish_later(result, call)
        return call.finish(result)

    return wrapper


async def _finish_later(awaitable: Any, call: Call) -> Any:
    """A sync-looking method that returned an awaitable: the request is sent when it is awaited."""
    token = hooks.CURRENT.set(call)
    try:
        result = await awaitable
    except BaseException as exc:
        hooks.CURRENT.reset(token)
        call.fail(exc)
        raise
    hooks.CURRENT.reset(token)
    return call.finish(result)


def is_async(fn: Any) -> bool:
    """``async def``, also under decorators that keep ``__wrapped__`` (openai's ``required_args``)."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(inspect.unwrap(fn))


def async_wrapper(original: Callable[..., Any], op: str, inst: Instrumentation) -> Callable[..., Any]:
    cur = hooks.CURRENT

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = inst.begin(op, kwargs) if inst.active else None
        if call is None:
            return await original(*args, **kwargs)
        token = cur.set(call)
        try:
            try:
                result = await original(*args, **kwargs)
            except Exception as exc:
                if not inst.refused_usage(call, kwargs, exc):
                    raise
                result = await original(*args, **kwargs)  # once more, as the user wrote it
        except BaseException as exc:
            cur.reset(token)
            call.fail(exc)
            raise
        cur.reset(token)
        return call.finish(result)

    return wrapper
