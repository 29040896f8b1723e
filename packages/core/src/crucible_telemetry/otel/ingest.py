"""``CrucibleSpanExporter``: an OTel SDK ``SpanExporter`` that records GenAI spans as ``req_llm.request.*`` events.

Spans of any GenAI instrumentation (the official ``opentelemetry-instrumentation-openai-v2``, OpenLLMetry's
``llm.*`` attributes, OpenInference's ``llm.token_count.*``; semantic conventions old and new) become the
events ``instrument(client)`` records, with the same fields, priced by the llm plugin's table when it is
installed. Other spans become ``otel.span`` events, or are dropped (``other_spans="drop"``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..events import LLM_EXCEPTION, LLM_STOP

__all__ = ["OTHER_SPAN", "CrucibleSpanExporter", "llm_fields"]

OTHER_SPAN = ("otel", "span")
#: ``gen_ai.operation.name`` (and OpenLLMetry's ``llm.request.type``) -> the wrapper's ``operation``.
_OPERATIONS = {
    "chat": "chat",
    "text_completion": "completions",
    "completion": "completions",
    "embeddings": "embeddings",
    "embedding": "embeddings",
    "generate_content": "chat",
    "responses": "responses",
}
_MARKERS = ("gen_ai.operation.name", "gen_ai.system", "gen_ai.provider.name", "llm.request.type", "llm.model_name")


def _first(a: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        v = a.get(k)
        if v is not None:
            return v
    return None


def _int(v: Any) -> int | None:
    try:
        return None if v is None or isinstance(v, bool) else int(v)
    except (TypeError, ValueError):
        return None


def _is_genai(a: Mapping[str, Any]) -> bool:
    return any(k in a for k in _MARKERS) or a.get("openinference.span.kind") in ("LLM", "EMBEDDING")


def _price(
    model: Any, provider: Any, prompt: int, completion: int, cached: int
) -> tuple[float | None, str, str | None]:
    """``(cost, cost_source, price_table_version)`` from the llm plugin's table; unknown without it."""
    try:
        from crucible_telemetry_llm.prices import get_prices
    except ImportError:
        return None, "unknown", None
    table = get_prices()
    found = table.lookup(model, provider) if model else None
    if found is None:
        return None, "unknown", table.version
    return found[0].cost(prompt, completion, cached), found[1], table.version


