"""Alert rules: frozen values built by ``nonfinite``, ``threshold`` and ``absent`` (or read from a file).

A rule is data, not code, so the recording process and ``crucible watch`` evaluate the very same
thing; every argument is checked here, and a bad one is an ``InvalidArgumentError`` naming it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError
from ..names import normalize

__all__ = ["AGGREGATIONS", "KINDS", "OPERATORS", "Rule", "absent", "nonfinite", "parse_duration", "threshold"]

KINDS = ("nonfinite", "threshold", "absent")
OPERATORS = (">", ">=", "<", "<=", "==", "!=")
#: Aggregations of a threshold rule over its window; ``pNN`` is any percentile (p50, p95, p99.9 ...).
AGGREGATIONS = ("last", "mean", "min", "max", "sum", "count", "rate", "pNN")
DEFAULT_EVENT = "crucible_train.batch.stop"

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_PCT = re.compile(r"p(\d{1,2}(?:\.\d+)?)")


def parse_duration(argument: str, value: object, *, allow_zero: bool = True) -> float:
    """Seconds from a number or a Prometheus-style string (``"90s"``, ``"5m"``, ``"1h30m"``)."""
    if isinstance(value, bool):
        raise InvalidArgumentError(argument, f"expected seconds or a duration like '5m', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise InvalidArgumentError(argument, f"expected a duration like '30s', '5m' or '1h', got {value!r}")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise InvalidArgumentError(argument, f"expected seconds or a duration like '5m', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise InvalidArgumentError(argument, f"must be {'>= 0' if allow_zero else '> 0'} seconds, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Rule:
    """One alert rule (build it with ``nonfinite``, ``threshold`` or ``absent``).

    ``for_`` is how long the condition must hold (pending) before the alert fires;
    ``keep_firing_for`` how long it keeps firing after the condition stops holding
    (Prometheus' ``for`` and ``keep_firing_for``). Durations are seconds.
    """

    name: str
    kind: str
    event: str
    measurement: str | None = None
    op: str | None = None
    value: float | None = None
    agg: str = "last"
    window: float | None = None
    for_: float = 0.0
    keep_firing_for: float = 0.0
    where: tuple[tuple[str, str], ...] = ()
    by: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    summary: str = ""
    quantile: float | None = field(default=None, compare=False)

    def condition(self, agg_value: float) -> bool:
        """Whether an aggregate value meets a threshold rule's comparison."""
        v, x = agg_value, float(self.value or 0.0)
        op = self.op
        if op == ">":
            return v > x
        if op == ">=":
            return v >= x
        if op == "<":
            return v < x
        if op == "<=":
            return v <= x
        if op == "==":
            return v == x
        return v != x

    def describe(self) -> str:
        """A one-line description: ``p95(duration of req_llm.request.stop over 300s) > 2e9``."""
        if self.kind == "absent":
            return f"no {self.event} for {_fmt_s(self.window)}"
        what = f"{self.measurement} of {self.event}"
        if self.kind == "nonfinite":
            return f"{what} is NaN or inf" + (f" within {_fmt_s(self.window)}" if self.window else "")
        inner = f"{self.agg}({what}" + (f" over {_fmt_s(self.window)})" if self.window else ")")
        return f"{inner} {self.op} {self.value:g}"

    def to_dict(self) -> dict[str, Any]:
        """The rule as the file format writes it (``for`` spelled as in Prometheus)."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "event": self.event}
        for key in ("measurement", "op", "value", "window"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.kind == "threshold":
            out["agg"] = self.agg
        out["for"], out["keep_firing_for"] = self.for_, self.keep_firing_for
        if self.where:
            out["where"] = dict(self.where)
        if self.by:
            out["by"] = list(self.by)
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.summary:
            out["summary"] = self.summary
        return out


def _fmt_s(seconds: float | None) -> str:
    s = float(seconds or 0)
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if s >= size and s % size == 0:
            return f"{s / size:g}{unit}"
    return f"{s:g}s"


def _name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError("name", f"a rule needs a non-empty name, got {name!r}")
    return name.strip()


def _event(event: object) -> str:
    try:
        return normalize(event)[0]
    except Exception as exc:
        raise InvalidArgumentError("event", f"not an event name: {event!r} ({exc})") from None


def _measurement(measurement: object) -> str:
    if not isinstance(measurement, str) or not measurement:
        raise InvalidArgumentError("measurement", f"expected a measurement key such as 'loss', got {measurement!r}")
    return measurement


def _pairs(argument: str, value: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(argument, f"expected a mapping of names to values, got {type(value).__name__}")
    from .state import label_value

    out = []
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise InvalidArgumentError(argument, f"keys must be non-empty strings, got {k!r}")
        out.append((k, label_value(v)))
    return tuple(sorted(out))


def _by(by: Iterable[str] | str | None) -> tuple[str, ...]:
    if by is None:
        return ()
    items = [by] if isinstance(by, str) else list(by)
    if not all(isinstance(b, str) and b for b in items):
        raise InvalidArgumentError("by", f"expected field names such as 'host' or 'gpu_index', got {by!r}")
    return tuple(items)


def _common(
    name: object, for_: object, keep_firing_for: object, labels: Any, summary: object
) -> tuple[str, float, float, tuple[tuple[str, str], ...], str]:
    if not isinstance(summary, str):
        raise InvalidArgumentError("summary", f"expected a string, got {type(summary).__name__}")
    return (
        _name(name),
        parse_duration("for_", for_),
        parse_duration("keep_firing_for", keep_firing_for),
        _pairs("labels", labels),
        summary,
    )


def nonfinite(
    name: str,
    measurement: str = "loss",
    *,
    event: Any = DEFAULT_EVENT,
    window: float | str | None = None,
    for_: float | str = 0,
    keep_firing_for: float | str = 0,
    where: Mapping[str, Any] | None = None,
    by: Iterable[str] | str | None = None,
    labels: Mapping[str, Any] | None = None,
    summary: str = "",
) -> Rule:
    """NaN or inf in ``measurement`` of ``event``: the last value seen (or any within ``window``)."""
    n, f, k, lab, s = _common(name, for_, keep_firing_for, labels, summary)
    w = None if window is None else parse_duration("window", window, allow_zero=False)
    return Rule(n, "nonfinite", _event(event), _measurement(measurement), None, None, "last", w, f, k,
                _pairs("where", where), _by(by), lab, s)  # fmt: skip


def threshold(
    name: str,
    measurement: str,
    op: str,
    value: float,
    *,
    event: Any = DEFAULT_EVENT,
    agg: str = "last",
    window: float | str | None = None,
    for_: float | str = 0,
    keep_firing_for: float | str = 0,
    where: Mapping[str, Any] | None = None,
    by: Iterable[str] | str | None = None,
    labels: Mapping[str, Any] | None = None,
    summary: str = "",
) -> Rule:
    """``agg(measurement of event over window) op value``, e.g. p95 ``duration`` over 5 minutes ``>`` 2e9.

    ``agg``: last, mean, min, max, sum, count, rate (events per second) or a percentile ``pNN``
    (from a sketch with 1% relative error). Non-finite values are left out of every aggregate (the
    ``nonfinite`` rule watches them); a window without a finite value is no data.
    """
    n, f, k, lab, s = _common(name, for_, keep_firing_for, labels, summary)
    if op not in OPERATORS:
        raise InvalidArgumentError("op", f"expected one of {', '.join(OPERATORS)}, got {op!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgumentError("value", f"expected a finite number, got {value!r}")
    quantile = None
    if not isinstance(agg, str):
        raise InvalidArgumentError("agg", f"expected one of {', '.join(AGGREGATIONS)}, got {agg!r}")
    m = _PCT.fullmatch(agg)
    if m:
        quantile = float(m.group(1)) / 100.0
    elif agg not in AGGREGATIONS:
        raise InvalidArgumentError("agg", f"expected one of {', '.join(AGGREGATIONS)}, got {agg!r}")
    w = None if window is None else parse_duration("window", window, allow_zero=False)
    if w is None and agg != "last":
        raise InvalidArgumentError("window", f"agg={agg!r} needs a window (seconds or a duration like '5m')")
    return Rule(n, "threshold", _event(event), _measurement(measurement), op, float(value), agg, w, f, k,
                _pairs("where", where), _by(by), lab, s, quantile)  # fmt: skip


def absent(
    name: str,
    event: Any = DEFAULT_EVENT,
    window: float | str = "10m",
    *,
    for_: float | str = 0,
    keep_firing_for: float | str = 0,
    where: Mapping[str, Any] | None = None,
    labels: Mapping[str, Any] | None = None,
    summary: str = "",
) -> Rule:
    """No ``event`` for ``window`` while the experiment is live (counted from its start): a stalled run."""
    n, f, k, lab, s = _common(name, for_, keep_firing_for, labels, summary)
    w = parse_duration("window", window, allow_zero=False)
    return Rule(n, "absent", _event(event), None, None, None, "last", w, f, k, _pairs("where", where), (), lab, s)
