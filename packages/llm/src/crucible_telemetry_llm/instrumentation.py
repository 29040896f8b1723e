"""``instrument(client)`` / ``uninstrument(client)``: wrap an OpenAI-style client's endpoints in place.

Only the given client object changes (instance attributes shadow the class's methods), so other
clients are untouched; ``uninstrument`` deletes those attributes and restores the client exactly,
and a wrapper built while instrumented (``with_raw_response``, cached by the client) stops
recording. Streams get ``stream_options.include_usage`` only where the server is known to take
it (``ACCEPTS_STREAM_OPTIONS``) or ``include_usage=True`` says so; a 400 naming ``stream_options``
is retried once without it, and that client asks no more (the rule is ``usage``'s).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import crucible_telemetry as ct
from crucible_telemetry import InvalidArgumentError
from crucible_telemetry.events import LLM_START

from . import hooks, usage
from . import prices as price_tables
from ._wrappers import async_wrapper, is_async, sync_wrapper
from .call import Call
from .extract import OTEL_OPERATION, request_attributes
from .privacy import Scrubber, capture_prompt, warn_once

__all__ = ["ACCEPTS_STREAM_OPTIONS", "Instrumentation", "instrument", "is_instrumented", "uninstrument"]

ACCEPTS_STREAM_OPTIONS = usage.ACCEPTS_STREAM_OPTIONS

STATE_ATTR = "_crucible_llm"

# (attribute path from the client, methods wrapped, operation)
ENDPOINTS: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (("chat", "completions"), ("create", "parse"), "chat"),
    (("completions",), ("create",), "completions"),
    (("responses",), ("create", "parse"), "responses"),
    (("embeddings",), ("create",), "embeddings"),
)

# host suffix -> OpenTelemetry gen_ai.provider.name
_PROVIDERS = (
    ("api.openai.com", "openai"),
    (".openai.azure.com", "azure.ai.openai"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("api.groq.com", "groq"),
    ("api.deepseek.com", "deepseek"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.cohere.com", "cohere"),
    ("openrouter.ai", "openrouter"),
    ("api.together.xyz", "together_ai"),
    ("api.fireworks.ai", "fireworks_ai"),
)
_SECRET_ATTRS = ("api_key", "admin_api_key", "webhook_secret", "_api_key", "token")
# What an openai client caches from the methods it wraps: emptied again by uninstrument.
_CACHED = ("with_raw_response", "with_streaming_response")


def server_of(client: Any) -> tuple[str | None, int | None]:
    """Host and port of the client's base URL (never its path, query or credentials)."""
    base = getattr(client, "base_url", None)
    if base is None:
        return None, None
    try:
        parts = urlsplit(str(base))
        return parts.hostname, parts.port
    except ValueError:
        return None, None


def provider_of(host: str | None) -> str:
    """The provider behind a host, by OpenTelemetry's ``gen_ai.provider.name`` values."""
    if host:
        h = host.lower()
        for suffix, name in _PROVIDERS:
            bare = suffix.lstrip(".")
            if h == bare or h.endswith("." + bare) or h.endswith("-" + bare):  # regional hosts: us-east-...
                return name
    return "openai_compatible"


