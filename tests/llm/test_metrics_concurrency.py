"""calculate_metrics over an experiment of LLM calls, and 200 concurrent async calls in two side-by-side experiments."""

from __future__ import annotations

import asyncio
from typing import Any

import openai
import pytest

import crucible_telemetry as ct
from crucible_telemetry_llm import BUILTIN_PRICES
from crucible_telemetry_llm.testing import FakeOpenAIServer

from ._util import MESSAGES, events, llm_events

DELAY = 0.03
FIRST = 0.06


def test_calculate_metrics_for_an_experiment_of_llm_calls(client: Any, server: FakeOpenAIServer) -> None:
    usages = []
    with ct.experiment("metrics") as exp:
        for _ in range(6):
            r = client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-fake-delay": str(DELAY)}
            )
            usages.append(r.usage)
        for _ in range(3):
            chunks = list(
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=MESSAGES,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers={"x-fake-delay": str(DELAY), "x-fake-first-token-delay": str(FIRST)},
                )
            )
            usages.append(chunks[-1].usage)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-fake-fail": "500:9"}
            )
    res = ct.calculate_metrics(exp.id)
    lat, ttft, cost, rel, tok = (
        res["latency"],
        res["time_to_first_token"],
        res["cost"],
        res["reliability"],
        res["tokens"],
    )
    # latency (ms) of the 9 successful calls: all at least the injected delay
    assert lat["count"] == 9
    assert DELAY * 1e3 <= lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] < DELAY * 1e3 + 1500
    # time to first token from the 3 streams
    assert ttft["count"] == 3
    assert (DELAY + FIRST) * 1e3 <= ttft["p50"] <= ttft["p95"] <= ttft["p99"] < (DELAY + FIRST) * 1e3 + 1000
    # cost: total and per 1M requests from the built-in price
    p = BUILTIN_PRICES["gpt-4o-mini"]
    expected = sum((u.prompt_tokens * p.input + u.completion_tokens * p.output) / 1e6 for u in usages)
    assert cost["total"] == pytest.approx(expected)
    assert cost["priced_requests"] == 9
    assert cost["cost_per_1m_requests"] == pytest.approx(expected / 9 * 1e6)
    # reliability
    assert rel["success_count"] == 9 and rel["error_count"] == 1
    assert rel["success_rate"] == pytest.approx(0.9)
    assert rel["errors_by_kind"] == {"InternalServerError": 1}
    # tokens equal the server's usage
    assert tok["total_prompt"] == sum(u.prompt_tokens for u in usages)
    assert tok["total_completion"] == sum(u.completion_tokens for u in usages)
    assert tok["total"] == sum(u.total_tokens for u in usages)


async def test_200_concurrent_calls_in_two_experiments_side_by_side(aclient: Any) -> None:
    async def run(name: str, model: str, n: int) -> tuple[str, list[Any]]:
        with ct.experiment(name) as exp:

            async def one(i: int) -> Any:
                if i % 4 == 0:
                    stream = await aclient.chat.completions.create(
                        model=model, messages=MESSAGES, stream=True, extra_headers={"x-fake-delay": "0.02"}
                    )
                    return [c async for c in stream]
                return await aclient.chat.completions.create(
                    model=model, messages=MESSAGES, extra_headers={"x-fake-delay": "0.02"}
                )

            results = await asyncio.gather(*(one(i) for i in range(n)))
        return exp.id, results

    (a_id, a_res), (b_id, b_res) = await asyncio.gather(run("side-a", "gpt-4o", 100), run("side-b", "gpt-4o-mini", 100))
    assert len(a_res) == len(b_res) == 100
    for exp_id, model in ((a_id, "gpt-4o"), (b_id, "gpt-4o-mini")):
        evs = llm_events(exp_id)
        starts = [e for e in evs if e["event"] == "req_llm.request.start"]
        stops = [e for e in evs if e["event"] == "req_llm.request.stop"]
        assert len(starts) == 100 and len(stops) == 100, (exp_id, len(starts), len(stops))
        assert not events(exp_id, "request.exception")
        # none mixed: every event of this experiment is for its own model
        assert {e["metadata"]["model"] for e in evs} == {model}
        assert sum(1 for e in stops if e["metadata"].get("stream")) == 25
        assert all(e["measurements"]["prompt_tokens"] == 6 for e in stops)
        assert all(e["duration"] >= 0.02e9 for e in stops)
        res = ct.calculate_metrics(exp_id)
        assert res["reliability"]["success_count"] == 100 and res["time_to_first_token"]["count"] == 25


def test_threads_share_a_sync_client_and_each_call_keeps_its_own_retries(client: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> Any:
        headers = {"x-fake-fail": "429:1"} if i % 3 == 0 else {}
        return client.chat.completions.create(model=f"model-{i}", messages=MESSAGES, extra_headers=headers)

    with ct.experiment("threads") as exp, ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(48)))
    assert len(results) == 48
    stops = events(exp.id, "request.stop")
    assert len(stops) == 48
    for s in stops:
        i = int(s["metadata"]["model"].split("-")[1])
        assert s["measurements"]["retries"] == (1 if i % 3 == 0 else 0), s["metadata"]["model"]
    assert len(events(exp.id, "request.retry")) == 16
