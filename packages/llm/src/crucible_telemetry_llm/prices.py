"""Model prices in USD per million tokens: a built-in table with a version, overridable by the user.

An unknown model has no price (cost is left out and ``cost_source`` is ``"unknown"``); a model
is never priced by a guess. A dated snapshot (``gpt-4o-mini-2024-07-18``) is priced as its
base model only when the snapshot itself is absent from the table.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from crucible_telemetry import InvalidArgumentError

__all__ = [
    "BUILTIN_PRICES",
    "BUILTIN_VERSION",
    "Price",
    "PriceTable",
    "get_prices",
    "load_prices",
    "reset_prices",
    "set_prices",
]


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens: ``input`` (prompt), ``output`` (completion), ``cached_input`` (None: as input)."""

    input: float
    output: float = 0.0
    cached_input: float | None = None

    def cost(self, prompt: float, completion: float, cached: float = 0.0) -> float:
        """USD for one request; cached prompt tokens are billed at ``cached_input``."""
        cached = min(max(cached, 0.0), prompt)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return ((prompt - cached) * self.input + cached * cached_rate + completion * self.output) / 1e6


#: Version of the built-in table (published list prices, standard tier, as of that month).
BUILTIN_VERSION = "builtin-2025-08"

_P = Price
#: The built-in table: USD per 1M tokens, OpenAI standard tier list prices.
BUILTIN_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "gpt-5": _P(1.25, 10.0, 0.125),
        "gpt-5-mini": _P(0.25, 2.0, 0.025),
        "gpt-5-nano": _P(0.05, 0.40, 0.005),
        "gpt-4.1": _P(2.0, 8.0, 0.50),
        "gpt-4.1-mini": _P(0.40, 1.60, 0.10),
        "gpt-4.1-nano": _P(0.10, 0.40, 0.025),
        "gpt-4o": _P(2.50, 10.0, 1.25),
        "gpt-4o-mini": _P(0.15, 0.60, 0.075),
        "gpt-4-turbo": _P(10.0, 30.0),
        "gpt-4": _P(30.0, 60.0),
        "gpt-3.5-turbo": _P(0.50, 1.50),
        "gpt-3.5-turbo-instruct": _P(1.50, 2.0),
        "o1": _P(15.0, 60.0, 7.50),
        "o1-mini": _P(1.10, 4.40, 0.55),
        "o3": _P(2.0, 8.0, 0.50),
        "o3-mini": _P(1.10, 4.40, 0.55),
        "o4-mini": _P(1.10, 4.40, 0.275),
        "text-embedding-3-small": _P(0.02),
        "text-embedding-3-large": _P(0.13),
        "text-embedding-ada-002": _P(0.10),
    }
)

_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
BUILTIN = "builtin"
USER = "user"


def _as_price(model: str, value: Any) -> Price:
    if isinstance(value, Price):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"input", "output", "cached_input"}
        if unknown or "input" not in value:
            raise InvalidArgumentError(
                "prices", f"{model!r}: expected keys input, output, cached_input; got {sorted(value)}"
            )
        fields = (value["input"], value.get("output", 0.0), value.get("cached_input"))
    elif isinstance(value, (list, tuple)) and 1 <= len(value) <= 3:
        fields = (*value, *([0.0, None][len(value) - 1 :]))
    else:
        raise InvalidArgumentError("prices", f"{model!r}: a price is a dict {{input, output, cached_input}} or a tuple")
    for f in fields:
        if f is not None and (isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f < 0):
            raise InvalidArgumentError(
                "prices", f"{model!r}: prices are finite numbers >= 0 (USD per 1M tokens), got {f!r}"
            )
    return Price(float(fields[0]), float(fields[1] or 0.0), None if fields[2] is None else float(fields[2]))


