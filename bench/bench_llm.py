"""Overhead of the instrumented openai client against the bare client, same loopback server, one run.

Calls alternate bare / instrumented (order flipped every pair) so both see the same machine state;
figures are medians. Targets: at most 50 µs added per call and at most 1.05x the bare latency.
Also timed: the instrumentation's own work per call (start + stop on a real parsed answer, no HTTP).

Run: python bench/bench_llm.py [--pairs 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import openai

import crucible_telemetry as ct
from crucible_telemetry_llm import instrument
from crucible_telemetry_llm.testing import FakeOpenAIServer

MESSAGES = [{"role": "user", "content": "Say hello to the loopback server"}]
TARGET_US = 50.0
TARGET_RATIO = 1.05


def _pairs(bare: Callable[[], Any], inst: Callable[[], Any], n: int) -> tuple[list[float], list[float]]:
    b, i = [], []
    clock = time.perf_counter_ns
    for k in range(n):
        for fn, out in ((bare, b), (inst, i)) if k % 2 == 0 else ((inst, i), (bare, b)):
            t = clock()
            fn()
            out.append((clock() - t) / 1e3)
    return b, i


async def _apairs(bare: Callable[[], Any], inst: Callable[[], Any], n: int) -> tuple[list[float], list[float]]:
    b, i = [], []
    clock = time.perf_counter_ns
    for k in range(n):
        for fn, out in ((bare, b), (inst, i)) if k % 2 == 0 else ((inst, i), (bare, b)):
            t = clock()
            await fn()
            out.append((clock() - t) / 1e3)
    return b, i


def _report(label: str, b: list[float], i: list[float]) -> dict[str, float]:
    """Overhead = median of the per-pair differences (robust to drift); ratio against the bare median."""
    mb, mi = statistics.median(b), statistics.median(i)
    over = statistics.median([y - x for x, y in zip(b, i)])
    ratio = (mb + over) / mb
    ok = "OK " if over <= TARGET_US and ratio <= TARGET_RATIO else "MISS"
    print(f"{label:<30} bare {mb:8.1f} µs  instrumented {mi:8.1f} µs  overhead {over:6.1f} µs (target <= {TARGET_US:.0f})"
          f"  ratio {ratio:5.3f}x (target <= {TARGET_RATIO})  {ok}")
    return {"bare_us": mb, "instrumented_us": mi, "overhead_us": over, "ratio": ratio}


def _own_work(client: Any, n: int) -> float:
    """µs of instrumentation work per call: begin (start event) + finish (stop event) on a real answer."""
    from crucible_telemetry_llm.instrument import STATE_ATTR

    inst = vars(client)[STATE_ATTR]
    answer = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES).parse()
    clock = time.perf_counter_ns
    samples = []
    for _ in range(n):
        t = clock()
        call = inst.begin("chat", {"model": "gpt-4o-mini", "messages": MESSAGES})
        assert call is not None
        call.on_attempt()
        call.finish(answer)
        samples.append((clock() - t) / 1e3)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=1500, help="bare/instrumented pairs per scenario")
    args = ap.parse_args()
    n = args.pairs
    with tempfile.TemporaryDirectory() as home, FakeOpenAIServer() as server:
        hub = ct.Telemetry(home, flush_interval=1.0)
        ct.set_default(hub)
        bare = openai.OpenAI(base_url=server.url, api_key="sk-bench")
        inst = instrument(openai.OpenAI(base_url=server.url, api_key="sk-bench"))
        exp = ct.start_experiment("bench-llm")

        def chat(c: Any) -> Callable[[], Any]:
            return lambda: c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        def stream(c: Any) -> Callable[[], Any]:
            # both ask for usage, so both receive the same bytes
            return lambda: list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                                          stream_options={"include_usage": True}))

        for c in (bare, inst):  # warm up connections and lazy imports
            for _ in range(50):
                chat(c)()
                stream(c)()
        gc.collect()
        print(f"crucible-telemetry-llm overhead, {n} interleaved pairs per scenario, loopback FakeOpenAIServer")
        results = {"chat": _report("chat.completions (sync)", *_pairs(chat(bare), chat(inst), n))}
        results["stream"] = _report("chat stream (sync, 13 chunks)", *_pairs(stream(bare), stream(inst), max(n // 3, 50)))

        abare = openai.AsyncOpenAI(base_url=server.url, api_key="sk-bench")
        ainst = instrument(openai.AsyncOpenAI(base_url=server.url, api_key="sk-bench"))

        async def run_async() -> dict[str, float]:
            def achat(c: Any) -> Callable[[], Any]:
                return lambda: c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

            for c in (abare, ainst):
                for _ in range(50):
                    await achat(c)()
            out = _report("chat.completions (async)", *await _apairs(achat(abare), achat(ainst), max(n // 2, 50)))
            await abare.close()
            await ainst.close()
            return out

        results["async"] = asyncio.run(run_async())
        own = _own_work(inst, 5000)
        print(f"{'instrumentation work/call':<28} {own:8.1f} µs (start + stop events, no HTTP; target <= {TARGET_US:.0f})  "
              f"{'OK ' if own <= TARGET_US else 'MISS'}")
        ct.stop_experiment(exp.id)
        stored = len(ct.store.query(exp.id, event="req_llm.request.stop"))
        print(f"events stored: {stored} stop events (every instrumented call recorded)")
        bare.close()
        inst.close()
        hub.close()


if __name__ == "__main__":
    main()
