"""The ``stream_options`` rule: when a stream's request gets ``include_usage`` added, and how a refusal is undone.

A stream reports its tokens only when asked (``stream_options: {"include_usage": true}``), but a
strict OpenAI-compatible server or an older Azure api-version rejects the unknown field. So the
body changes only where it is known to be accepted (``ACCEPTS_STREAM_OPTIONS``), or where the user
said ``include_usage=True``; a 400 naming ``stream_options`` is retried once as the user wrote it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ACCEPTS_STREAM_OPTIONS", "MISSING", "RAW_HEADER", "ask", "asks", "names_stream_options", "restore"]

#: Providers whose chat and completions streams accept ``stream_options`` (``include_usage=None``).
ACCEPTS_STREAM_OPTIONS = frozenset({"openai"})
#: The header of ``with_raw_response`` calls: the user reads the bytes, so the request stays theirs.
RAW_HEADER = "x-stainless-raw-response"
#: The call had no ``stream_options`` before ``ask`` added one.
MISSING = object()


def asks(include_usage: bool | None, provider: str, refused: bool) -> bool:
    """Whether to add ``include_usage``: ``None`` for known providers only, ``True`` everywhere; never once refused."""
    if refused or include_usage is False:
        return False
    return include_usage is True or provider in ACCEPTS_STREAM_OPTIONS


def ask(kwargs: dict[str, Any]) -> bool:
    """Add ``stream_options.include_usage`` unless the user said something about it; True when we did."""
    opts = kwargs.get("stream_options")
    headers = kwargs.get("extra_headers")
    if isinstance(headers, dict) and any(str(k).lower() == RAW_HEADER for k in headers):
        return False  # a raw response: the user reads bytes, we must not change them
    if opts is None or type(opts).__name__ in ("NotGiven", "Omit"):  # openai's "not given" sentinels
        kwargs["stream_options"] = {"include_usage": True}
        return True
    if isinstance(opts, dict) and "include_usage" not in opts:
        kwargs["stream_options"] = {**opts, "include_usage": True}
        return True
    return False


def names_stream_options(exc: BaseException) -> bool:
    """A 400 answer whose error names ``stream_options`` (openai's ``BadRequestError`` or alike)."""
    if getattr(exc, "status_code", None) != 400:
        return False
    return "stream_options" in f"{exc} {getattr(exc, 'body', '')}"


def restore(kwargs: dict[str, Any], before: Any) -> None:
    """Put the call's ``stream_options`` back as the user wrote it (``before``: ``MISSING`` when absent)."""
    if before is MISSING:
        kwargs.pop("stream_options", None)
    else:
        kwargs["stream_options"] = before
