"""Fixtures for the llm plugin: a real FakeOpenAIServer on 127.0.0.1 and real openai clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

import crucible_telemetry as ct
from crucible_telemetry_llm import instrument, reset_prices
from crucible_telemetry_llm.privacy import FAILURES
from crucible_telemetry_llm.testing import FakeOpenAIServer

from ._util import API_KEY


@pytest.fixture(autouse=True)
def _no_telemetry_failures() -> Iterator[None]:
    """Every test also checks that the instrumentation itself never failed silently."""
    FAILURES.clear()
    reset_prices()
    yield
    reset_prices()
    assert not FAILURES, f"telemetry failures: {FAILURES}"


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(model_suffix="-2024-07-18") as s:
        yield s


# The fake server takes stream_options, so these clients ask for stream usage as they would of
# api.openai.com (include_usage=True); the default for an unknown server is tested on its own.
@pytest.fixture
def client(server: FakeOpenAIServer, hub: ct.Telemetry) -> Iterator[Any]:
    c = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY, max_retries=2), include_usage=True)
    yield c
    c.close()


@pytest.fixture
async def aclient(server: FakeOpenAIServer, hub: ct.Telemetry) -> AsyncIterator[Any]:
    c = instrument(openai.AsyncOpenAI(base_url=server.url, api_key=API_KEY, max_retries=2), include_usage=True)
    yield c
    await c.close()
