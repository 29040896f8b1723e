"""What may leave the call: secrets scrubbed from every recorded string, content only on opt-in.

Credentials (the client's API key, ``Authorization``/``Bearer`` values, ``sk-...`` tokens) are
replaced by ``[REDACTED]`` in exception reasons, stack traces, captured content and our log lines.
Prompts and completions are recorded only with ``capture_content=True``, after the user's ``mask``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["REDACTED", "Scrubber", "capture_prompt", "warn_once"]

log = logging.getLogger("crucible_telemetry.llm")

REDACTED = "[REDACTED]"
_PATTERNS = re.compile(
    r"(?i)(bearer\s+)[^\s'\",}]+"  # Authorization: Bearer <token>
    r"|(authorization['\"]?\s*[:=]\s*['\"]?(?:bearer\s+|basic\s+|token\s+)?)[^\s'\",}]+"
    r"|(api[_-]?key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"
    r"|()\bsk-[A-Za-z0-9_\-]{6,}"  # OpenAI-style secret keys
)
_warned: set[str] = set()
FAILURES: list[tuple[str, BaseException]] = []


def _sub(m: re.Match[str]) -> str:
    prefix = next((g for g in m.groups() if g is not None), "")
    return prefix + REDACTED


class Scrubber:
    """Removes the given secrets (read when scrubbing, so a rotated key is covered) and known patterns."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        self._secrets = secrets

    def __call__(self, text: str) -> str:
        if not text:
            return text
        try:
            for s in self._secrets():
                if s and len(s) >= 4 and s in text:
                    text = text.replace(s, REDACTED)
        except Exception:
            pass
        return _PATTERNS.sub(_sub, text)


def scrub_default(text: str) -> str:
    """Pattern-only scrubbing (no client known)."""
    return _PATTERNS.sub(_sub, text) if text else text


def warn_once(key: str, message: str, exc: BaseException | None = None) -> None:
    """Log a telemetry problem once per ``key`` (the message is scrubbed); never raises."""
    try:
        if exc is not None:
            FAILURES.append((key, exc))
            del FAILURES[:-100]
        if key in _warned:
            return
        _warned.add(key)
        detail = f": {type(exc).__name__}: {exc}" if exc is not None else ""
        log.warning("crucible_telemetry_llm: %s%s", message, scrub_default(detail))
    except Exception:
        pass


def _mask_text(text: str, mask: Callable[[str], Any] | None, scrub: Callable[[str], str]) -> str:
    if mask is not None:
        try:
            text = str(mask(text))
        except Exception as exc:
            warn_once("mask", "the mask function raised; content is not recorded", exc)
            return "[mask failed]"
    return scrub(text)


def _content(value: Any, mask: Callable[[str], Any] | None, scrub: Callable[[str], str]) -> Any:
    """Strings masked, lists and content parts walked; anything else becomes its type name."""
    if isinstance(value, str):
        return _mask_text(value, mask, scrub)
    if isinstance(value, (list, tuple)):
        return [_content(v, mask, scrub) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in ("role", "type", "name", "tool_call_id"):
                out[k] = v if isinstance(v, str) else repr(v)
            elif k in ("content", "text", "input", "refusal", "arguments", "output"):
                out[k] = _content(v, mask, scrub)
        return out
    if value is None or isinstance(value, (int, float, bool)):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return _content(dump(), mask, scrub)
        except Exception:
            pass
    return f"<{type(value).__name__}>"


def capture_prompt(
    op: str, kwargs: dict[str, Any], mask: Callable[[str], Any] | None, scrub: Callable[[str], str]
) -> Any:
    """The prompt of a call, masked: chat messages, completion prompt, responses or embeddings input."""
    if op == "chat":
        return _content(kwargs.get("messages"), mask, scrub)
    if op == "completions":
        return _content(kwargs.get("prompt"), mask, scrub)
    if op == "responses":
        parts = []
        if isinstance(kwargs.get("instructions"), str):
            parts.append({"role": "system", "content": _content(kwargs["instructions"], mask, scrub)})
        inp = kwargs.get("input")
        parts.append(
            {"role": "user", "content": _content(inp, mask, scrub)}
            if isinstance(inp, str)
            else _content(inp, mask, scrub)
        )
        return parts
    return _content(kwargs.get("input"), mask, scrub)


def capture_completion(text: str, mask: Callable[[str], Any] | None, scrub: Callable[[str], str]) -> str:
    """The completion text, masked."""
    return _mask_text(text, mask, scrub)
