"""Streamed calls, sync and async: same chunks, TTFT within the injected delays, stop at the end, exception mid-way."""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import openai
import pytest

import crucible_telemetry as ct
from crucible_telemetry_llm import instrument
from crucible_telemetry_llm.testing import FakeOpenAIServer

from ._util import API_KEY, MESSAGES, llm_events

FIRST = 0.12  # seconds between the stream's headers and its first token
DELAY = 0.05  # seconds before the headers


def _fingerprint(chunks: list[Any]) -> list[Any]:
    """What a chunk says, without the per-request id and timestamp."""
    return [c.model_dump(exclude={"id", "created"}) for c in chunks]


def test_sync_stream_same_chunks_ttft_and_usage(client: Any, server: FakeOpenAIServer) -> None:
    bare = openai.OpenAI(base_url=server.url, api_key=API_KEY)
    expected = list(bare.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    bare.close()
    headers = {"x-fake-delay": str(DELAY), "x-fake-first-token-delay": str(FIRST)}
    with ct.experiment("stream") as exp:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=headers
        )
        assert isinstance(stream, openai.Stream)
        got = list(stream)
    # The chunks are those of the bare client: the usage chunk we asked for is not shown.
    assert _fingerprint(got) == _fingerprint(expected)
    evs = llm_events(exp.id)
    assert [e["event"] for e in evs] == ["req_llm.request.start", "req_llm.request.stop"]
    m, md = evs[1]["measurements"], evs[1]["metadata"]
    assert DELAY + FIRST <= m["ttft_ns"] / 1e9 < DELAY + FIRST + 1.0
    assert m["ttft_ns"] <= m["duration"]
    words = len(server.reply.split())
    assert m["completion_tokens"] == words and m["prompt_tokens"] == 6  # the server's usage
    assert (
        md["tokens_source"] == "provider"
        and md["cost_source"] == "genai-prices:openai/gpt-4o-mini"
        and m["cost_usd"] > 0
    )
    assert m["chunks"] == words + 3  # role chunk, one per word, finish chunk, usage chunk
    assert m["inter_chunk_mean_ns"] > 0 and m["inter_chunk_max_ns"] >= m["inter_chunk_mean_ns"]
    assert md["finish_reason"] == "stop" and md["stream"] is True and m["http_status"] == 200
    assert md["stream_state"] == "completed"


def test_user_asked_for_usage_sees_the_usage_chunk(client: Any) -> None:
    with ct.experiment("usage-asked") as exp:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
        )
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    stop = llm_events(exp.id)[-1]
    assert stop["measurements"]["total_tokens"] == chunks[-1].usage.total_tokens


def test_user_refused_usage_gives_estimated_tokens_without_cost(client: Any) -> None:
    with ct.experiment("usage-refused") as exp:
        chunks = list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": False}
            )
        )
    assert all(c.usage is None for c in chunks)
    m, md = llm_events(exp.id)[-1]["measurements"], llm_events(exp.id)[-1]["metadata"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert md["tokens_source"] == "estimated"
    assert m["completion_tokens"] == (len(text) + 3) // 4
    assert "cost_usd" not in m and md["cost_source"] == "no_usage"


def test_stream_closed_early_by_context_manager_stops(client: Any) -> None:
    with ct.experiment("early") as exp:
        with client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as stream:
            first = [next(stream) for _ in range(3)]
        assert len(first) == 3
    evs = llm_events(exp.id)
    assert [e["event"] for e in evs] == ["req_llm.request.start", "req_llm.request.stop"]
    assert evs[1]["measurements"]["chunks"] == 3
    assert evs[1]["metadata"]["stream_state"] == "closed"


def test_stream_close_method_stops_once(client: Any) -> None:
    with ct.experiment("close") as exp:
        stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        next(stream)
        stream.close()
        stream.close()
    assert [e["event"] for e in llm_events(exp.id)] == ["req_llm.request.start", "req_llm.request.stop"]


def test_abandoned_stream_stops_when_collected(client: Any) -> None:
    with ct.experiment("abandoned") as exp:
        stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        for _ in stream:
            break
        del stream
        gc.collect()
    evs = llm_events(exp.id)
    assert [e["event"] for e in evs] == ["req_llm.request.start", "req_llm.request.stop"]
    assert evs[1]["metadata"]["stream_state"] == "abandoned"


def test_stream_cut_midway_gives_exception_and_the_users_error(client: Any) -> None:
    with ct.experiment("cut") as exp:
        stream = client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, extra_headers={"x-fake-cut-after": "4"}
        )
        seen = []
        with pytest.raises(openai.APIConnectionError) as info:
            for chunk in stream:
                seen.append(chunk)
    assert len(seen) == 5  # role chunk + 4 words
    evs = llm_events(exp.id)
    assert [e["event"] for e in evs] == ["req_llm.request.start", "req_llm.request.exception"]
    m, md = evs[1]["measurements"], evs[1]["metadata"]
    assert md["kind"] == "APIConnectionError" == type(info.value).__name__
    assert m["chunks"] == 5 and m["ttft_ns"] > 0 and m["http_status"] == 200


