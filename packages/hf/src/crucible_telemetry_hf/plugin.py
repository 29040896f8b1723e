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
    register(
        VALIDATION_STOP,
        "training",
        "An evaluation pass ends; its metrics as val_<name> (val_loss, ...).",
        enriched_fields=("duration", "val_loss", "epoch", "global_step"),
    )
    register(
        EXCEPTION,
        "training",
        "A training run failed; the error's kind, reason and stacktrace.",
        enriched_fields=("kind", "reason", "stacktrace", "epoch", "global_step"),
    )
