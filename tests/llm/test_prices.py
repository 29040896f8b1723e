"""Prices: the built-in table (genai-prices), user overrides (dict, JSON file, per client), unknown models never guessed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest

import crucible_telemetry as ct
from crucible_telemetry_llm import (
    BUILTIN_PRICES,
    BUILTIN_VERSION,
    Price,
    PriceTable,
    get_prices,
    instrument,
    load_prices,
    reset_prices,
    set_prices,
)
from crucible_telemetry_llm.testing import FakeOpenAIServer

from ._util import API_KEY, MESSAGES, events


def _stop(exp_id: str) -> dict[str, Any]:
    return events(exp_id, "request.stop")[-1]


def test_unknown_model_records_tokens_and_no_cost(client: Any) -> None:
    with ct.experiment("unknown") as exp:
        r = client.chat.completions.create(model="my-local-llama-3b", messages=MESSAGES)
    stop = _stop(exp.id)
    m, md = stop["measurements"], stop["metadata"]
    assert m["prompt_tokens"] == r.usage.prompt_tokens and m["completion_tokens"] == r.usage.completion_tokens
    assert "cost_usd" not in m
    assert md["cost_source"] == "unknown" and md["price_table_version"] == BUILTIN_VERSION


def test_similar_names_are_not_guessed() -> None:
    t = PriceTable.builtin()
    assert t.lookup("gpt-4o-mini-2024-07-18") == (BUILTIN_PRICES["gpt-4o-mini"], "genai-prices:openai/gpt-4o-mini")
    assert t.lookup("GPT-4O") == (BUILTIN_PRICES["gpt-4o"], "genai-prices:openai/gpt-4o")
    assert t.lookup("gpt-4o-mini-custom") is None
    assert t.lookup("gpt-4o-2") is None
    assert t.lookup("ft:gpt-4o-mini:acme") is None
    assert t.cost("nope", 100, 100) == (None, "unknown")


def test_set_prices_from_a_dict_is_laid_over_the_builtin_table(client: Any) -> None:
    set_prices({"my-local-llama-3b": {"input": 1.0, "output": 2.0}}, version="lab-2025-09")
    assert get_prices().version == f"lab-2025-09+{BUILTIN_VERSION}"
    with ct.experiment("dict") as exp:
        r = client.chat.completions.create(model="my-local-llama-3b", messages=MESSAGES)
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    stops = events(exp.id, "request.stop")
    m, md = stops[0]["measurements"], stops[0]["metadata"]
    assert m["cost_usd"] == pytest.approx((r.usage.prompt_tokens * 1.0 + r.usage.completion_tokens * 2.0) / 1e6)
    assert md["cost_source"] == "user" and md["price_table_version"] == f"lab-2025-09+{BUILTIN_VERSION}"
    assert stops[1]["metadata"]["cost_source"] == "genai-prices:openai/gpt-4o"
    reset_prices()
    assert get_prices().version == BUILTIN_VERSION


def test_prices_from_a_json_file_without_merge(client: Any, tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps({"version": "acme-7", "models": {"gpt-4o": {"input": 100, "output": 200, "cached_input": 50}}})
    )
    table = load_prices(path)
    assert table.version == "acme-7" and table.models == {"gpt-4o": Price(100.0, 200.0, 50.0)}
    set_prices(path, merge=False)
    with ct.experiment("file") as exp:
        r = client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stops = events(exp.id, "request.stop")
    assert stops[0]["measurements"]["cost_usd"] == pytest.approx(
        (r.usage.prompt_tokens * 100 + r.usage.completion_tokens * 200) / 1e6
    )
    assert stops[0]["metadata"]["price_table_version"] == "acme-7"
    assert stops[1]["metadata"]["cost_source"] == "unknown"  # not in this table, not merged


def test_per_client_prices(server: FakeOpenAIServer, hub: ct.Telemetry) -> None:
    c = instrument(openai.OpenAI(base_url=server.url, api_key=API_KEY), prices={"gpt-4o": (10, 20)})
    with ct.experiment("client-prices") as exp:
        r = c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    c.close()
    stop = _stop(exp.id)
    assert stop["measurements"]["cost_usd"] == pytest.approx(
        (r.usage.prompt_tokens * 10 + r.usage.completion_tokens * 20) / 1e6
    )
    assert stop["metadata"]["price_table_version"] == f"user+{BUILTIN_VERSION}"


@pytest.mark.parametrize(
    "bad",
    [{"m": {"input": "cheap"}}, {"m": {"inp": 1}}, {"m": (1, 2, 3, 4)}, {"m": {"input": float("nan")}}, [1, 2]],
)
def test_bad_price_tables_are_refused(bad: Any) -> None:
    with pytest.raises(ct.InvalidArgumentError) as info:
        set_prices(bad)
    assert info.value.argument == "prices"
    assert get_prices().version == BUILTIN_VERSION


def test_bad_price_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ct.InvalidArgumentError) as info:
        load_prices(path)
    assert info.value.argument == "path"
    with pytest.raises(ct.InvalidArgumentError):
        load_prices(tmp_path / "missing.json")