def llm_fields(span: Any) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """``(measurements, metadata, failed)`` of a GenAI span, by the llm plugin's field names."""
    from opentelemetry.trace import StatusCode

    a: Mapping[str, Any] = span.attributes or {}
    otel_op = _first(a, "gen_ai.operation.name", "llm.request.type")
    if otel_op is None and a.get("openinference.span.kind") == "EMBEDDING":
        otel_op = "embeddings"
    otel_op = str(otel_op or "chat")
    op = _OPERATIONS.get(otel_op, otel_op)
    model = _first(a, "gen_ai.request.model", "llm.request.model", "llm.model_name", "gen_ai.response.model")
    rmodel = _first(a, "gen_ai.response.model", "llm.response.model")
    provider = _first(a, "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
    provider = str(provider).lower() if provider is not None else None
    md: dict[str, Any] = {
        "model": model,
        "operation": op,
        "gen_ai.operation.name": otel_op,
        "gen_ai.request.model": model,
    }
    if provider:
        md["provider"] = md["gen_ai.provider.name"] = provider
    for k, v in a.items():
        if k.startswith(("gen_ai.request.", "gen_ai.response.", "server.", "openai.")) and k not in md:
            md[k] = list(v) if isinstance(v, tuple) else v
    if "server.address" in a:
        md["server_address"] = a["server.address"]
    if "server.port" in a:
        md["server_port"] = a["server.port"]
    if rmodel:
        md["response_model"] = md["gen_ai.response.model"] = rmodel
    reasons = a.get("gen_ai.response.finish_reasons")
    if reasons:
        md["finish_reason"] = reasons[0]
        md["gen_ai.response.finish_reasons"] = list(reasons)
    m: dict[str, Any] = {}
    if span.start_time and span.end_time:
        m["duration"] = int(span.end_time - span.start_time)
    status = _int(_first(a, "http.response.status_code", "http.status_code"))
    if status is not None:
        m["http_status"] = status
    prompt = _int(
        _first(
            a,
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "llm.usage.prompt_tokens",
            "llm.token_count.prompt",
        )
    )
    completion = _int(
        _first(
            a,
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.usage.completion_tokens",
            "llm.token_count.completion",
        )
    )
    total = _int(_first(a, "llm.usage.total_tokens", "gen_ai.usage.total_tokens", "llm.token_count.total"))
    cached = _int(
        _first(
            a,
            "gen_ai.usage.cache_read.input_tokens",
            "gen_ai.usage.cache_read_input_tokens",
            "llm.token_count.prompt_details.cache_read",
        )
    )
    failed = span.status is not None and span.status.status_code == StatusCode.ERROR
    if prompt is not None:
        if completion is None and op == "embeddings":
            completion = 0
        m["prompt_tokens"] = md["gen_ai.usage.input_tokens"] = prompt
        if completion is not None:
            m["completion_tokens"] = md["gen_ai.usage.output_tokens"] = completion
        m["total_tokens"] = total if total is not None else prompt + (completion or 0)
        if cached is not None:
            m["cached_tokens"] = cached
        md["tokens_source"] = "provider"
        cost, source, version = _price(rmodel or model, provider, prompt, completion or 0, cached or 0)
        if cost is None and rmodel and model and rmodel != model:
            cost, source, version = _price(model, provider, prompt, completion or 0, cached or 0)
        if cost is not None:
            m["cost_usd"] = cost
        md["cost_source"] = source
        if version:
            md["price_table_version"] = version
    elif not failed:
        md["cost_source"] = "no_usage"
    if failed:
        exc = next((e for e in span.events or () if e.name == "exception"), None)
        ea: Mapping[str, Any] = (exc.attributes or {}) if exc is not None else {}
        etype = str(_first(a, "error.type") or ea.get("exception.type") or "_OTHER")
        if etype.startswith("<class '"):  # an instrumentation that gave the class itself
            etype = etype[8:].rstrip("'>")
        md["kind"] = md["error.type"] = etype.rsplit(".", 1)[-1]
        md["error.qualified_type"] = etype
        md["reason"] = str(span.status.description or ea.get("exception.message") or etype)[:4000]
        if ea.get("exception.stacktrace"):
            md["stacktrace"] = str(ea["exception.stacktrace"])
    ctx = span.context
    if ctx is not None:
        md["otel.trace_id"] = f"{ctx.trace_id:032x}"
        md["otel.span_id"] = f"{ctx.span_id:016x}"
    scope = getattr(span, "instrumentation_scope", None)
    if scope is not None:
        md["otel.scope"] = scope.name
    return m, md, failed


def _other(span: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    m: dict[str, Any] = {}
    if span.start_time and span.end_time:
        m["duration"] = int(span.end_time - span.start_time)
    md: dict[str, Any] = {
        "name": span.name,
        "kind": getattr(span.kind, "name", str(span.kind)),
        "status": getattr(span.status.status_code, "name", None) if span.status is not None else None,
        "attributes": {k: (list(v) if isinstance(v, tuple) else v) for k, v in (span.attributes or {}).items()},
    }
    if span.context is not None:
        md["otel.trace_id"] = f"{span.context.trace_id:032x}"
        md["otel.span_id"] = f"{span.context.span_id:016x}"
    if span.parent is not None:
        md["otel.parent_span_id"] = f"{span.parent.span_id:016x}"
    return m, md


def _base() -> type:
    from opentelemetry.sdk.trace.export import SpanExporter

    return SpanExporter


class CrucibleSpanExporter(_base()):  # type: ignore[misc]
    """Record finished OTel spans in crucible: GenAI spans as ``req_llm.request.stop``/``.exception``.

    Args:
        hub: the ``Telemetry`` to record into (default: ``ct.default()`` at each export).
        experiment: an experiment id to record into; default: the current one where the span ended
            (with a ``SimpleSpanProcessor`` that is the caller's; a ``BatchSpanProcessor`` runs elsewhere).
        other_spans: ``"keep"`` (as ``otel.span`` events) or ``"drop"``.

    Example:
        >>> from opentelemetry.sdk.trace import TracerProvider
        >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        >>> provider = TracerProvider()
        >>> provider.add_span_processor(SimpleSpanProcessor(CrucibleSpanExporter()))
    """

    def __init__(self, hub: Any = None, experiment: str | None = None, other_spans: str = "keep") -> None:
        from ..errors import InvalidArgumentError

        if other_spans not in ("keep", "drop"):
            raise InvalidArgumentError("other_spans", f"'keep' or 'drop', got {other_spans!r}")
        self.hub, self.experiment, self.other_spans = hub, experiment, other_spans
        self.recorded = 0
        self.skipped = 0

    def export(self, spans: Sequence[Any]) -> Any:
        """Record each span; never raises (a span that cannot be read is counted in ``skipped``)."""
        from opentelemetry.sdk.trace.export import SpanExportResult

        import crucible_telemetry as ct

        hub = self.hub if self.hub is not None else ct.default()
        for span in spans:
            try:
                name: tuple[str, ...]
                if _is_genai(span.attributes or {}):
                    m, md, failed = llm_fields(span)
                    name = LLM_EXCEPTION if failed else LLM_STOP
                elif self.other_spans == "keep":
                    (m, md), name = _other(span), OTHER_SPAN
                else:
                    continue
                if self.experiment is not None:
                    md["experiment_id"] = self.experiment
                hub.emit(name, m, md)
                self.recorded += 1
            except Exception:
                self.skipped += 1
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: events go through the hub."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """The hub flushes on its own schedule; True."""
        return True
