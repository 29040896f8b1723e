"""The built-in table is genai-prices: its version and entry recorded, its numbers, user overrides on top."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import genai_prices
import pytest

import crucible_telemetry as ct
from crucible_telemetry_llm import BUILTIN_PRICES, BUILTIN_VERSION, PriceTable, set_prices

from ._util import MESSAGES, events


def _stop(exp_id: str) -> dict[str, Any]:
    return events(exp_id, "request.stop")[-1]


def test_version_names_the_installed_genai_prices() -> None:
    assert BUILTIN_VERSION == f"genai-prices-{version('genai-prices')}" == f"genai-prices-{genai_prices.__version__}"
    assert PriceTable.builtin().version == BUILTIN_VERSION


@pytest.mark.parametrize(
    ("model", "provider"),
    [("gpt-4o-mini", None), ("claude-3-5-sonnet-20241022", None), ("gpt-4o", "azure"), ("gpt-5.4", None)],
)
def test_costs_equal_genai_prices_own_calculation(model: str, provider: str | None) -> None:
    otel = {"azure": "azure.ai.openai"}.get(provider or "", provider)
    for prompt, completion, cached in [(1200, 300, 0), (1200, 300, 1000), (300_000, 2_000, 0)]:
        cost, source = PriceTable.builtin().cost(model, prompt, completion, cached, provider=otel)
        usage = genai_prices.Usage(input_tokens=prompt, output_tokens=completion, cache_read_tokens=cached)
        want = genai_prices.calc_price(usage, model, provider_id=provider)
        assert cost == pytest.approx(float(want.total_price), rel=1e-9)
        assert source == f"genai-prices:{want.provider.id}/{want.model.id}"


def test_tiered_prices_are_applied_past_the_tier() -> None:
    price = BUILTIN_PRICES["gpt-5.4"]
    small = price.cost(100_000, 0) / 100_000
    large = price.cost(400_000, 0) / 400_000
    assert large > small  # a long prompt pays the upper tier's rate for every token


def test_call_through_the_wrapper_records_entry_and_version(client: Any) -> None:
    with ct.experiment("maintained") as exp:
        r = client.chat.completions.create(model="claude-3-5-sonnet-20241022", messages=MESSAGES)
    m, md = _stop(exp.id)["measurements"], _stop(exp.id)["metadata"]
    usage = genai_prices.Usage(input_tokens=r.usage.prompt_tokens, output_tokens=r.usage.completion_tokens)
    assert m["cost_usd"] == pytest.approx(float(genai_prices.calc_price(usage, "claude-3-5-sonnet").total_price))
    assert md["cost_source"] == "genai-prices:anthropic/claude-3-5-sonnet"
    assert md["price_table_version"] == BUILTIN_VERSION


def test_user_override_wins_and_unknown_stays_unknown(client: Any) -> None:
    set_prices({"gpt-4o-mini": (1.0, 1.0)}, version="lab")
    with ct.experiment("override") as exp:
        r = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.chat.completions.create(model="gpt-4o-mini-but-mine", messages=MESSAGES)
    first, second = events(exp.id, "request.stop")
    assert first["measurements"]["cost_usd"] == pytest.approx(r.usage.total_tokens / 1e6)
    assert first["metadata"]["cost_source"] == "user"
    assert first["metadata"]["price_table_version"] == f"lab+{BUILTIN_VERSION}"
    assert "cost_usd" not in second["measurements"] and second["metadata"]["cost_source"] == "unknown"
    assert "gpt-4o-mini-but-mine" not in PriceTable.builtin()
    with pytest.raises(KeyError):
        BUILTIN_PRICES["gpt-4o-mini-but-mine"]


def test_builtin_mapping_lists_token_priced_models() -> None:
    assert len(BUILTIN_PRICES) > 100 and "gpt-4o" in BUILTIN_PRICES
    assert BUILTIN_PRICES["text-embedding-3-small"].input == pytest.approx(0.02)
