"""instrument(): idempotent, uninstrument() restores the client exactly, bad input named, plugin registered."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.resources.chat.completions import Completions

import crucible_telemetry as ct
from crucible_telemetry_llm import instrument, is_instrumented, uninstrument
from crucible_telemetry_llm.testing import FakeOpenAIServer

from ._util import API_KEY, MESSAGES, llm_events


def _snapshot(client: Any) -> dict[str, Any]:
    http = client._client
    return {
        "client": dict(vars(client)),
        "hooks": {k: list(v) for k, v in http.event_hooks.items()},
    }


def test_instrument_twice_is_once(server: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    c = openai.OpenAI(base_url=server.url, api_key=API_KEY)
    assert instrument(c) is c
    wrapper = c.chat.completions.create
    assert instrument(c) is c
    assert c.chat.completions.create is wrapper
    assert c._client.event_hooks["request"].count(c._client.event_hooks["request"][0]) == 1
    with ct.experiment("twice") as exp:
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert [e["event"] for e in llm_events(exp.id)] == ["req_llm.request.start", "req_llm.request.stop"]
    c.close()


def test_uninstrument_restores_the_client_exactly(server: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    c = openai.OpenAI(base_url=server.url, api_key=API_KEY)
    before = _snapshot(c)
    instrument(c)
    assert is_instrumented(c)
    assert uninstrument(c) is c
    assert not is_instrumented(c)
    assert _snapshot(c) == before
    assert c.chat.completions.create.__func__ is Completions.create
    assert "create" not in vars(c.chat.completions)
    with ct.experiment("after") as exp:
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        list(c.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert llm_events(exp.id) == []
    uninstrument(c)  # twice is harmless
    # and it can be instrumented again
    instrument(c)
    with ct.experiment("again") as exp2:
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(llm_events(exp2.id)) == 2
    c.close()


def test_resources_touched_before_instrument_are_restored_too(server: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    c = openai.OpenAI(base_url=server.url, api_key=API_KEY)
    completions = c.chat.completions
    own = dict(vars(completions))
    instrument(c)
    assert c.chat.completions is completions
    uninstrument(c)
    assert dict(vars(completions)) == own


def test_only_the_given_client_is_instrumented(server: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    http = openai.DefaultHttpxClient()
    a = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY, http_client=http))
    b = openai.OpenAI(base_url=server.url, api_key=API_KEY, http_client=http)  # shares the httpx client
    with ct.experiment("one-client") as exp:
        b.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        a.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers={"x-fake-fail": "429:1"})
    evs = llm_events(exp.id)
    assert [e["event"] for e in evs] == ["req_llm.request.start", "req_llm.request.retry", "req_llm.request.stop"]
    assert evs[-1]["measurements"]["retries"] == 1
    uninstrument(a)
    assert http.event_hooks == {"request": [], "response": []}
    http.close()


def test_copies_made_by_with_options_are_instrumented_alike(server: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    c = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY), capture_content=True)
    copy = c.with_options(timeout=5)
    assert copy is not c and is_instrumented(copy)
    with ct.experiment("copy") as exp:
        copy.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    stop = llm_events(exp.id)[-1]
    assert stop["metadata"]["prompt"] == MESSAGES  # the options came along
    uninstrument(copy)
    assert is_instrumented(c)
    with ct.experiment("still") as exp2:
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(llm_events(exp2.id)) == 2
    c.close()


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"capture_content": "yes"}, "capture_content"),
        ({"mask": "not callable"}, "mask"),
        ({"provider": ""}, "provider"),
        ({"hub": object()}, "hub"),
        ({"prices": 42}, "prices"),
        ({"prices": {"m": {"input": -1}}}, "prices"),
    ],
)
def test_bad_arguments_name_the_argument(server: FakeOpenAIServer, kwargs: dict[str, Any], argument: str) -> None:
    c = openai.OpenAI(base_url=server.url, api_key=API_KEY)
    with pytest.raises(ct.InvalidArgumentError) as info:
        instrument(c, **kwargs)
    assert info.value.argument == argument
    assert not is_instrumented(c) and "create" not in vars(c.chat.completions)
    c.close()


def test_not_a_client_is_refused() -> None:
    with pytest.raises(ct.InvalidArgumentError) as info:
        instrument(object.__new__(type("Nothing", (), {})))
    assert info.value.argument == "client"
    with pytest.raises(ct.InvalidArgumentError):
        instrument(None)


def test_plugin_registers_the_retry_event_through_the_entry_point() -> None:
    from crucible_telemetry import plugins

    plugins.load_plugins()
    info = ct.event_info("req_llm.request.retry")
    assert info.category == "llm"
    assert "retries" in info.enriched_fields
    names = {name for name, _ in plugins.get_plugin_manager().list_name_plugin()}
    assert "llm" in names