class PriceTable:
    """Prices by model name, each remembering where it came from (``builtin`` or ``user``).

    Args:
        prices: ``{model: Price | {"input", "output", "cached_input"} | (input, output, cached)}``,
            USD per 1M tokens.
        version: names this table in every event priced by it (``price_table_version``).
        source: ``"user"`` or ``"builtin"``, recorded as ``cost_source``.

    Example:
        >>> t = PriceTable({"my-model": {"input": 1.0, "output": 2.0}}, version="acme-1")
        >>> t.cost("my-model", prompt=1000, completion=500)
        (0.002, 'user')
    """

    def __init__(self, prices: Mapping[str, Any], version: str, source: str = USER) -> None:
        if not isinstance(prices, Mapping):
            raise InvalidArgumentError("prices", f"expected a mapping of model -> price, got {type(prices).__name__}")
        if not isinstance(version, str) or not version:
            raise InvalidArgumentError("version", "a price table needs a non-empty version string")
        self.version = version
        self._entries: dict[str, tuple[Price, str]] = {
            str(m).lower(): (_as_price(str(m), p), source) for m, p in prices.items()
        }
        self._resolved: dict[str, tuple[Price, str] | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def builtin(cls) -> PriceTable:
        """The built-in table."""
        return cls(BUILTIN_PRICES, BUILTIN_VERSION, BUILTIN)

    def merged_over(self, base: PriceTable) -> PriceTable:
        """This table's entries over ``base``'s; the version names both."""
        out = PriceTable({}, f"{self.version}+{base.version}")
        out._entries = {**base._entries, **self._entries}
        return out

    @property
    def models(self) -> dict[str, Price]:
        """Every priced model."""
        return {m: p for m, (p, _) in self._entries.items()}

    def lookup(self, model: str | None) -> tuple[Price, str] | None:
        """``(price, source)`` of a model, its dated snapshot falling back to the base name; None if unknown."""
        if not model:
            return None
        try:
            return self._resolved[model]
        except KeyError:
            pass
        key = model.lower()
        found = self._entries.get(key)
        if found is None:
            base = _SNAPSHOT.sub("", key)
            found = self._entries.get(base) if base != key else None
        with self._lock:
            if len(self._resolved) < 10_000:
                self._resolved[model] = found
        return found

    def cost(
        self, model: str | None, prompt: float, completion: float = 0.0, cached: float = 0.0
    ) -> tuple[float | None, str]:
        """``(cost_usd, cost_source)``; ``(None, "unknown")`` for a model without a price."""
        found = self.lookup(model)
        if found is None:
            return None, "unknown"
        price, source = found
        return price.cost(prompt, completion, cached), source

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.lookup(model) is not None

    def __repr__(self) -> str:
        return f"PriceTable(version={self.version!r}, models={len(self._entries)})"


def load_prices(path: str | os.PathLike[str]) -> PriceTable:
    """Read a JSON price file: ``{"version": "...", "models": {"gpt-4o": {"input": 2.5, "output": 10}}}``.

    A flat ``{model: price}`` object is accepted too (version: the file name).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidArgumentError("path", f"cannot read a JSON price table from {p}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgumentError("path", f"{p}: a price file holds a JSON object")
    if "models" in data:
        return PriceTable(data["models"], str(data.get("version") or p.name))
    return PriceTable(data, p.name)


def _coerce(source: Any, version: str | None) -> PriceTable:
    if isinstance(source, PriceTable):
        return source
    if isinstance(source, (str, os.PathLike)):
        table = load_prices(source)
        if version:
            table.version = version
        return table
    if isinstance(source, Mapping):
        return PriceTable(source, version or "user")
    raise InvalidArgumentError(
        "prices", f"expected a dict, a JSON file path or a PriceTable, got {type(source).__name__}"
    )


def resolve(source: Any, version: str | None = None, merge: bool = True) -> PriceTable:
    """A table from a dict, a JSON path or a PriceTable, laid over the built-in one when ``merge``."""
    table = _coerce(source, version)
    return table.merged_over(PriceTable.builtin()) if merge and table.version != BUILTIN_VERSION else table


_current = PriceTable.builtin()


def get_prices() -> PriceTable:
    """The process-wide price table used by clients instrumented without ``prices=``."""
    return _current


def set_prices(source: Any, version: str | None = None, merge: bool = True) -> PriceTable:
    """Replace the process-wide price table.

    Args:
        source: ``{model: price}`` dict (USD per 1M tokens), a JSON file path, or a PriceTable.
        version: the version recorded with each cost (default: the file's or ``"user"``).
        merge: lay the entries over the built-in table (True) or use them alone (False).
    """
    global _current
    _current = resolve(source, version, merge)
    return _current


def reset_prices() -> PriceTable:
    """Back to the built-in table."""
    global _current
    _current = PriceTable.builtin()
    return _current