class Instrumentation:
    """What ``instrument`` changed on one client, and the options its calls are recorded with."""

    def __init__(
        self,
        client: Any,
        *,
        capture_content: bool,
        mask: Callable[[str], Any] | None,
        prices_: price_tables.PriceTable | None,
        include_usage: bool | None,
        provider: str | None,
        hub: Any,
    ) -> None:
        self.capture_content = capture_content
        self.mask = mask
        self.include_usage = include_usage
        self.active = True  # False once uninstrumented: wrappers still held somewhere call straight through
        self.usage_refused = False  # the server answered 400 to stream_options: ask no more
        self.hub = hub
        self._prices = prices_
        self.options = {
            "capture_content": capture_content,
            "mask": mask,
            "prices": prices_,
            "include_usage": include_usage,
            "provider": provider,
            "hub": hub,
        }
        try:
            ref: Callable[[], Any] = weakref.ref(client)
        except TypeError:  # a client class without weak references
            ref = functools.partial(lambda c: c, client)
        self.scrub = Scrubber(lambda: _secrets(ref()))
        host, port = server_of(client)
        name = provider or provider_of(host)
        base: dict[str, Any] = {"provider": name, "gen_ai.provider.name": name}
        if host:
            base["server_address"] = host
            base["server.address"] = host
        if port:
            base["server_port"] = port
            base["server.port"] = port
        self.base = base
        self.provider = name
        self.host = host  # the start event carries the standard keys only (the stop event has them all)
        self.patches: list[tuple[Any, str, bool, Any]] = []
        self.populated: list[tuple[Any, str]] = []
        self.caches: list[tuple[Any, frozenset[str]]] = []  # objects and the _CACHED names they held before
        self.http: Any = None

    def asks_usage(self) -> bool:
        """Whether a stream of this client gets ``stream_options.include_usage`` added (see ``usage``)."""
        return usage.asks(self.include_usage, self.provider, self.usage_refused)

    def refused_usage(self, call: Call, kwargs: dict[str, Any], exc: BaseException) -> bool:
        """``exc`` is the server refusing the ``stream_options`` we added: restore the request, True to retry."""
        if not call.hide_usage or not usage.names_stream_options(exc):
            return False
        self.usage_refused = True
        call.hide_usage = False
        usage.restore(kwargs, call.stream_options_before)
        return True

    def prices(self) -> price_tables.PriceTable:
        """The client's own table, or the process-wide one at the time of the call."""
        return self._prices if self._prices is not None else price_tables.get_prices()

    # ----------------------------------------------------------------- calls

    def begin(self, op: str, kwargs: dict[str, Any]) -> Call | None:
        """Emit ``start`` and return the call's record; None if telemetry itself failed."""
        try:
            hub = self.hub if self.hub is not None else ct.default()
            model = kwargs.get("model")
            stream = kwargs.get("stream") is True
            otel = OTEL_OPERATION[op]
            if not isinstance(model, str):
                model = None
            start: dict[str, Any] = {
                "model": model,
                "operation": op,
                "provider": self.provider,
                "server_address": self.host,
                "gen_ai.operation.name": otel,
                "gen_ai.request.model": model,
            }
            meta = {
                **self.base,
                "model": model,
                "operation": op,
                "gen_ai.operation.name": otel,
                "gen_ai.request.model": model,
            }
            if stream:
                start["stream"] = meta["stream"] = True
            if len(kwargs) > 2:  # beyond model + prompt: sampling options to record
                request_attributes(kwargs, meta)
            call = Call(self, hub, op, kwargs, meta, stream)
            if stream:
                call.exp = hub.current_experiment()
                if self.capture_content:
                    call.parts = []
            if self.capture_content:
                call.prompt = capture_prompt(op, kwargs, self.mask, self.scrub)
            hub.emit(LLM_START, {"monotonic_time": call.t0}, start)
            if stream and op in ("chat", "completions") and self.asks_usage():
                # last: a failed start leaves the call as the user wrote it
                call.stream_options_before = kwargs.get("stream_options", usage.MISSING)
                call.hide_usage = usage.ask(kwargs)
            return call
        except Exception as exc:
            warn_once("begin", "could not record the start of an LLM call", exc)
            return None


def _secrets(client: Any) -> Iterator[str]:
    if client is None:
        return
    for attr in _SECRET_ATTRS:
        try:
            v = client.__dict__.get(attr)
            if v is None:
                v = getattr(client, attr, None)
        except Exception:
            continue
        if isinstance(v, str) and v:
            yield v


def _patch(inst: Instrumentation, obj: Any, name: str, new: Any) -> None:
    own = vars(obj)
    had = name in own
    inst.patches.append((obj, name, had, own.get(name)))
    setattr(obj, name, new)


def _note_caches(inst: Instrumentation, obj: Any) -> None:
    own = getattr(obj, "__dict__", None)
    if own is not None and all(o is not obj for o, _ in inst.caches):
        inst.caches.append((obj, frozenset(n for n in _CACHED if n in own)))


def _resource(inst: Instrumentation, client: Any, path: tuple[str, ...]) -> Any:
    obj = client
    _note_caches(inst, obj)
    for attr in path:
        try:
            before = attr in vars(obj)
        except TypeError:
            before = True
        try:
            nxt = getattr(obj, attr)
        except Exception:
            return None
        if not before and attr in getattr(obj, "__dict__", {}):
            inst.populated.append((obj, attr))  # a cached_property we filled: emptied again on uninstrument
        obj = nxt
        _note_caches(inst, obj)
    return obj


