"""The OTel parts without a receiver product: ids, counts of a real OTLP endpoint's answers (partial
success, refusals, unreachable with retries), the metrics' protobuf, OpenLLMetry/OpenInference spans, the switch."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import crucible_telemetry as ct
from crucible_telemetry.otel import CrucibleSpanExporter, export_otlp
from crucible_telemetry.otel.spans import encode_metrics, span_ids, to_span
from tests._requires import requires_plugin

MD = {"model": "gpt-4o", "operation": "chat", "provider": "openai", "gen_ai.operation.name": "chat"}


class _Receiver:
    """A minimal OTLP/HTTP endpoint on 127.0.0.1: decodes each request, answers ``partial_success``."""

    def __init__(self, reject: int = 0, status: int = 200) -> None:
        self.reject, self.status, self.spans, self.metrics = reject, status, [], []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
                from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts

                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    req = ts.ExportTraceServiceRequest.FromString(body)
                    outer.spans += [s for r in req.resource_spans for sc in r.scope_spans for s in sc.spans]
                    answer = ts.ExportTraceServiceResponse()
                    answer.partial_success.rejected_spans = outer.reject
                else:
                    outer.metrics.append(ms.ExportMetricsServiceRequest.FromString(body))
                    answer = ms.ExportMetricsServiceResponse()
                out = answer.SerializeToString()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    r = _Receiver()
    yield r
    r.server.shutdown()


def _calls(n: int = 3, fail: bool = True) -> str:
    with ct.experiment("calls") as exp:
        for i in range(n):
            ct.emit(
                "req_llm.request.stop", {"duration": 1000 + i, "prompt_tokens": 10, "completion_tokens": i}, dict(MD)
            )
        if fail:
            ct.emit("req_llm.request.exception", {"duration": 5}, {**MD, "kind": "APIError", "reason": "boom"})
    ct.flush()
    return exp.id


def test_spans_and_metrics_reach_a_real_endpoint(hub: ct.Telemetry, receiver: _Receiver) -> None:
    exp_id = _calls()
    result = export_otlp(exp_id, receiver.url)
    assert (result.sent, result.accepted, result.refused, result.failed, result.batches) == (4, 4, 0, 0, 1)
    assert [s.name for s in receiver.spans] == ["chat gpt-4o"] * 4
    assert receiver.spans[-1].status.code == 2 and receiver.spans[-1].status.message == "boom"
    assert all(s.kind == 3 for s in receiver.spans)  # SPAN_KIND_CLIENT
    names = {m.name: m for m in receiver.metrics[0].resource_metrics[0].scope_metrics[0].metrics}
    dur = names["gen_ai.client.operation.duration"].histogram.data_points
    assert sum(p.count for p in dur) == 4 and names["gen_ai.client.operation.duration"].unit == "s"
    tok = names["gen_ai.client.token.usage"].histogram.data_points
    kinds = {kv.value.string_value: p for p in tok for kv in p.attributes if kv.key == "gen_ai.token.type"}
    assert kinds["input"].sum == 30 and kinds["output"].sum == 0 + 1 + 2 and kinds["input"].count == 3
    assert result.metrics_accepted == result.metrics_sent > 0
    ids = {(s.trace_id, s.span_id) for s in receiver.spans}
    export_otlp([exp_id], receiver.url, metrics=False)
    assert {(s.trace_id, s.span_id) for s in receiver.spans[4:]} == ids  # same event, same ids


def test_partial_success_and_refusals_are_counted(hub: ct.Telemetry) -> None:
    exp_id = _calls(5, fail=False)
    r = _Receiver(reject=2)
    try:
        result = export_otlp(exp_id, r.url, metrics=False, batch_size=2)
        assert (result.sent, result.batches) == (5, 3)
        assert result.refused == 2 + 2 + 1 and result.accepted == 0  # each batch reported 2 rejected (capped)
        r.reject, r.status = 0, 400
        result = export_otlp(exp_id, r.url, metrics=False)
        assert (result.sent, result.accepted, result.refused, result.retries) == (5, 0, 5, 0)
        assert "HTTP 400" in result.errors[0]
    finally:
        r.server.shutdown()


def test_unreachable_endpoint_is_retried_and_counted_never_raised(hub: ct.Telemetry) -> None:
    exp_id = _calls(2, fail=False)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = ct.export(exp_id, "otlp", endpoint=f"http://127.0.0.1:{port}", retries=2, backoff=0.01)
    assert (result.sent, result.accepted, result.failed, result.retries) == (2, 0, 2, 2 + 2)
    assert "unreachable" in result.errors[0]
    with pytest.raises(ct.InvalidArgumentError) as info:
        ct.export(exp_id, "otlp", endpoint="127.0.0.1:4318")
    assert info.value.argument == "endpoint"


def test_ids_come_from_the_event_identity() -> None:
    row = {"experiment_id": "e1", "host": "h", "pid": 7, "seq": 3}
    assert span_ids(row) == span_ids(dict(row)) != span_ids({**row, "seq": 4})
    assert span_ids(row) != span_ids({**row, "pid": 8})
    span = to_span(
        {**row, "event": "req_llm.request.stop", "ts": 10.0, "measurements": {"duration": 2e9}, "metadata": MD}
    )
    assert (span["start"], span["end"]) == (8_000_000_000, 10_000_000_000)
    assert encode_metrics([]) is None


def _tracer(exporter: CrucibleSpanExporter) -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.mark.parametrize(
    "attrs",
    [
        {  # OpenLLMetry (traceloop)
            "llm.request.type": "chat",
            "gen_ai.system": "Anthropic",
            "gen_ai.request.model": "claude-3-5-sonnet-20241022",
            "gen_ai.usage.prompt_tokens": 100,
            "gen_ai.usage.completion_tokens": 20,
            "llm.usage.total_tokens": 120,
        },
        {  # OpenInference
            "openinference.span.kind": "LLM",
            "llm.model_name": "claude-3-5-sonnet-20241022",
            "llm.provider": "anthropic",
            "llm.token_count.prompt": 100,
            "llm.token_count.completion": 20,
            "llm.token_count.total": 120,
        },
    ],
)
@requires_plugin("llm")  # prices come from the llm plugin's table (genai-prices)
def test_other_instrumentations_spans_are_llm_calls(hub: ct.Telemetry, attrs: dict[str, Any]) -> None:
    exporter = CrucibleSpanExporter()
    provider = _tracer(exporter)
    with ct.experiment("ingest") as exp, provider.get_tracer("t").start_as_current_span("chat", attributes=attrs):
        pass
    stop = [r for r in ct.store.get_all(exp.id) if r["event"] == "req_llm.request.stop"]
    assert len(stop) == 1
    m, md = stop[0]["measurements"], stop[0]["metadata"]
    assert (m["prompt_tokens"], m["completion_tokens"], m["total_tokens"]) == (100, 20, 120)
    assert md["model"] == "claude-3-5-sonnet-20241022" and md["provider"] == "anthropic"
    assert md["cost_source"] == "genai-prices:anthropic/claude-3-5-sonnet"
    assert m["cost_usd"] == pytest.approx((100 * 3 + 20 * 15) / 1e6)
    assert m["duration"] > 0


def test_other_spans_kept_or_dropped(hub: ct.Telemetry) -> None:
    keep, drop = CrucibleSpanExporter(), CrucibleSpanExporter(other_spans="drop")
    with ct.experiment("spans") as exp:
        with _tracer(keep).get_tracer("t").start_as_current_span("load data", attributes={"rows": 5}):
            pass
        with _tracer(drop).get_tracer("t").start_as_current_span("load data"):
            pass
    got = [r for r in ct.store.get_all(exp.id) if r["event"] == "otel.span"]
    assert len(got) == 1 and got[0]["metadata"]["name"] == "load data"
    assert got[0]["metadata"]["attributes"] == {"rows": 5}
    with pytest.raises(ct.InvalidArgumentError):
        CrucibleSpanExporter(other_spans="maybe")


def test_the_core_imports_without_opentelemetry() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'opentelemetry': raise ImportError('blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import crucible_telemetry as ct, crucible_telemetry.otel as o\n"
        "from crucible_telemetry.cli.app import build_parser\n"
        "build_parser()\n"
        "print('ok', 'opentelemetry' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["ok", "False"]


def test_follow_exports_a_live_run_from_a_thread_each_event_once(hub: ct.Telemetry, receiver: _Receiver) -> None:
    from crucible_telemetry.otel import follow

    exp = ct.start_experiment("live")
    f = follow(exp.id, receiver.url, poll=0.05, metrics=False)
    for i in range(5):
        ct.emit("req_llm.request.stop", {"duration": 100 + i, "prompt_tokens": 1}, dict(MD))
        hub.flush()
    exp.stop()
    result = f.join(timeout=30)
    assert result is not None and f.error is None
    assert (result.sent, result.accepted) == (5, 5)
    assert len(receiver.spans) == 5
    seqs = sorted(next(a.value.int_value for a in s.attributes if a.key == "crucible.seq") for s in receiver.spans)
    assert len(set(seqs)) == 5
    with pytest.raises(ct.InvalidArgumentError):
        follow(exp.id, "nowhere")


def test_cli_prints_the_counts(hub: ct.Telemetry, receiver: _Receiver, home: Any, capsys: Any) -> None:
    from crucible_telemetry.cli import main

    exp_id = _calls(2)
    argv = ["--home", str(home), "export-otlp", exp_id, "--endpoint", receiver.url, "--header", "x-team=ml"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "spans: 3 sent, 3 accepted, 0 refused, 0 failed" in out and "metric points:" in out
    assert main(["--home", str(home), "export-otlp", exp_id, "--endpoint", receiver.url, "--header", "oops"]) == 1
    assert "--header takes KEY=VALUE" in capsys.readouterr().err
