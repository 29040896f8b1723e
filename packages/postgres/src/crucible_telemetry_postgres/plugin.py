"""Entry-point module of the postgres plugin: registers the ``postgres`` MetricsStore adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crucible_telemetry.plugins import hookimpl

from .adapter import PostgresMetrics


@hookimpl
def register_metrics_adapters(register: Callable[..., Any]) -> None:
    """``MetricsStore.record(("postgres", {"dsn": ...}), ...)`` builds a ``PostgresMetrics``."""
    register("postgres", PostgresMetrics)
