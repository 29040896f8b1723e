"""Stored ``req_llm.request.stop`` / ``.exception`` events as OTel GenAI CLIENT spans and client metrics.

A span's trace and span ids are a hash of the event's identity (experiment, host, pid, seq), so the
same event always becomes the same span: a receiver that keys spans by id stores a re-export once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

__all__ = ["DURATION_BOUNDS", "TOKEN_BOUNDS", "encode_metrics", "encode_spans", "span_ids", "to_span"]

#: Bucket bounds the GenAI semantic conventions advise (seconds; tokens).
DURATION_BOUNDS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BOUNDS = tuple(float(4**i) for i in range(14))

SCOPE = "crucible_telemetry"
_COPIED = ("gen_ai.", "server.", "openai.")  # metadata keys that already are OTel attribute names
_PLAIN = (str, bool, int, float)


def span_ids(row: Mapping[str, Any]) -> tuple[int, int]:
    """``(trace_id, span_id)`` of a stored event: from its identity, never random."""
    key = f"{row['experiment_id']}|{row.get('host')}|{row.get('pid')}|{row['seq']}".encode()
    h = hashlib.sha256(key).digest()
    trace_id = int.from_bytes(h[:16], "big") or 1
    span_id = int.from_bytes(h[16:24], "big") or 1
    return trace_id, span_id


def _ns(ts: Any) -> int:
    if isinstance(ts, datetime):
        return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000
    return int(float(ts) * 1e9)


def _attr(v: Any) -> Any:
    if isinstance(v, _PLAIN):
        return v
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v):
        return tuple(v)
    return None


def to_span(row: Mapping[str, Any], experiment_name: str | None = None) -> dict[str, Any]:
    """The span of one stored event as plain fields: name, ids, times, attributes, error."""
    m: Mapping[str, Any] = row.get("measurements") or {}
    md: Mapping[str, Any] = row.get("metadata") or {}
    failed = row["event"].endswith(".exception")
    op = md.get("gen_ai.operation.name") or md.get("operation") or "chat"
    model = md.get("gen_ai.request.model") or md.get("model") or ""
    attrs: dict[str, Any] = {}
    for k, v in md.items():
        if k.startswith(_COPIED) and (a := _attr(v)) is not None:
            attrs[k] = a
    attrs["gen_ai.operation.name"] = op
    if model:
        attrs["gen_ai.request.model"] = model
    provider = md.get("gen_ai.provider.name") or md.get("provider")
    if provider:
        attrs["gen_ai.provider.name"] = attrs["gen_ai.system"] = provider  # the new name and the old one
    if md.get("response_model") and "gen_ai.response.model" not in attrs:
        attrs["gen_ai.response.model"] = md["response_model"]
    for src, dst in (
        ("prompt_tokens", "gen_ai.usage.input_tokens"),
        ("completion_tokens", "gen_ai.usage.output_tokens"),
    ):
        if m.get(src) is not None:
            attrs[dst] = int(m[src])
    if m.get("http_status") is not None:
        attrs["http.response.status_code"] = int(m["http_status"])
    if failed:
        attrs["error.type"] = md.get("error.type") or md.get("kind") or "_OTHER"
    attrs["crucible.experiment_id"] = row["experiment_id"]
    if experiment_name:
        attrs["crucible.experiment_name"] = experiment_name
    attrs["crucible.seq"] = int(row["seq"])
    if row.get("pid") is not None:
        attrs["crucible.pid"] = int(row["pid"])
    if row.get("host"):
        attrs["crucible.host"] = str(row["host"])
    for k in ("cost_usd", "ttft_ns", "total_tokens", "cached_tokens", "retries"):
        if m.get(k) is not None:
            attrs[f"crucible.{k}"] = float(m[k]) if k == "cost_usd" else int(m[k])
    for k in ("cost_source", "price_table_version", "tokens_source", "finish_reason"):
        if isinstance(md.get(k), str):
            attrs[f"crucible.{k}"] = md[k]
    end = _ns(row["ts"])
    duration = int(m.get("duration") or 0)
    trace_id, span_id = span_ids(row)
    return {
        "name": f"{op} {model}".strip(),
        "trace_id": trace_id,
        "span_id": span_id,
        "start": end - max(duration, 0),
        "end": end,
        "attributes": attrs,
        "error": (str(md.get("reason") or md.get("kind") or "error"))[:1000] if failed else None,
        "duration_s": duration / 1e9,
    }


def _resource(service: str) -> Any:
    from opentelemetry.sdk.resources import Resource

    return Resource.create({"service.name": service, "telemetry.sdk.name": "crucible-telemetry"})


def encode_spans(spans: Iterable[Mapping[str, Any]], service: str = "crucible-telemetry") -> bytes:
    """An OTLP ``ExportTraceServiceRequest`` (protobuf bytes) of ``spans`` (from ``to_span``)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as encode
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    from .. import __version__

    resource, scope = _resource(service), InstrumentationScope(SCOPE, __version__)
    readable = [
        ReadableSpan(
            name=s["name"],
            context=SpanContext(s["trace_id"], s["span_id"], is_remote=False, trace_flags=TraceFlags(1)),
            kind=SpanKind.CLIENT,
            attributes=s["attributes"],
            start_time=s["start"],
            end_time=s["end"],
            status=Status(StatusCode.ERROR, s["error"]) if s["error"] is not None else Status(StatusCode.UNSET),
            resource=resource,
            instrumentation_scope=scope,
        )
        for s in spans
    ]
    return bytes(encode(readable).SerializeToString())


