"""OpenTelemetry both ways: LLM calls out as OTLP GenAI spans, GenAI spans in as ``req_llm.request.*`` events.

Needs the ``otel`` extra (``pip install 'crucible-telemetry[otel]'``); the core imports without it,
and these names load OpenTelemetry only when used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CrucibleSpanExporter", "Follower", "OTLPResult", "export_otlp", "follow"]


def __getattr__(name: str) -> Any:
    if name == "CrucibleSpanExporter":
        from .ingest import CrucibleSpanExporter

        return CrucibleSpanExporter
    if name in ("Follower", "OTLPResult", "export_otlp", "follow"):
        from . import export

        return getattr(export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
