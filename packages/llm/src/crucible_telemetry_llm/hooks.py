"""Counting HTTP attempts (retries) and reading HTTP status through the client's httpx event hooks.

The openai client retries 429/5xx/timeouts inside ``create``; every attempt goes through its httpx
client's ``request`` hook, and every answer through its ``response`` hook. The call in flight is
found through a context variable, so a shared httpx client serves several instrumented clients.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from contextvars import ContextVar
from typing import Any

__all__ = ["CURRENT", "attach", "detach"]

#: The call whose request is being sent in this context (None outside an instrumented call).
CURRENT: ContextVar[Any] = ContextVar("crucible_llm_call", default=None)


def on_request(request: Any) -> None:
    call = CURRENT.get()
    if call is not None:
        call.on_attempt()


def on_response(response: Any) -> None:
    call = CURRENT.get()
    if call is not None:
        call.on_response(response)


async def aon_request(request: Any) -> None:
    call = CURRENT.get()
    if call is not None:
        call.on_attempt()


async def aon_response(response: Any) -> None:
    call = CURRENT.get()
    if call is not None:
        call.on_response(response)


_lock = threading.Lock()
_users: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def http_client_of(client: Any) -> Any:
    """The httpx-style client under an OpenAI-style client, or None."""
    http = getattr(client, "_client", None)
    hooks = getattr(http, "event_hooks", None)
    if isinstance(hooks, dict) and isinstance(hooks.get("request"), list) and isinstance(hooks.get("response"), list):
        return http
    return None


def _pair(http: Any) -> tuple[Any, Any]:
    is_async = inspect.iscoroutinefunction(getattr(type(http), "send", None))
    return (aon_request, aon_response) if is_async else (on_request, on_response)


def attach(client: Any) -> Any:
    """Add our hooks to the client's httpx client (once per httpx client); returns it or None."""
    http = http_client_of(client)
    if http is None:
        return None
    req, resp = _pair(http)
    with _lock:
        hooks = http.event_hooks  # the live dict: httpx reads these lists on every send
        if req not in hooks["request"]:
            hooks["request"].append(req)
        if resp not in hooks["response"]:
            hooks["response"].append(resp)
        try:
            _users[http] = _users.get(http, 0) + 1
        except TypeError:
            pass
    return http


def detach(http: Any) -> None:
    """Remove our hooks once the last instrumented client using ``http`` is uninstrumented."""
    if http is None:
        return
    with _lock:
        try:
            left = _users.get(http, 1) - 1
            if left > 0:
                _users[http] = left
                return
            _users.pop(http, None)
        except TypeError:
            pass
        hooks = http.event_hooks
        for kind, fns in (("request", (on_request, aon_request)), ("response", (on_response, aon_response))):
            lst = hooks.get(kind)
            if isinstance(lst, list):
                lst[:] = [f for f in lst if f not in fns]