def instrument(
    client: Any,
    *,
    capture_content: bool = False,
    mask: Callable[[str], Any] | None = None,
    prices: Any = None,
    include_usage: bool | None = None,
    provider: str | None = None,
    hub: Any = None,
) -> Any:
    """Record every call of an OpenAI-style client as ``req_llm.request.*`` events; returns the client.

    Wraps ``chat.completions.create/parse``, ``completions.create``, ``responses.create/parse`` and
    ``embeddings.create`` of this client object, sync or async, streamed or not. Calling it twice
    changes nothing (the first options stay; ``uninstrument`` first to change them).

    Args:
        client: ``openai.OpenAI``, ``openai.AsyncOpenAI`` or any object with those endpoints.
        capture_content: record prompts and completions (off by default).
        mask: ``fn(text) -> text`` run on every prompt and completion string before it is recorded.
        prices: a ``{model: price}`` dict, a JSON file path or a ``PriceTable`` for this client
            (laid over the built-in table); default: the process-wide table (``set_prices``).
        include_usage: add ``stream_options: {"include_usage": true}`` to chat and completions
            streams whose call says nothing about it, so streams report their tokens (the
            usage-only chunk is then consumed and not shown to the caller). ``None`` (default):
            only for providers known to accept it (``ACCEPTS_STREAM_OPTIONS``: api.openai.com),
            since a strict compatible server or an older Azure api-version rejects the unknown
            field; elsewhere tokens are estimated. ``True``: for every server. ``False``: never.
            Either way a 400 naming ``stream_options`` is retried once as the user wrote the call,
            and the client stops adding it.
        provider: the provider name recorded (default: from the base URL's host).
        hub: a ``crucible_telemetry.Telemetry`` (default: the default hub at each call).

    Example:
        >>> client = instrument(OpenAI(base_url=server.url, api_key="sk-test"))  # doctest: +SKIP
        >>> client.chat.completions.create(model="gpt-4o-mini", messages=[...])   # doctest: +SKIP
    """
    if client is None or isinstance(client, (str, bytes, int, float)):
        raise InvalidArgumentError("client", f"expected an OpenAI-style client, got {type(client).__name__}")
    if not isinstance(capture_content, bool):
        raise InvalidArgumentError("capture_content", "expected True or False")
    if mask is not None and not callable(mask):
        raise InvalidArgumentError("mask", f"expected a function text -> text, got {type(mask).__name__}")
    if include_usage is not None and not isinstance(include_usage, bool):
        raise InvalidArgumentError("include_usage", f"expected True, False or None, got {include_usage!r}")
    if provider is not None and (not isinstance(provider, str) or not provider):
        raise InvalidArgumentError("provider", "expected a non-empty string")
    if hub is not None and not isinstance(hub, ct.Telemetry):
        raise InvalidArgumentError("hub", f"expected a crucible_telemetry.Telemetry, got {type(hub).__name__}")
    if getattr(client, "__dict__", None) is None:
        raise InvalidArgumentError("client", f"{type(client).__name__} objects cannot be instrumented (no __dict__)")
    if STATE_ATTR in vars(client):
        return client
    table = price_tables.resolve(prices) if prices is not None else None
    inst = Instrumentation(
        client,
        capture_content=capture_content,
        mask=mask,
        prices_=table,
        include_usage=include_usage,
        provider=provider,
        hub=hub,
    )
    try:
        for path, methods, op in ENDPOINTS:
            res = _resource(inst, client, path)
            if res is None or getattr(res, "__dict__", None) is None:
                continue
            for name in methods:
                fn = getattr(res, name, None)
                if not callable(fn):
                    continue
                make = async_wrapper if is_async(fn) else sync_wrapper
                _patch(inst, res, name, make(fn, op, inst))
        if not inst.patches:
            raise InvalidArgumentError(
                "client",
                f"{type(client).__name__} has no OpenAI-style endpoint "
                "(chat.completions.create, completions.create, responses.create, embeddings.create)",
            )
        for name in ("copy", "with_options"):
            fn = getattr(client, name, None)
            if callable(fn):
                _patch(inst, client, name, _copying(fn, inst))
        inst.http = hooks.attach(client)
    except BaseException:
        _restore(client, inst)
        raise
    setattr(client, STATE_ATTR, inst)
    return client


def _copying(original: Callable[..., Any], inst: Instrumentation) -> Callable[..., Any]:
    """``client.with_options(...)`` / ``copy()`` return a new client: instrument it the same way."""

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        new = original(*args, **kwargs)
        try:
            opts = dict(inst.options)
            table = opts.pop("prices")
            instrument(new, **opts)
            new_inst = vars(new).get(STATE_ATTR)
            if new_inst is not None:
                new_inst._prices = table
        except Exception as exc:
            warn_once("copy", "could not instrument a copied client", exc)
        return new

    return wrapper


def _restore(client: Any, inst: Instrumentation) -> None:
    for obj, name, had, old in reversed(inst.patches):
        if had:
            setattr(obj, name, old)
        else:
            try:
                delattr(obj, name)
            except AttributeError:
                pass
    inst.patches.clear()
    for obj, attr in reversed(inst.populated):
        vars(obj).pop(attr, None)
    inst.populated.clear()
    for obj, before in inst.caches:  # wrappers the client cached around our methods
        own = vars(obj)
        for name in _CACHED:
            if name not in before:
                own.pop(name, None)
    inst.caches.clear()
    hooks.detach(inst.http)
    inst.http = None


def uninstrument(client: Any) -> Any:
    """Undo ``instrument``: the client's attributes and its httpx hooks are as before; returns the client."""
    own = getattr(client, "__dict__", None)
    inst = own.pop(STATE_ATTR, None) if own is not None else None
    if inst is not None:
        inst.active = False
        _restore(client, inst)
    return client


def is_instrumented(client: Any) -> bool:
    """Whether ``instrument`` is in effect on this client."""
    own = getattr(client, "__dict__", None)
    return own is not None and STATE_ATTR in own
