"""The built-in adapters, registered as an ordinary plugin (dogfooding the hooks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .hookspecs import hookimpl
from ..storage.metrics_store import DuckDBMetrics, JSONLMetrics


@hookimpl
def register_metrics_adapters(register: Callable[..., Any]) -> None:
    """``jsonl`` and ``duckdb``."""
    register("jsonl", JSONLMetrics)
    register("duckdb", DuckDBMetrics)
