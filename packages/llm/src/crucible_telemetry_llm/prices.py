"""Model prices in USD per million tokens: the maintained ``genai-prices`` table, overridable by the user.

The built-in table is genai-prices (``BUILTIN_VERSION`` is ``genai-prices-<version>``); a price it
gave is recorded with ``cost_source = "genai-prices:<provider>/<model>"``, a user's with ``"user"``.
An unknown model has no price (cost is left out and ``cost_source`` is ``"unknown"``); a model
is never priced by a guess. A user's dated snapshot (``my-model-2024-07-18``) is priced as its
base model only when the snapshot itself is absent from the user's table.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
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


class _Builtin(Mapping[str, Price]):
    """The maintained table as a read-only ``{model: Price}`` mapping, read on first use (its data is large)."""

    _models: dict[str, Price] | None = None

    def __getitem__(self, model: str) -> Price:
        from . import maintained

        found = maintained.find(model) if isinstance(model, str) and model else None
        if found is None:
            raise KeyError(model)
        return found

    def _all(self) -> dict[str, Price]:
        if self._models is None:
            from . import maintained

            self._models = dict(maintained.flat_models())
        return self._models

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"<BUILTIN_PRICES {BUILTIN_VERSION}>"


def _builtin_version() -> str:
    try:
        from . import maintained

        return maintained.version()
    except Exception:  # genai-prices missing: the table is empty, every model unknown
        return "genai-prices-missing"


#: Version of the built-in table: the installed genai-prices release.
BUILTIN_VERSION = _builtin_version()
#: The built-in table (genai-prices), USD per 1M tokens: ``BUILTIN_PRICES["gpt-4o"]``.
BUILTIN_PRICES: Mapping[str, Price] = _Builtin()

_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")
BUILTIN = "genai-prices"
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
    """Prices by model name, each remembering where it came from (``user``, or a genai-prices entry).

    Args:
        prices: ``{model: Price | {"input", "output", "cached_input"} | (input, output, cached)}``,
            USD per 1M tokens.
        version: names this table in every event priced by it (``price_table_version``).
        source: recorded as ``cost_source`` for these entries (default ``"user"``).

    A table laid over the built-in one (``merged_over``) asks genai-prices for models it lacks.

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
        self.maintained = False  # True: models not in the entries are looked up in genai-prices
        self._entries: dict[str, tuple[Price, str]] = {
            str(m).lower(): (_as_price(str(m), p), source) for m, p in prices.items()
        }
        self._resolved: dict[tuple[str, str | None], tuple[Price, str] | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def builtin(cls) -> PriceTable:
        """The built-in table: genai-prices."""
        out = cls({}, BUILTIN_VERSION, BUILTIN)
        out.maintained = True
        return out

    def merged_over(self, base: PriceTable) -> PriceTable:
        """This table's entries over ``base``'s; the version names both."""
        out = PriceTable({}, f"{self.version}+{base.version}")
        out._entries = {**base._entries, **self._entries}
        out.maintained = self.maintained or base.maintained
        return out

    @property
    def models(self) -> dict[str, Price]:
        """Every priced model (the maintained table's too, where it is part of this one)."""
        own = {m: p for m, (p, _) in self._entries.items()}
        return {**BUILTIN_PRICES, **own} if self.maintained else own

    def lookup(self, model: str | None, provider: str | None = None) -> tuple[Price, str] | None:
        """``(price, cost_source)`` of a model: the table's own entries (a dated snapshot falling back to its
        base name), then genai-prices' (at ``provider``, a ``gen_ai.provider.name``, where it knows it); None
        if unknown."""
        if not model:
            return None
        try:
            return self._resolved[model, provider]
        except KeyError:
            pass
        key = model.lower()
        found = self._entries.get(key)
        if found is None:
            base = _SNAPSHOT.sub("", key)
            found = self._entries.get(base) if base != key else None
        if found is None and self.maintained:
            from . import maintained

            try:
                price = maintained.find(key, provider)
            except Exception as exc:  # a broken genai-prices install: unknown, said once
                from .privacy import warn_once

                warn_once("genai-prices", "could not read the genai-prices table", exc)
                price = None
            found = (price, maintained.source_of(price)) if price is not None else None
        with self._lock:
            if len(self._resolved) < 10_000:
                self._resolved[model, provider] = found
        return found

    def cost(
        self,
        model: str | None,
        prompt: float,
        completion: float = 0.0,
        cached: float = 0.0,
        provider: str | None = None,
    ) -> tuple[float | None, str]:
        """``(cost_usd, cost_source)``; ``(None, "unknown")`` for a model without a price."""
        found = self.lookup(model, provider)
        if found is None:
            return None, "unknown"
        price, source = found
        return price.cost(prompt, completion, cached), source

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.lookup(model) is not None

    def __repr__(self) -> str:
        extra = "+genai-prices" if self.maintained else ""
        return f"PriceTable(version={self.version!r}, models={len(self._entries)}{extra})"


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
