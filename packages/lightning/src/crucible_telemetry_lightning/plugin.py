"""Entry-point module of the Lightning plugin: registers the events it emits beyond the standard set.

Kept free of Lightning imports: the core loads every plugin module when it builds its tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crucible_telemetry.hookspecs import hookimpl

#: Events this plugin adds to the registry (name, category, description, enriched fields).
EVENTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("crucible_train.validation.stop", "training",
     "A validation run ended; its metrics as val_<name>.", ("duration", "epoch", "global_step")),
    ("crucible_train.training.exception", "training",
     "A training run failed; kind, reason and stacktrace of the exception.",
     ("duration", "epoch", "global_step", "kind", "reason", "stacktrace")),
)


@hookimpl
def register_events(register: Callable[..., Any]) -> None:
    """Add ``crucible_train.validation.stop`` and ``crucible_train.training.exception``."""
    for name, category, description, fields in EVENTS:
        register(name, category, description, fields)
