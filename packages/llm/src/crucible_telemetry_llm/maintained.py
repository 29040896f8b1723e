"""The maintained price table: ``genai-prices`` (pydantic's list of providers, models and their prices).

A model is matched by genai-prices' own rules (its aliases and dated snapshots); a name it does not
know stays unknown, never guessed. Flat prices are read once into a ``Price``; tiered prices (by
prompt length) are computed by genai-prices for each call. Imported lazily: its data is large.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from .prices import Price

__all__ = ["PROVIDER_IDS", "MaintainedPrice", "find", "flat_models", "source_of", "version"]

NAME = "genai-prices"

#: OpenTelemetry ``gen_ai.provider.name`` -> genai-prices provider id, where they differ.
PROVIDER_IDS = {
    "azure.ai.openai": "azure",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "x_ai": "x-ai",
    "mistral_ai": "mistral",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "azure.ai.inference": "azure",
}

_lock = threading.Lock()


def version() -> str:
    """``genai-prices-<installed version>``: the table named in every event it priced."""
    from importlib.metadata import version as dist_version

    return f"{NAME}-{dist_version('genai-prices')}"


@dataclass(frozen=True)
class MaintainedPrice(Price):
    """A genai-prices entry; ``entry`` (``provider/model``) names it, ``tiered`` holds prices that vary by size."""

    entry: str = ""
    tiered: Any = field(default=None, compare=False, repr=False)

    def cost(self, prompt: float, completion: float, cached: float = 0.0) -> float:
        """USD for one request, by genai-prices' own arithmetic where prices are tiered."""
        if self.tiered is None:
            return super().cost(prompt, completion, cached)
        from genai_prices import Usage

        cached = min(max(cached, 0.0), prompt)
        usage = Usage(input_tokens=int(prompt), output_tokens=int(completion), cache_read_tokens=int(cached))
        return float(self.tiered.calc_price(usage)["total_price"])


def source_of(price: MaintainedPrice) -> str:
    """``cost_source`` of a maintained entry: the table and the matched entry, ``genai-prices:openai/gpt-4o``."""
    return f"{NAME}:{price.entry}"


def _number(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, Decimal):
        return float(v)
    base = getattr(v, "base", None)  # TieredPrices: the price below the first tier
    return float(base) if base is not None else None


def _price(provider: Any, model: Any) -> MaintainedPrice | None:
    mp = model.get_prices(datetime.now(UTC))
    inp, out, cached = (getattr(mp, k, None) for k in ("input_mtok", "output_mtok", "cache_read_mtok"))
    if inp is None and out is None:
        return None  # priced per request, image or second: not by tokens
    tiered = mp if any(v is not None and not isinstance(v, Decimal) for v in (inp, out, cached)) else None
    return MaintainedPrice(
        _number(inp) or 0.0, _number(out) or 0.0, _number(cached), entry=f"{provider.id}/{model.id}", tiered=tiered
    )


_found: dict[tuple[str, str | None], MaintainedPrice | None] = {}


def find(model: str, provider: str | None = None) -> MaintainedPrice | None:
    """The entry for ``model`` (at ``provider``, an OTel or genai-prices name, when it is one genai-prices knows):
    the provider's models, else any provider whose model names match, else OpenAI's (the wire format's own)."""
    key = (model.lower(), provider)
    try:
        return _found[key]
    except KeyError:
        pass
    from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

    snap = get_snapshot()
    found = None
    attempts: list[str | None] = []
    if provider:
        known = PROVIDER_IDS.get(provider, provider)
        if find_provider_by_id(snap.providers, known) is not None:
            attempts.append(known)
    attempts += [None, "openai"]
    for pid in attempts:
        try:
            p, m = snap.find_provider_model(key[0], None, pid, None)
        except LookupError:
            continue
        found = _price(p, m)
        if found is not None:
            break
    with _lock:
        if len(_found) < 10_000:
            _found[key] = found
    return found


def flat_models() -> dict[str, MaintainedPrice]:
    """Every token-priced model id of the table (the first provider listing an id wins, OpenAI's first)."""
    from genai_prices.data_snapshot import get_snapshot

    providers = sorted(get_snapshot().providers, key=lambda p: p.id != "openai")
    out: dict[str, MaintainedPrice] = {}
    for p in providers:
        for m in p.models:
            if m.id.lower() not in out:
                price = _price(p, m)
                if price is not None:
                    out[m.id.lower()] = price
    return out
