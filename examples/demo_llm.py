"""Demo: LLM calls through the real openai client, recorded by crucible_telemetry_llm.

The client talks to a FakeOpenAIServer on 127.0.0.1 (no network, no key): plain and streamed
chat calls, an embedding, a call retried after a 429, and one that fails; then latency, time to
first token, tokens and cost come back from calculate_metrics.
"""

from __future__ import annotations

import tempfile
from typing import Any

import openai

import crucible_telemetry as ct
from crucible_telemetry.analysis.summary import calculate_metrics
from crucible_telemetry_llm import instrument
from crucible_telemetry_llm.testing import FakeOpenAIServer

QUESTIONS = [
    "What is a loopback interface?",
    "Name three prime numbers.",
    "Summarise TCP in one line.",
    "Why do streams help perceived latency?",
]
RETRIES = """
    SELECT coalesce(sum(measurements['retries']), 0) FROM events
    WHERE experiment_id = ? AND event IN ('req_llm.request.stop', 'req_llm.request.exception')
"""


def _ms(v: Any) -> str:
    return f"{v:.1f} ms" if isinstance(v, (int, float)) else "-"


def run(hub: ct.Telemetry) -> dict[str, Any]:
    """Make a dozen LLM calls in one experiment and print what calculate_metrics says about them."""
    with FakeOpenAIServer(delay=0.01, first_token_delay=0.03, chunk_delay=0.002, model_suffix="-2024-07-18") as server:
        client = instrument(
            openai.OpenAI(base_url=server.url, api_key="sk-demo-not-a-real-key", max_retries=2), hub=hub
        )
        with hub.experiment("llm-demo", hypothesis="streaming lowers time to first token", tags=("demo",)) as exp:
            for q in QUESTIONS * 2:  # plain chat calls
                client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": q}])
            for q in QUESTIONS:  # streamed: TTFT and inter-chunk time are measured
                for _chunk in client.chat.completions.create(
                    model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": q}]
                ):
                    pass
            client.embeddings.create(model="text-embedding-3-small", input=QUESTIONS)
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "retry me"}],
                extra_headers={"x-fake-fail": "429:1"},
            )  # one 429, retried by openai
            try:
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "fail me"}],
                    extra_headers={"x-fake-fail": "500:9"},
                )  # fails after 2 retries
            except openai.InternalServerError as exc:
                print(f"  the failing call raised {type(exc).__name__} (status {exc.status_code}), as it should")
        client.close()
    m = calculate_metrics(hub, exp.id)
    lat, ttft, tok, cost, rel = m["latency"], m["time_to_first_token"], m["tokens"], m["cost"], m["reliability"]
    with hub.connect() as con:
        (retries,) = con.execute(RETRIES, [exp.id]).fetchone()
    print(f"  LLM demo: {rel['total']} requests -> experiment {exp.id}")
    print(f"  latency   p50 {_ms(lat['p50'])}  p95 {_ms(lat['p95'])}  p99 {_ms(lat['p99'])}")
    print(f"  TTFT      p50 {_ms(ttft['p50'])}  p95 {_ms(ttft['p95'])}  ({ttft['count']} streams)")
    print(
        f"  tokens    prompt {tok['total_prompt']:.0f}  completion {tok['total_completion']:.0f}  total {tok['total']:.0f}"
    )
    print(
        f"  cost      ${cost['total']:.6f} total, ${cost['cost_per_1m_requests']:.2f} per 1M requests "
        f"(built-in prices; {cost['unpriced_requests']} unpriced)"
    )
    print(
        f"  success   {rel['success_rate']:.1%} ({rel['error_count']} error: {rel['errors_by_kind']}), {retries:.0f} retries"
    )
    return {
        "experiment_id": exp.id,
        "requests": rel["total"],
        "success_rate": rel["success_rate"],
        "latency_p50_ms": lat["p50"],
        "latency_p95_ms": lat["p95"],
        "ttft_p50_ms": ttft["p50"],
        "streams": ttft["count"],
        "prompt_tokens": tok["total_prompt"],
        "completion_tokens": tok["total_completion"],
        "cost_usd": cost["total"],
        "cost_per_1m_requests": cost["cost_per_1m_requests"],
        "retries": retries,
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as home:
        hub = ct.configure(home)
        print(run(hub))
        hub.close()
