"""Ingest: the official openai-v2 instrumentation traces a real ``openai`` client against the local server,
our ``CrucibleSpanExporter`` in the pipeline; the events equal what ``instrument(client)`` records."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import crucible_telemetry as ct
from tests._requires import requires_plugin

pytestmark = requires_plugin("llm", "openai", "opentelemetry-instrumentation-openai-v2")

MESSAGES = [{"role": "user", "content": "Say hello to the loopback server"}]
# The wrapper sees the HTTP status and the client's address; openai-v2 (2.4b0) records neither here.
KEYS_M = ("prompt_tokens", "completion_tokens", "total_tokens", "cost_usd")
KEYS_MD = (
    "model",
    "response_model",
    "provider",
    "operation",
    "finish_reason",
    "cost_source",
    "price_table_version",
    "tokens_source",
    "gen_ai.operation.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.response.finish_reasons",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.request.temperature",
    "kind",
    "error.type",
)


@pytest.fixture
def server() -> Iterator[Any]:
    from crucible_telemetry_llm.testing import FakeOpenAIServer

    with FakeOpenAIServer(model_suffix="-2024-07-18") as s:
        yield s


def _calls(client: Any, server: Any) -> None:
    import openai

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.chat.completions.create(model="my-local-llama", messages=MESSAGES, temperature=0.25)
    server.fail_next(500, times=1)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def _llm_events(exp_id: str) -> list[dict[str, Any]]:
    ct.flush()
    rows = sorted(ct.store.get_all(exp_id), key=lambda r: r["seq"])
    return [r for r in rows if r["event"] in ("req_llm.request.stop", "req_llm.request.exception")]


def _view(row: dict[str, Any]) -> dict[str, Any]:
    m, md = row["measurements"], row["metadata"]
    out = {"event": row["event"], **{k: m.get(k) for k in KEYS_M}, **{k: md.get(k) for k in KEYS_MD}}
    out["provider"] = "openai" if md.get("provider") in ("openai", "openai_compatible") else md.get("provider")
    return out


def test_openai_v2_spans_become_the_events_instrument_records(hub: ct.Telemetry, server: Any) -> None:
    import openai
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from crucible_telemetry.otel import CrucibleSpanExporter
    from crucible_telemetry_llm import instrument

    with ct.experiment("ours") as ours:
        client = instrument(openai.OpenAI(base_url=server.url, api_key="sk-test", max_retries=0))
        _calls(client, server)
        client.close()

    provider = TracerProvider()
    exporter = CrucibleSpanExporter(other_spans="drop")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    inst = OpenAIInstrumentor()
    inst.instrument(tracer_provider=provider)
    try:
        with ct.experiment("otel") as traced:
            client = openai.OpenAI(base_url=server.url, api_key="sk-test", max_retries=0)
            _calls(client, server)
            client.close()
    finally:
        inst.uninstrument()
        provider.shutdown()

    mine, theirs = _llm_events(ours.id), _llm_events(traced.id)
    assert [r["event"] for r in theirs] == ["req_llm.request.stop"] * 2 + ["req_llm.request.exception"]
    assert [_view(r) for r in theirs] == [_view(r) for r in mine]
    assert theirs[0]["metadata"]["cost_source"] == "genai-prices:openai/gpt-4o-mini"
    assert theirs[1]["metadata"]["cost_source"] == "unknown" and "cost_usd" not in theirs[1]["measurements"]
    for row in theirs:
        assert row["measurements"]["duration"] > 0 and row["metadata"]["otel.scope"].startswith("opentelemetry")
    assert exporter.recorded == 3 and exporter.skipped == 0
    # the SQL a user runs sees both runs alike
    con = ct.connect()
    got = con.execute(
        "SELECT experiment_id, count(*), sum(prompt_tokens) FROM events WHERE event = 'req_llm.request.stop'"
        " AND experiment_id IN (?, ?) GROUP BY 1 ORDER BY 1",
        [ours.id, traced.id],
    ).fetchall()
    assert len(got) == 2 and got[0][1:] == got[1][1:]
