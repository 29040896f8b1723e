"""Entry-point module of the llm plugin: declares the events it adds to the standard ``req_llm.request.*``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crucible_telemetry.plugins import hookimpl

#: The plugin's own event (the start/stop/exception names are the core's, ``crucible_telemetry.events``).
RETRY = ("req_llm", "request", "retry")


@hookimpl
def register_events(register: Callable[..., Any]) -> None:
    """``req_llm.request.retry``: one per retried HTTP attempt inside a call (the call's stop counts them too)."""
    register(
        RETRY,
        "llm",
        "An LLM request is retried by the client (after a 429, a 5xx or a timeout).",
        ("model", "operation", "provider", "server_address", "attempt", "retries", "http_status"),
    )