def test_stream_consumed_in_another_experiments_context_stays_in_its_own(client: Any) -> None:
    exp = ct.start_experiment("opened-here")
    stream = client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    found: dict[str, str] = {}

    def consume() -> None:
        with ct.experiment("consumed-here") as other:
            found["other"] = other.id
            list(stream)

    t = threading.Thread(target=consume)
    t.start()
    t.join()
    ct.stop_experiment(exp.id)
    assert [e["event"] for e in llm_events(exp.id)] == ["req_llm.request.start", "req_llm.request.stop"]
    assert llm_events(found["other"]) == []


def test_completions_stream(client: Any) -> None:
    with ct.experiment("completions-stream") as exp:
        chunks = list(
            client.completions.create(
                model="gpt-3.5-turbo-instruct",
                prompt="one two",
                stream=True,
                extra_headers={"x-fake-first-token-delay": str(FIRST)},
            )
        )
    assert all(c.choices for c in chunks)  # the injected usage chunk is hidden
    m = llm_events(exp.id)[-1]["measurements"]
    assert m["prompt_tokens"] == 2 and m["completion_tokens"] == len(chunks)
    assert FIRST <= m["ttft_ns"] / 1e9 < FIRST + 1.0


def test_responses_stream(client: Any) -> None:
    with ct.experiment("responses-stream") as exp:
        evs = list(
            client.responses.create(
                model="gpt-4o", input="hello there", stream=True, extra_headers={"x-fake-first-token-delay": str(FIRST)}
            )
        )
    assert evs[-1].type == "response.completed"
    m, md = llm_events(exp.id)[-1]["measurements"], llm_events(exp.id)[-1]["metadata"]
    assert m["prompt_tokens"] == evs[-1].response.usage.input_tokens == 2
    assert m["completion_tokens"] == evs[-1].response.usage.output_tokens
    assert FIRST <= m["ttft_ns"] / 1e9 < FIRST + 1.0
    assert md["finish_reason"] == "completed" and md["response_model"] == "gpt-4o-2024-07-18"


async def test_async_stream(aclient: Any) -> None:
    headers = {"x-fake-delay": str(DELAY), "x-fake-first-token-delay": str(FIRST)}
    with ct.experiment("async-stream") as exp:
        stream = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=headers
        )
        assert isinstance(stream, openai.AsyncStream)
        chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)
    evs = llm_events(exp.id)
    assert [e["event"] for e in evs] == ["req_llm.request.start", "req_llm.request.stop"]
    m = evs[1]["measurements"]
    assert DELAY + FIRST <= m["ttft_ns"] / 1e9 < DELAY + FIRST + 1.0
    assert m["completion_tokens"] == len(chunks) - 2 and m["prompt_tokens"] == 6


async def test_async_stream_context_manager_and_cut(aclient: Any) -> None:
    with ct.experiment("async-cm") as exp:
        async with await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True) as stream:
            await stream.__anext__()
        stream = await aclient.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, extra_headers={"x-fake-cut-after": "2"}
        )
        with pytest.raises(openai.APIConnectionError):
            async for _ in stream:
                pass
    names = [e["event"] for e in llm_events(exp.id)]
    assert names == [
        "req_llm.request.start",
        "req_llm.request.stop",
        "req_llm.request.start",
        "req_llm.request.exception",
    ]


