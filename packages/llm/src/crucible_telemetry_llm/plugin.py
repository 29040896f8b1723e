"""Entry-point module of the llm plugin: registers its events with the core."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crucible_telemetry.hookspecs import hookimpl


@hookimpl
def register_events(register: Callable[..., Any]) -> None:
    """Events specific to this plugin (the standard ones are in the core registry)."""
