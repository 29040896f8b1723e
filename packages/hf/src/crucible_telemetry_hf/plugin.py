"""Entry-point module of the hf plugin: registers the events it adds to the standard set."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crucible_telemetry.hookspecs import hookimpl

__all__ = ["EXCEPTION", "VALIDATION_STOP", "register_events"]

VALIDATION_STOP = ("crucible_train", "validation", "stop")
EXCEPTION = ("crucible_train", "training", "exception")


@hookimpl
def register_events(register: Callable[..., Any]) -> None:
    """``crucible_train.validation.stop`` (evaluation results) and ``crucible_train.training.exception``."""
    # Word for word what the Lightning plugin registers: whichever loads last, the registry reads the same.
    register(VALIDATION_STOP, "training", "A validation run ended; its metrics as val_<name>.",
             ("duration", "epoch", "global_step"))
    register(EXCEPTION, "training", "A training run failed; kind, reason and stacktrace of the exception.",
             ("duration", "epoch", "global_step", "kind", "reason", "stacktrace"))
