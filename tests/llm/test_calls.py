"""Plain (non-streamed) calls of every operation through the real openai client: the events and their numbers."""

from __future__ import annotations

import threading
import time
from typing import Any

import openai
import pytest

import crucible_telemetry as ct
from crucible_telemetry_llm import BUILTIN_PRICES, BUILTIN_VERSION, instrument, set_prices
from crucible_telemetry_llm.testing import FakeOpenAIServer

from ._util import API_KEY, MESSAGES, llm_events


def _pair(exp_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    evs = llm_events(exp_id)
    assert [e["event"] for e in evs] == ["req_llm.request.start", "req_llm.request.stop"]
    return evs[0], evs[1]


def test_chat_completion_records_model_tokens_cost_status_and_gen_ai_names(
    client: Any, server: FakeOpenAIServer
) -> None:
    with ct.experiment("chat") as exp:
        r = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, temperature=0.3, max_tokens=50, seed=7
        )
    start, stop = _pair(exp.id)
    assert start["metadata"]["model"] == "gpt-4o-mini"
    assert start["metadata"]["operation"] == "chat"
    assert start["metadata"]["server_address"] == "127.0.0.1"
    m, md = stop["measurements"], stop["metadata"]
    # tokens equal the server's usage
    assert m["prompt_tokens"] == r.usage.prompt_tokens == 6
    assert m["completion_tokens"] == r.usage.completion_tokens
    assert m["total_tokens"] == r.usage.total_tokens
    assert m["cached_tokens"] == 0
    assert md["tokens_source"] == "provider"
    # asked vs answered model; the dated snapshot is priced as its base model
    assert md["model"] == "gpt-4o-mini" and md["response_model"] == "gpt-4o-mini-2024-07-18" == r.model
    price = BUILTIN_PRICES["gpt-4o-mini"]
    assert m["cost_usd"] == pytest.approx(
        (r.usage.prompt_tokens * price.input + r.usage.completion_tokens * price.output) / 1e6
    )
    assert md["cost_source"] == "genai-prices:openai/gpt-4o-mini" and md["price_table_version"] == BUILTIN_VERSION
    assert m["http_status"] == 200 and m["retries"] == 0
    assert md["finish_reason"] == "stop" == r.choices[0].finish_reason
    assert md["provider"] == "openai_compatible"
    assert md["server_port"] == server.port
    # OpenTelemetry GenAI attribute names
    assert md["gen_ai.operation.name"] == "chat"
    assert md["gen_ai.request.model"] == "gpt-4o-mini"
    assert md["gen_ai.response.model"] == r.model
    assert md["gen_ai.response.id"] == r.id
    assert md["gen_ai.response.finish_reasons"] == ["stop"]
    assert md["gen_ai.usage.input_tokens"] == r.usage.prompt_tokens
    assert md["gen_ai.usage.output_tokens"] == r.usage.completion_tokens
    assert md["gen_ai.request.temperature"] == 0.3
    assert md["gen_ai.request.max_tokens"] == 50
    assert md["gen_ai.request.seed"] == 7
    assert md["server.address"] == "127.0.0.1"
    assert stop["duration"] > 0


def test_latency_lies_within_the_servers_injected_delay(client: Any) -> None:
    with ct.experiment("delay") as exp:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-fake-delay": "0.15"})
    _, stop = _pair(exp.id)
    assert 0.15e9 <= stop["duration"] < 0.15e9 + 1.5e9


def test_finish_reason_length_when_max_tokens_cuts(client: Any) -> None:
    with ct.experiment("length") as exp:
        r = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=3)
    _, stop = _pair(exp.id)
    assert r.choices[0].finish_reason == "length"
    assert stop["metadata"]["finish_reason"] == "length"
    assert stop["measurements"]["completion_tokens"] == 3


def test_cached_tokens_are_recorded_and_priced_at_the_cached_rate(client: Any) -> None:
    with ct.experiment("cached") as exp:
        r = client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers={"x-fake-cached-tokens": "4"}
        )
    _, stop = _pair(exp.id)
    m = stop["measurements"]
    assert m["cached_tokens"] == r.usage.prompt_tokens_details.cached_tokens == 4
    p = BUILTIN_PRICES["gpt-4o"]
    expected = ((r.usage.prompt_tokens - 4) * p.input + 4 * p.cached_input + r.usage.completion_tokens * p.output) / 1e6
    assert m["cost_usd"] == pytest.approx(expected)


def test_legacy_completions(client: Any) -> None:
    with ct.experiment("completions") as exp:
        r = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Write one line")
    start, stop = _pair(exp.id)
    assert start["metadata"]["operation"] == "completions"
    assert stop["metadata"]["gen_ai.operation.name"] == "text_completion"
    assert stop["measurements"]["prompt_tokens"] == r.usage.prompt_tokens == 3
    assert stop["measurements"]["completion_tokens"] == r.usage.completion_tokens
    assert stop["metadata"]["finish_reason"] == "stop"
    assert stop["metadata"]["cost_source"] == "genai-prices:openai/gpt-3.5-turbo-instruct"


def test_responses_api(client: Any) -> None:
    with ct.experiment("responses") as exp:
        r = client.responses.create(model="gpt-4.1-mini", input="Tell me about loopback", instructions="Be brief")
    start, stop = _pair(exp.id)
    assert start["metadata"]["operation"] == "responses"
    m, md = stop["measurements"], stop["metadata"]
    assert m["prompt_tokens"] == r.usage.input_tokens == 6
    assert m["completion_tokens"] == r.usage.output_tokens
    assert m["total_tokens"] == r.usage.total_tokens
    assert md["response_model"] == "gpt-4.1-mini-2024-07-18"
    assert md["finish_reason"] == "completed"
    p = BUILTIN_PRICES["gpt-4.1-mini"]
    assert m["cost_usd"] == pytest.approx((r.usage.input_tokens * p.input + r.usage.output_tokens * p.output) / 1e6)


