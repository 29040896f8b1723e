"""Streaming state of one alert series and its state machine (Prometheus semantics).

A window is kept as ``RESOLUTION`` time buckets (count, sum, min, max and, for a percentile, a
sketch each), so memory per series is bounded whatever the event rate; bucket ``k`` holds the
values with ``k*b <= t < (k+1)*b`` where ``b = window / RESOLUTION``, so a window is exact to
``b`` at its old edge. The same buckets in the recording process and in ``crucible watch`` give
the same answer for the same data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..sketch import QuantileSketch
from .rules import Rule

__all__ = [
    "FIRING",
    "INACTIVE",
    "PENDING",
    "RESOLUTION",
    "RESOLVED",
    "AlertState",
    "Series",
    "Transition",
    "label_value",
]

INACTIVE, PENDING, FIRING, RESOLVED = "inactive", "pending", "firing", "resolved"
RESOLUTION = 60


def label_value(v: Any) -> str:
    """A label as a string: integral floats without ``.0`` (a GPU index from a measurement or metadata)."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and math.isfinite(v) and v == int(v):
        return str(int(v))
    return str(v)


class _Bucket:
    __slots__ = ("count", "max", "min", "sketch", "sum")

    def __init__(self, sketch: bool) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.sketch = QuantileSketch() if sketch else None


class Series:
    """What one rule needs of one (experiment, labels) stream: buckets, the last value, when last seen."""

    __slots__ = ("buckets", "last_t", "last_v", "nonfinite", "rule", "width")

    def __init__(self, rule: Rule, since: float | None = None) -> None:
        self.rule = rule
        self.width = (rule.window or 0.0) / RESOLUTION
        self.buckets: dict[int, _Bucket] = {}
        self.nonfinite: dict[int, int] = {}  # bucket -> count of NaN/inf (nonfinite rules with a window)
        self.last_t: float | None = since  # absence counts from here
        self.last_v: float | None = None

    def add(self, t: float, v: float | None) -> None:
        """Fold one observation in (``v`` None for an absence rule, which only needs the time)."""
        if self.last_t is None or t >= self.last_t:
            self.last_t = t
            self.last_v = v
        if v is None or not self.width:
            return
        k = math.floor(t / self.width)
        if not math.isfinite(v):
            self.nonfinite[k] = self.nonfinite.get(k, 0) + 1
            return
        b = self.buckets.get(k)
        if b is None:
            b = self.buckets[k] = _Bucket(self.rule.quantile is not None)
        b.count += 1
        b.sum += v
        if v < b.min:
            b.min = v
        if v > b.max:
            b.max = v
        if b.sketch is not None:
            b.sketch.sketch.add(v)

    def _prune(self, now: float) -> tuple[int, int]:
        hi = math.floor(now / self.width)
        lo = hi - RESOLUTION  # buckets lo+1 .. hi are in the window
        for d in (self.buckets, self.nonfinite):
            for k in [k for k in d if k <= lo]:
                del d[k]
        return lo, hi

    def value(self, now: float) -> float | None:
        """The rule's aggregate at ``now`` (None: no data)."""
        rule = self.rule
        if rule.kind == "absent":
            return None if self.last_t is None else now - self.last_t
        if rule.kind == "nonfinite":
            if not self.width:
                return self.last_v
            lo, hi = self._prune(now)
            bad = sum(c for k, c in self.nonfinite.items() if lo < k <= hi)
            if bad:
                return math.nan
            return self.last_v if any(lo < k <= hi for k in self.buckets) else None
        if not self.width:  # last value
            v = self.last_v
            return v if v is not None and math.isfinite(v) else None
        lo, hi = self._prune(now)
        bs = [b for k, b in self.buckets.items() if lo < k <= hi]
        if not bs:
            return None
        agg = rule.agg
        n = sum(b.count for b in bs)
        if agg == "count":
            return float(n)
        if agg == "rate":
            return n / float(rule.window or 1.0)
        if agg == "sum":
            return math.fsum(b.sum for b in bs)
        if agg == "mean":
            return math.fsum(b.sum for b in bs) / n
        if agg == "min":
            return min(b.min for b in bs)
        if agg == "max":
            return max(b.max for b in bs)
        if agg == "last":
            v, t = self.last_v, self.last_t
            return (
                v
                if v is not None and t is not None and math.isfinite(v) and t > now - self.width * RESOLUTION
                else None
            )
        merged = QuantileSketch()
        for b in bs:
            if b.sketch is not None:
                merged.merge(b.sketch)
        return merged.quantile(rule.quantile or 0.5)

    def holds(self, now: float, live: bool) -> tuple[bool | None, float | None]:
        """``(condition, value)`` at ``now``; condition None is no data (neither fires nor resolves)."""
        rule = self.rule
        if rule.kind == "absent":
            if not live or self.last_t is None:
                return None, None
            gap = now - self.last_t
            return gap >= float(rule.window or 0), gap
        v = self.value(now)
        if v is None:
            return None, None
        if rule.kind == "nonfinite":
            return not math.isfinite(v), v
        return rule.condition(v), v


@dataclass(frozen=True)
class Transition:
    """One change of an alert's state, at evaluation time ``at`` (UNIX seconds)."""

    rule: str
    state: str
    previous: str
    at: float
    experiment_id: str
    labels: dict[str, str] = field(default_factory=dict)
    value: float | None = None
    active_since: float | None = None
    summary: str = ""

    def key(self) -> tuple[Any, ...]:
        """What two evaluations of the same data agree on: rule, state, experiment, labels and time."""
        return (self.rule, self.state, self.previous, self.experiment_id, tuple(sorted(self.labels.items())), self.at)


class AlertState:
    """inactive -> pending -> firing -> resolved for one series; ``step`` returns the new state or None."""

    __slots__ = ("active_since", "last_true", "state", "value")

    def __init__(self) -> None:
        self.state = INACTIVE
        self.active_since: float | None = None
        self.last_true: float | None = None
        self.value: float | None = None

    def step(self, rule: Rule, now: float, cond: bool | None, value: float | None) -> str | None:
        """Advance to ``now`` given the condition (None: no data, nothing changes)."""
        if cond is None:
            return None
        self.value = value
        s = self.state
        if cond:
            self.last_true = now
            if s in (INACTIVE, RESOLVED):
                self.active_since = now
                self.state = FIRING if rule.for_ <= 0 else PENDING
                return self.state
            if s == PENDING and now - (self.active_since or now) >= rule.for_:
                self.state = FIRING
                return FIRING
            return None
        if s == PENDING:
            self.state, self.active_since = INACTIVE, None
            return INACTIVE
        if s == FIRING:
            if rule.keep_firing_for > 0 and now - (self.last_true or now) < rule.keep_firing_for:
                return None
            self.state = RESOLVED
            return RESOLVED
        return None
