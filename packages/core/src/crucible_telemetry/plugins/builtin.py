"""The built-in plugin: standard events, export formats, MetricsStore adapters and CLI commands.

Registered through the same hooks as any outside plugin (dogfooding them), so a third party
can do everything the core does for itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..events import BUILTIN_EVENTS, STANDARD_EVENTS
from .hookspecs import hookimpl


@hookimpl
def register_events(register: Callable[..., Any]) -> None:
    """The seed tables' events, and the two training events every trainer plugin emits."""
    for e in (*STANDARD_EVENTS, *BUILTIN_EVENTS):
        register(e.name, e.category, e.description, e.enriched_fields)


@hookimpl
def register_metrics_adapters(register: Callable[..., Any]) -> None:
    """``jsonl`` and ``duckdb``."""
    from ..storage.metrics_store import DuckDBMetrics, JSONLMetrics

    register("jsonl", JSONLMetrics)
    register("duckdb", DuckDBMetrics)


@hookimpl
def register_exporters(register: Callable[..., Any]) -> None:
    """``csv``, ``jsonl`` and ``parquet``, streamed in time slices."""
    from ..storage.export import write_csv, write_jsonl, write_parquet

    register("csv", write_csv)
    register("jsonl", write_jsonl)
    register("parquet", write_parquet)


@hookimpl
def register_commands(register: Callable[..., Any]) -> None:
    """``runs``, ``show``, ``metrics``, ``compare``, ``plot``, ``report``, ``sql``, ``export``, ``prune``, ``serve``,
    ``rename``, ``note``, ``tag``, ``watch``, ``import``, ``ui``."""
    from ..cli import analyze, data, edit, importing, look, otlp, publish, watch
    from ..cli import ui as ui_command

    look.register(register)
    edit.register(register)
    analyze.register(register)
    data.register(register)
    watch.register(register)
    importing.register(register)
    ui_command.register(register)
    otlp.register(register)
    publish.register(register)
