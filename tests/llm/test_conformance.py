"""An instrumented client keeps every client behaviour: openai-python's own tests, ported, plain client as the control.

``test_*_create_overload_*`` are openai-python's ``tests/api_resources/chat/test_completions.py``
(upstream runs them against a mock HTTP server; here the FakeOpenAIServer on 127.0.0.1), with their
assertions, for a plain ``openai.OpenAI`` (the control) and an instrumented one, in one run. The
rest covers issue 15: the ``stream_options`` rule, ``uninstrument`` and ``responses.stream()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import openai
import pytest
from openai.types.chat import ChatCompletion

import crucible_telemetry as ct
from crucible_telemetry_llm import instrument, uninstrument
from crucible_telemetry_llm.testing import DEFAULT_REPLY, FakeOpenAIServer

from ._util import API_KEY, MESSAGES, llm_events

MSG = [{"content": "string", "role": "developer"}]


@pytest.fixture(params=["plain", "instrumented"])
def either(request: pytest.FixtureRequest, server: FakeOpenAIServer, hub: ct.Telemetry) -> Iterator[Any]:
    c = openai.OpenAI(base_url=server.url, api_key=API_KEY)
    yield instrument(c) if request.param == "instrumented" else c
    c.close()


def test_method_create_overload_1(either: Any) -> None:
    completion = either.chat.completions.create(messages=MSG, model="gpt-5.4")
    assert isinstance(completion, ChatCompletion)


def test_raw_response_create_overload_1(either: Any) -> None:
    response = either.chat.completions.with_raw_response.create(messages=MSG, model="gpt-5.4")
    assert response.is_closed is True
    assert response.http_request.headers.get("X-Stainless-Lang") == "python"
    completion = response.parse()
    assert isinstance(completion, ChatCompletion)


def test_streaming_response_create_overload_1(either: Any) -> None:
    with either.chat.completions.with_streaming_response.create(messages=MSG, model="gpt-5.4") as response:
        assert not response.is_closed
        assert response.http_request.headers.get("X-Stainless-Lang") == "python"
        completion = response.parse()
        assert isinstance(completion, ChatCompletion)
    assert cast(Any, response.is_closed) is True


def test_raw_response_create_overload_2(either: Any) -> None:
    response = either.chat.completions.with_raw_response.create(messages=MSG, model="gpt-5.4", stream=True)
    assert response.http_request.headers.get("X-Stainless-Lang") == "python"
    stream = response.parse()
    stream.close()


def test_streaming_response_create_overload_2(either: Any) -> None:
    with either.chat.completions.with_streaming_response.create(messages=MSG, model="gpt-5.4", stream=True) as response:
        assert not response.is_closed
        assert response.http_request.headers.get("X-Stainless-Lang") == "python"
        stream = response.parse()
        stream.close()
    assert cast(Any, response.is_closed) is True


def test_responses_stream_helper_works_on_a_plain_and_an_instrumented_client(either: Any) -> None:
    """``client.responses.stream()`` builds its snapshot from ``response.output_item.added``: the server sends it."""
    with either.responses.stream(model="gpt-4o", input="hello") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert final.output_text == DEFAULT_REPLY
    assert kinds[:3] == ["response.created", "response.output_item.added", "response.content_part.added"]
    assert "response.output_text.delta" in kinds and kinds[-1] == "response.completed"


def _stream(client: Any, **kw: Any) -> list[Any]:
    return list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True, **kw))


def test_streams_of_an_unknown_server_go_out_as_written(server: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    """Default ``include_usage=None``: no ``stream_options`` for a server not known to take it; tokens estimated."""
    plain = openai.OpenAI(base_url=server.url, api_key=API_KEY)
    ours = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY))
    with ct.experiment("unknown") as exp:
        expected, got = _stream(plain), _stream(ours)
    sent_plain, sent_ours = server.bodies[-2:]
    assert sent_ours == sent_plain and "stream_options" not in sent_ours
    assert [c.choices for c in got] == [c.choices for c in expected]
    stop = llm_events(exp.id)[-1]
    assert stop["event"] == "req_llm.request.stop" and stop["metadata"]["tokens_source"] == "estimated"
    # A provider known to take it (api.openai.com: provider "openai") is asked, and the usage chunk hidden.
    known = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY), provider="openai")
    with ct.experiment("known") as exp2:
        chunks = _stream(known)
    assert server.bodies[-1]["stream_options"] == {"include_usage": True}
    assert [c.choices for c in chunks] == [c.choices for c in expected]  # no usage-only chunk shown
    assert llm_events(exp2.id)[-1]["metadata"]["tokens_source"] == "provider"
    for c in (plain, ours, known):
        c.close()


@pytest.fixture
def strict() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(reject_stream_options=True) as s:
        yield s


def test_refused_stream_options_are_retried_as_written(strict: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    client = instrument(openai.OpenAI(base_url=strict.url, api_key=API_KEY, max_retries=0), include_usage=True)
    with ct.experiment("strict") as exp:
        first = _stream(client)
        second = _stream(client)
        with pytest.raises(openai.BadRequestError, match="stream_options"):  # the user's own: theirs to see
            _stream(client, stream_options={"include_usage": True})
    assert first and second and "".join(c.choices[0].delta.content or "" for c in first if c.choices)
    sent = [("stream_options" in b) for b in strict.bodies]
    assert sent == [True, False, False, True]  # asked once, retried as written, then never asked again
    names = [e["event"].removeprefix("req_llm.request.") for e in llm_events(exp.id)]
    # the second attempt of the first call is a retry the client really made; the call succeeded
    assert names == ["start", "retry", "stop", "start", "stop", "start", "exception"]
    client.close()


async def test_refused_stream_options_are_retried_async(strict: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    client = instrument(openai.AsyncOpenAI(base_url=strict.url, api_key=API_KEY, max_retries=0), include_usage=True)
    with ct.experiment("strict-async") as exp:
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        chunks = [c async for c in stream]
    assert chunks and [("stream_options" in b) for b in strict.bodies] == [True, False]
    assert [e["event"].removeprefix("req_llm.request.") for e in llm_events(exp.id)] == ["start", "retry", "stop"]
    await client.close()


def test_uninstrument_stops_a_cached_raw_response_wrapper(server: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    client = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY))
    raw = client.chat.completions.with_raw_response  # cached by the client while instrumented
    top = client.with_raw_response.chat.completions
    with ct.experiment("raw") as exp:
        raw.create(model="gpt-4o-mini", messages=MESSAGES)
        assert len(llm_events(exp.id)) == 2
        uninstrument(client)
        assert "with_raw_response" not in vars(client.chat.completions)  # the cache filled while instrumented
        raw.create(model="gpt-4o-mini", messages=MESSAGES).parse()  # a reference kept from before
        top.create(model="gpt-4o-mini", messages=MESSAGES).parse()
        client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES).parse()
        with client.with_streaming_response.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES) as r:
            r.parse()
        assert len(llm_events(exp.id)) == 2  # nothing more recorded
    client.close()
