"""Failed and retried calls: retries counted, the user's error re-raised unchanged, telemetry never raises."""

from __future__ import annotations

import logging
from typing import Any

import openai
import pytest

import crucible_telemetry as ct
from crucible_telemetry_llm import instrument
from crucible_telemetry_llm.privacy import FAILURES
from crucible_telemetry_llm.testing import FakeOpenAIServer

from ._util import API_KEY, MESSAGES, events, llm_events


def test_429_twice_then_success_counts_two_retries(client: Any, server: FakeOpenAIServer) -> None:
    with ct.experiment("retried") as exp:
        r = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-fake-fail": "429:2"}
        )
    assert server.request_count("/chat/completions") == 3
    evs = llm_events(exp.id)
    assert [e["event"] for e in evs] == [
        "req_llm.request.start",
        "req_llm.request.retry",
        "req_llm.request.retry",
        "req_llm.request.stop",
    ]
    assert [e["measurements"]["http_status"] for e in evs[1:3]] == [429, 429]
    assert [e["measurements"]["attempt"] for e in evs[1:3]] == [2, 3]
    m = evs[-1]["measurements"]
    assert m["retries"] == 2 and m["http_status"] == 200
    assert m["prompt_tokens"] == r.usage.prompt_tokens


def test_500_until_retries_exhausted_gives_exception_with_the_users_error(
    client: Any, server: FakeOpenAIServer
) -> None:
    with ct.experiment("exhausted") as exp, pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-fake-fail": "500:9"})
    assert info.value.status_code == 500
    assert server.request_count() == 3  # max_retries=2
    stop = events(exp.id, "request.exception")
    assert len(stop) == 1 and not events(exp.id, "request.stop")
    m, md = stop[0]["measurements"], stop[0]["metadata"]
    assert m["retries"] == 2 and m["http_status"] == 500
    assert md["kind"] == "InternalServerError" and md["error.type"] == "InternalServerError"
    assert "The server had an error (fake)." in md["reason"]
    assert md["model"] == "gpt-4o-mini" and md["operation"] == "chat"
    assert md["request_id"].startswith("req_")  # the provider's id, for support tickets
    assert m["duration"] > 0


def test_non_retryable_400_has_no_retry(client: Any, server: FakeOpenAIServer) -> None:
    with ct.experiment("bad-request") as exp, pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"x-fake-fail": "400:1"})
    m = events(exp.id, "request.exception")[0]["measurements"]
    assert m["retries"] == 0 and m["http_status"] == 400


def test_server_wide_fail_next_and_with_options(client: Any, server: FakeOpenAIServer) -> None:
    server.fail_next(429, times=1)
    with ct.experiment("with-options") as exp:
        client.with_options(max_retries=3).embeddings.create(model="text-embedding-3-large", input="x")
    stop = events(exp.id, "request.stop")
    assert len(stop) == 1 and stop[0]["measurements"]["retries"] == 1


def test_connection_refused_counts_attempts(hub: ct.Telemetry) -> None:
    server = FakeOpenAIServer().start()
    url = server.url
    server.stop()
    client = instrument(openai.OpenAI(base_url=url, api_key=API_KEY, max_retries=1, timeout=2))
    with ct.experiment("refused") as exp, pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    client.close()
    ex = events(exp.id, "request.exception")[0]
    assert ex["metadata"]["kind"] == "APIConnectionError"
    assert ex["measurements"]["retries"] == 1
    assert "http_status" not in ex["measurements"]


async def test_async_failure_and_retry(aclient: Any) -> None:
    with ct.experiment("async-fail") as exp:
        await aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"x-fake-fail": "429:1"})
        with pytest.raises(openai.RateLimitError):
            await aclient.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, extra_headers={"x-fake-fail": "429:5"}
            )
    stop = events(exp.id, "request.stop")[0]["measurements"]
    exc = events(exp.id, "request.exception")[0]
    assert stop["retries"] == 1
    assert exc["measurements"]["retries"] == 2 and exc["metadata"]["kind"] == "RateLimitError"


class _Boom(Exception):
    pass


class _Raising:
    """A duck-typed client whose call raises the user's own error."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.embeddings = type("Embeddings", (), {})()
        self.embeddings.create = self.create

    def create(self, **kwargs: Any) -> Any:
        raise self.exc


def test_the_users_own_exception_object_is_reraised_unchanged(hub: ct.Telemetry) -> None:
    err = _Boom("user failure")
    fake = instrument(_Raising(err))
    with ct.experiment("user-error") as exp, pytest.raises(_Boom) as info:
        fake.embeddings.create(model="m", input="x")
    assert info.value is err
    assert info.value.__traceback__ is not None
    ex = events(exp.id, "request.exception")[0]
    assert ex["metadata"]["kind"] == "_Boom" and ex["metadata"]["reason"] == "user failure"


def test_telemetry_failure_never_reaches_the_user(
    client: Any, hub: ct.Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_emit(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("telemetry is broken")

    monkeypatch.setattr(hub, "emit", broken_emit)
    with caplog.at_level(logging.WARNING, logger="crucible_telemetry.llm"):
        r = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"x-fake-fail": "429:9"})
    assert r.choices[0].message.content
    assert chunks and all(c.choices for c in chunks)
    assert FAILURES, "the failures are recorded"
    FAILURES.clear()


def test_a_stop_that_cannot_be_built_is_warned_and_dropped_alone(
    client: Any, hub: ct.Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crucible_telemetry_llm import extract

    def broken(*args: Any) -> Any:
        raise RuntimeError("unreadable answer")

    monkeypatch.setattr(extract, "finish_reasons", broken)  # read off the caller's thread, when the stop is built
    with ct.experiment("unbuildable-stop") as exp:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert r.choices[0].message.content
        evs = llm_events(exp.id)
    assert [e["event"] for e in evs] == ["req_llm.request.start"]
    assert [key for key, _ in FAILURES] == ["stop"]
    assert any(isinstance(e, RuntimeError) and str(e) == "unreadable answer" for e in hub.write_errors)
    FAILURES.clear()


def test_timeouts_are_retried_and_recorded(server: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    client = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY, max_retries=1, timeout=0.1))
    with ct.experiment("timeout") as exp, pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"x-fake-delay": "0.4"})
    client.close()
    ex = events(exp.id, "request.exception")[0]
    assert ex["metadata"]["kind"] == "APITimeoutError"
    assert ex["measurements"]["retries"] == 1 and "http_status" not in ex["measurements"]
    assert ex["measurements"]["duration"] >= 0.2e9  # two attempts of 0.1 s each, at least


async def test_cancelled_async_call_is_recorded_and_cancellation_propagates(aclient: Any) -> None:
    import asyncio

    with ct.experiment("cancelled") as exp:
        task = asyncio.ensure_future(
            aclient.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"x-fake-delay": "0.5"})
        )
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    evs = llm_events(exp.id)
    assert [e["event"] for e in evs] == ["req_llm.request.start", "req_llm.request.exception"]
    assert evs[1]["metadata"]["kind"] == "CancelledError"