def test_embeddings(client: Any) -> None:
    with ct.experiment("embeddings") as exp:
        r = client.embeddings.create(model="text-embedding-3-small", input=["one two three", "four"], dimensions=4)
    start, stop = _pair(exp.id)
    assert len(r.data) == 2 and len(r.data[0].embedding) == 4
    m, md = stop["measurements"], stop["metadata"]
    assert start["metadata"]["operation"] == "embeddings"
    assert md["gen_ai.operation.name"] == "embeddings"
    assert m["prompt_tokens"] == r.usage.prompt_tokens == 4
    assert m["completion_tokens"] == 0 and m["total_tokens"] == 4
    assert m["cost_usd"] == pytest.approx(4 * BUILTIN_PRICES["text-embedding-3-small"].input / 1e6)
    assert md["gen_ai.embeddings.dimension.count"] == 4
    assert "finish_reason" not in md


def test_structured_parse_is_recorded_as_chat(client: Any) -> None:
    with ct.experiment("parse") as exp:
        r = client.chat.completions.parse(model="gpt-4o", messages=MESSAGES)
    _, stop = _pair(exp.id)
    assert stop["metadata"]["operation"] == "chat"
    assert stop["measurements"]["prompt_tokens"] == r.usage.prompt_tokens


def test_provider_without_usage_gives_estimated_tokens_and_no_cost(server: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    server.usage = False
    client = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY))
    with ct.experiment("no-usage") as exp:
        r = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    client.close()
    assert r.usage is None
    _, stop = _pair(exp.id)
    m, md = stop["measurements"], stop["metadata"]
    assert md["tokens_source"] == "estimated"
    assert m["prompt_tokens"] == (len(MESSAGES[0]["content"]) + 3) // 4
    assert m["completion_tokens"] == (len(r.choices[0].message.content) + 3) // 4
    assert "cost_usd" not in m and md["cost_source"] == "no_usage"


def test_explicit_hub_and_provider_override(server: FakeOpenAIServer, tmp_path: Any) -> None:
    other = ct.Telemetry(tmp_path / "other", flush_interval=0.2)
    try:
        client = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY), hub=other, provider="my-gateway")
        exp = other.start_experiment("explicit-hub")
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        other.flush()
        rows = other.store.query(exp.id, event="req_llm.request.stop")
        assert len(rows) == 1
        assert rows[0]["metadata"]["provider"] == "my-gateway"
        assert rows[0]["metadata"]["gen_ai.provider.name"] == "my-gateway"
        client.close()
    finally:
        other.close()


def test_openai_host_is_named_openai_without_network(hub: ct.Telemetry) -> None:
    from crucible_telemetry_llm.instrumentation import provider_of, server_of

    c = openai.OpenAI(api_key=API_KEY)
    assert server_of(c) == ("api.openai.com", None)
    assert provider_of("api.openai.com") == "openai"
    assert provider_of("myres.openai.azure.com") == "azure.ai.openai"
    assert provider_of("127.0.0.1") == "openai_compatible"
    c.close()


def test_plain_call_stop_is_timed_at_its_end_and_built_off_the_callers_thread(
    client: Any, hub: ct.Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crucible_telemetry_llm.call import Call

    builders: list[str] = []
    build = Call._result_fields

    def spy(self: Call, *args: Any) -> Any:
        builders.append(threading.current_thread().name)
        return build(self, *args)

    monkeypatch.setattr(Call, "_result_fields", spy)
    with ct.experiment("plain-deferred") as exp:
        t0 = time.monotonic_ns()
        r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        took = time.monotonic_ns() - t0
        assert isinstance(r, openai.types.chat.ChatCompletion)  # the user's result, unchanged
        deadline = time.monotonic() + 10
        while not builders and time.monotonic() < deadline:  # built later, at the writer's next flush
            time.sleep(0.05)
    assert builders and "crucible-writer" in builders and threading.current_thread().name not in builders
    _, stop = _pair(exp.id)
    assert 0 < stop["measurements"]["duration"] <= took
    assert stop["measurements"]["prompt_tokens"] == r.usage.prompt_tokens
    assert stop["metadata"]["response_model"] == r.model


def test_with_content_capture_the_stop_and_the_mask_run_in_the_callers_thread(
    server: FakeOpenAIServer, hub: ct.Telemetry
) -> None:
    threads: list[str] = []

    def mask(text: str) -> str:
        threads.append(threading.current_thread().name)
        return text.upper()

    c = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY), capture_content=True, mask=mask)
    with ct.experiment("capture-eager") as exp:
        r = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        masked = len(threads)  # before any flush: prompt and completion both masked already
    assert masked == 2 and set(threads) == {threading.current_thread().name}
    _, stop = _pair(exp.id)
    assert stop["metadata"]["completion"] == r.choices[0].message.content.upper()
    c.close()


def test_a_call_is_priced_by_the_table_in_effect_when_it_ends(client: Any) -> None:
    with ct.experiment("prices-at-end") as exp:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        set_prices({"gpt-4o-mini": {"input": 1000.0, "output": 1000.0}}, version="later")  # before the stops are built
    stops = [e for e in llm_events(exp.id) if e["event"] == "req_llm.request.stop"]
    assert r.usage is not None and chunks and len(stops) == 2
    price = BUILTIN_PRICES["gpt-4o-mini"]
    for stop in stops:
        m = stop["measurements"]
        assert stop["metadata"]["price_table_version"] == BUILTIN_VERSION
        assert m["cost_usd"] == pytest.approx(
            (m["prompt_tokens"] * price.input + m["completion_tokens"] * price.output) / 1e6
        )