class _Chunks:
    """A duck-typed client whose stream yields known objects: identity proves they pass unchanged."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.chat = type("Chat", (), {})()
        self.chat.completions = type("Completions", (), {})()
        self.chat.completions.create = self.create

    def create(self, **kwargs: Any) -> Any:
        self.kwargs = kwargs
        return iter(self.items)


def test_duck_typed_stream_yields_the_very_same_objects(hub: ct.Telemetry) -> None:
    items = [
        {"model": "x", "choices": [{"delta": {"content": "a"}, "finish_reason": None}]},
        {"model": "x", "choices": [{"delta": {"content": "b"}, "finish_reason": "stop"}]},
    ]
    fake = _Chunks(items)
    instrument(fake)
    with ct.experiment("duck") as exp:
        out = list(fake.chat.completions.create(model="x", messages=MESSAGES, stream=True))
    assert all(a is b for a, b in zip(out, items, strict=True))
    assert "stream_options" not in fake.kwargs  # an unknown provider: the request goes out as written
    asked = instrument(_Chunks(items), include_usage=True)
    list(asked.chat.completions.create(model="x", messages=MESSAGES, stream=True))
    assert asked.kwargs["stream_options"] == {"include_usage": True}
    stop = llm_events(exp.id)[-1]
    assert stop["event"] == "req_llm.request.stop" and stop["measurements"]["chunks"] == 2
    assert stop["metadata"]["tokens_source"] == "estimated"


def test_stream_helper_and_raw_responses_keep_working(client: Any) -> None:
    with ct.experiment("helpers") as exp:
        with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as helper:
            for _ in helper:
                pass
            final = helper.get_final_completion()
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
        raw_stream = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES, stream=True)
        raw_chunks = list(raw_stream.parse())
    assert final.choices[0].message.content.startswith("Hello")
    assert raw.parse().usage.total_tokens > 0 and raw.http_response.status_code == 200
    assert raw_chunks[-1].choices, "a raw stream is not asked for usage: its bytes are the user's"
    stops = [e for e in llm_events(exp.id) if e["event"] == "req_llm.request.stop"]
    assert len(stops) == 3
    helper_stop = stops[0]
    assert helper_stop["metadata"]["tokens_source"] == "provider"  # usage asked for the helper, hidden from it
    assert helper_stop["measurements"]["ttft_ns"] > 0
    assert all(s["measurements"]["http_status"] == 200 for s in stops)
    assert "chunks" not in stops[2]["measurements"]


def test_a_long_duck_typed_stream_is_read_in_slices_and_recorded_whole(hub: ct.Telemetry) -> None:
    n = 600  # more than the 256 chunks the wrapper holds before reading them
    items = [{"model": "x", "choices": [{"delta": {"content": "t"}, "finish_reason": None}]} for _ in range(n - 1)]
    items.append({"model": "x", "choices": [{"delta": {"content": "!"}, "finish_reason": "length"}]})
    fake = _Chunks(items)
    instrument(fake, capture_content=True)
    with ct.experiment("long") as exp:
        out = list(fake.chat.completions.create(model="x", messages=MESSAGES, stream=True))
    assert all(a is b for a, b in zip(out, items, strict=True))
    stop = llm_events(exp.id)[-1]
    assert stop["event"] == "req_llm.request.stop" and stop["measurements"]["chunks"] == n
    assert stop["metadata"]["finish_reason"] == "length"
    assert stop["metadata"]["completion"] == "t" * (n - 1) + "!"
    assert stop["measurements"]["ttft_ns"] >= 0


def test_stream_stop_is_timed_at_its_end_and_read_off_the_callers_thread(
    client: Any, hub: ct.Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crucible_telemetry_llm.call import Call

    readers: list[str] = []
    read = Call.read_chunks

    def spy(self: Call) -> None:
        readers.append(threading.current_thread().name)
        read(self)

    monkeypatch.setattr(Call, "read_chunks", spy)
    with ct.experiment("stream-deferred") as exp:
        t0 = time.monotonic_ns()
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        took = time.monotonic_ns() - t0
        deadline = time.monotonic() + 10
        while not readers and time.monotonic() < deadline:  # built later, at the writer's next flush
            time.sleep(0.05)
    assert readers and "crucible-writer" in readers and threading.current_thread().name not in readers
    stop = llm_events(exp.id)[-1]
    assert stop["event"] == "req_llm.request.stop"
    assert stop["measurements"]["duration"] <= took
    assert stop["measurements"]["chunks"] == len(chunks) + 1  # the usage chunk we asked for, hidden