def _histogram(
    points: dict[tuple[tuple[str, Any], ...], list[float]], bounds: tuple[float, ...], t0: int, t1: int
) -> Any:
    import bisect

    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, Histogram, HistogramDataPoint

    def kv(k: str, v: Any) -> Any:
        value = AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=str(v))
        return KeyValue(key=k, value=value)

    out = []
    for attrs, values in points.items():
        counts = [0] * (len(bounds) + 1)
        for v in values:
            counts[bisect.bisect_left(bounds, v)] += 1
        out.append(
            HistogramDataPoint(
                attributes=[kv(k, v) for k, v in attrs],
                start_time_unix_nano=t0,
                time_unix_nano=t1,
                count=len(values),
                sum=float(sum(values)),
                bucket_counts=counts,
                explicit_bounds=list(bounds),
                min=min(values),
                max=max(values),
            )
        )
    return Histogram(data_points=out, aggregation_temporality=AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA)


def encode_metrics(spans: Sequence[Mapping[str, Any]], service: str = "crucible-telemetry") -> bytes | None:
    """``gen_ai.client.operation.duration`` and ``gen_ai.client.token.usage`` histograms of ``spans``, as an
    OTLP ``ExportMetricsServiceRequest``; None without spans."""
    if not spans:
        return None
    from opentelemetry.exporter.otlp.proto.common._internal import _encode_resource
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
    from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, ResourceMetrics, ScopeMetrics

    from .. import __version__

    durations: dict[tuple[tuple[str, Any], ...], list[float]] = {}
    tokens: dict[tuple[tuple[str, Any], ...], list[float]] = {}
    for s in spans:
        a = s["attributes"]
        base = [(k, a[k]) for k in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model") if k in a]
        for k in ("gen_ai.response.model", "server.address", "server.port", "error.type"):
            if k in a:
                base.append((k, a[k]))
        durations.setdefault(tuple(base), []).append(s["duration_s"])
        for kind, key in (("input", "gen_ai.usage.input_tokens"), ("output", "gen_ai.usage.output_tokens")):
            if key in a and "error.type" not in a:
                tokens.setdefault((*base, ("gen_ai.token.type", kind)), []).append(float(a[key]))
    t0, t1 = min(s["start"] for s in spans), max(s["end"] for s in spans)
    metrics = [
        Metric(
            name="gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            histogram=_histogram(durations, DURATION_BOUNDS, t0, t1),
        )
    ]
    if tokens:
        metrics.append(
            Metric(
                name="gen_ai.client.token.usage",
                unit="{token}",
                description="Measures number of input and output tokens used",
                histogram=_histogram(tokens, TOKEN_BOUNDS, t0, t1),
            )
        )
    req = ExportMetricsServiceRequest(
        resource_metrics=[
            ResourceMetrics(
                resource=_encode_resource(_resource(service)),
                scope_metrics=[
                    ScopeMetrics(scope=InstrumentationScope(name=SCOPE, version=__version__), metrics=metrics)
                ],
            )
        ]
    )
    return bytes(req.SerializeToString())
