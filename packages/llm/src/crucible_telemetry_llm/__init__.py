"""crucible-telemetry-llm: record the calls of OpenAI-style clients as ``req_llm.request.*`` events.

``client = instrument(OpenAI(...))`` (or ``AsyncOpenAI``, or any OpenAI-compatible client) records
latency, time to first token, tokens, cost, retries and errors of every call; prompts and
completions only on opt-in. Prices come from a versioned built-in table the user can override.
"""

from __future__ import annotations

from .instrumentation import instrument, is_instrumented, uninstrument
from .prices import (
    BUILTIN_PRICES,
    BUILTIN_VERSION,
    Price,
    PriceTable,
    get_prices,
    load_prices,
    reset_prices,
    set_prices,
)

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_PRICES",
    "BUILTIN_VERSION",
    "Price",
    "PriceTable",
    "__version__",
    "get_prices",
    "instrument",
    "is_instrumented",
    "load_prices",
    "reset_prices",
    "set_prices",
    "uninstrument",
]
