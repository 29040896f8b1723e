"""Reading requests and answers of the OpenAI wire format (objects or plain dicts) without copying them."""

from __future__ import annotations

from typing import Any

__all__ = ["OTEL_OPERATION", "fields", "get", "output_text", "request_attributes", "text_length", "usage_numbers"]

#: ``operation`` -> OpenTelemetry ``gen_ai.operation.name``.
OTEL_OPERATION = {"chat": "chat", "completions": "text_completion", "responses": "chat", "embeddings": "embeddings"}

# (keyword argument, gen_ai attribute), recorded when the user passed a plain value.
_REQUEST_ATTRS = (
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("max_output_tokens", "gen_ai.request.max_tokens"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("seed", "gen_ai.request.seed"),
    ("service_tier", "openai.request.service_tier"),
    ("dimensions", "gen_ai.embeddings.dimension.count"),
)
_PLAIN = (int, float, str, bool)


_MISSING = object()


def get(obj: Any, key: str) -> Any:
    """``obj.key`` or ``obj[key]`` (dict answers of OpenAI-compatible clients); None when absent.

    Pydantic models answer from their ``__dict__`` (and extras): probing a missing field through
    ``getattr`` would raise and catch an AttributeError inside ``__getattr__``, slow on the hot path.
    """
    if obj is None:
        return None
    if type(obj) is dict:
        return obj.get(key)
    d = getattr(obj, "__dict__", None)
    if d is not None:
        v = d.get(key, _MISSING)
        if v is not _MISSING:
            return v
        if not hasattr(type(obj), key):
            extra = getattr(obj, "__pydantic_extra__", None)
            return extra.get(key) if type(extra) is dict else None
    return getattr(obj, key, None)


def request_attributes(kwargs: dict[str, Any], meta: dict[str, Any]) -> None:
    """Add the ``gen_ai.request.*`` attributes of the call's keyword arguments to ``meta``."""
    for key, attr in _REQUEST_ATTRS:
        v = kwargs.get(key)
        if v is not None and type(v) in _PLAIN:
            meta[attr] = v
    stop = kwargs.get("stop")
    if type(stop) is str:
        meta["gen_ai.request.stop_sequences"] = [stop]
    elif type(stop) is list:
        meta["gen_ai.request.stop_sequences"] = [s for s in stop if type(s) is str]
    n = kwargs.get("n")
    if type(n) is int and n != 1:
        meta["gen_ai.request.choice.count"] = n
    fmt = kwargs.get("response_format")
    if type(fmt) is dict and type(fmt.get("type")) is str:
        meta["gen_ai.output.type"] = "json" if fmt["type"] in ("json_object", "json_schema") else fmt["type"]
    enc = kwargs.get("encoding_format")
    if type(enc) is str:
        meta["gen_ai.request.encoding_formats"] = [enc]


_EMPTY: dict[str, Any] = {}


def fields(obj: Any) -> dict[str, Any]:
    """The field values of an answer object as a dict: pydantic models keep them in ``__dict__``."""
    if type(obj) is dict:
        return obj
    d = getattr(obj, "__dict__", None)
    return d if type(d) is dict else _EMPTY


def usage_numbers(usage: Any) -> tuple[int | None, int | None, int | None, int | None, int | None]:
    """``(prompt, completion, total, cached, reasoning)`` tokens of a chat/completions/responses/embeddings usage."""
    u = fields(usage)
    p = u.get("prompt_tokens")
    if p is None:  # the responses API names them input/output
        p = u.get("input_tokens")
        c = u.get("output_tokens")
        details = u.get("input_tokens_details")
        out_details = u.get("output_tokens_details")
    else:
        c = u.get("completion_tokens")
        details = u.get("prompt_tokens_details")
        out_details = u.get("completion_tokens_details")
    cached = fields(details).get("cached_tokens") if details is not None else None
    reasoning = fields(out_details).get("reasoning_tokens") if out_details is not None else None
    return _int(p), _int(c), _int(u.get("total_tokens")), _int(cached), _int(reasoning)


def _int(v: Any) -> int | None:
    return v if type(v) is int else (int(v) if isinstance(v, float) and v == v else None)


def finish_reasons(op: str, result: dict[str, Any]) -> list[str]:
    """Finish reason of each choice (chat, completions), or the response status (responses); ``result`` as fields."""
    if op == "responses":
        details = result.get("incomplete_details")
        reason = fields(details).get("reason") if details is not None else result.get("status")
        return [reason] if isinstance(reason, str) else []
    out = []
    for c in result.get("choices") or ():
        fr = fields(c).get("finish_reason")
        if isinstance(fr, str):
            out.append(fr)
    return out


def output_text(op: str, result: Any) -> str:
    """The generated text of a non-streamed answer (for capture and for estimating tokens)."""
    if op == "chat":
        parts = []
        for c in get(result, "choices") or ():
            msg = get(c, "message")
            content = get(msg, "content")
            if isinstance(content, str):
                parts.append(content)
            for tc in get(msg, "tool_calls") or ():
                args = get(get(tc, "function"), "arguments")
                if isinstance(args, str):
                    parts.append(args)
        return "".join(parts)
    if op == "completions":
        return "".join(t for c in get(result, "choices") or () if isinstance(t := get(c, "text"), str))
    if op == "responses":
        parts = []
        for item in get(result, "output") or ():
            for content in get(item, "content") or ():
                text = get(content, "text")
                if isinstance(text, str):
                    parts.append(text)
            args = get(item, "arguments")
            if isinstance(args, str):
                parts.append(args)
        return "".join(parts)
    return ""


def text_length(value: Any) -> int:
    """Characters of text in a prompt (messages, content parts, strings, lists of strings)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(text_length(value.get(k)) for k in ("content", "text", "input") if k in value)
    if isinstance(value, (list, tuple)):
        return sum(text_length(v) for v in value)
    return 0


def prompt_length(op: str, kwargs: dict[str, Any]) -> int:
    """Characters of the prompt of a call."""
    if op == "chat":
        return text_length(kwargs.get("messages"))
    if op == "completions":
        return text_length(kwargs.get("prompt"))
    n = text_length(kwargs.get("input"))
    return n + text_length(kwargs.get("instructions")) if op == "responses" else n


def estimate_tokens(chars: int) -> int:
    """About four characters per token (OpenAI's rule of thumb for English); used only without usage."""
    return (chars + 3) // 4
