"""The evaluator both paths share: observations in, transitions out, on a fixed time grid.

Evaluations happen at ``k * interval`` (UNIX seconds, so every process and ``crucible watch``
use the same instants) and see the observations with ``t <= k * interval``. Only experiments
live at that instant are evaluated; an experiment's absence clock starts at its start.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import InvalidArgumentError
from ..values import to_scalar
from .rules import Rule
from .state import AlertState, Series, Transition, label_value

__all__ = ["Evaluator", "grid", "lookup"]


def grid(after: float, until: float, interval: float) -> range:
    """Grid indices ``k`` with ``after < k * interval <= until``."""
    first = math.floor(after / interval) + 1
    last = math.floor(until / interval)
    return range(first, max(first, last + 1))


def lookup(key: str, m: Mapping[str, Any] | None, md: Mapping[str, Any] | None, ident: Mapping[str, Any]) -> str | None:
    """A label or filter field: metadata first, then measurements, then the row's host/pid/rank/node."""
    if md and key in md:
        v = md[key]
    elif m and key in m:
        v = m[key]
    else:
        v = ident.get(key)
    return None if v is None else label_value(v)


def _number(v: Any) -> float | None:
    t = type(v)
    if t is float or t is int:
        return float(v)
    if t is bool:
        return float(v)
    f = to_scalar(v, host_only=True)
    return None if f is None else float(f)


class Evaluator:
    """Series per (rule, experiment, labels), each with an ``AlertState``; see the module docstring."""

    def __init__(self, rules: Iterable[Rule] = (), interval: float = 10.0) -> None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
            raise InvalidArgumentError("interval", f"expected seconds > 0, got {interval!r}")
        self.interval = float(interval)
        self.rules: list[Rule] = []
        self._by_event: dict[str, list[Rule]] = {}
        self._series: dict[tuple[str, str, tuple[str | None, ...]], tuple[Series, AlertState]] = {}
        self._needs_fields = False
        for r in rules:
            self.add(r)

    @property
    def events(self) -> list[str]:
        """The event names the rules read."""
        return list(self._by_event)

    @property
    def needs_fields(self) -> bool:
        """Whether some rule filters or labels by a field (so rows need their metadata and identity)."""
        return self._needs_fields

    def add(self, rule: Rule) -> None:
        """Add a rule (a second rule of the same name is refused)."""
        if not isinstance(rule, Rule):
            raise InvalidArgumentError("rule", f"expected a Rule (alerts.nonfinite/threshold/absent), got {rule!r}")
        if any(r.name == rule.name for r in self.rules):
            raise InvalidArgumentError("rule", f"a rule named {rule.name!r} is already added")
        self.rules.append(rule)
        self._by_event.setdefault(rule.event, []).append(rule)
        self._needs_fields = self._needs_fields or bool(rule.where or rule.by)

    def observe(
        self,
        t: float,
        event: str,
        experiment_id: str,
        m: Mapping[str, Any] | None,
        md: Mapping[str, Any] | None = None,
        ident: Mapping[str, Any] | None = None,
    ) -> None:
        """Fold one event (at UNIX time ``t``) into the series of the rules that read it."""
        rules = self._by_event.get(event)
        if not rules:
            return
        ident = ident or {}
        for rule in rules:
            if rule.where and any(lookup(k, m, md, ident) != v for k, v in rule.where):
                continue
            v: float | None = None
            if rule.kind != "absent":
                raw = m.get(rule.measurement) if m and rule.measurement else None
                v = None if raw is None else _number(raw)
                if v is None:
                    continue
            labels = tuple(lookup(b, m, md, ident) for b in rule.by)
            key = (rule.name, experiment_id, labels)
            entry = self._series.get(key)
            if entry is None:
                entry = self._series[key] = (Series(rule), AlertState())
            entry[0].add(t, v)

    def evaluate(self, at: float, live: Mapping[str, float]) -> list[Transition]:
        """Evaluate every series of the experiments in ``live`` (id -> start time) at ``at``."""
        for exp_id, since in live.items():
            for rule in self.rules:
                if rule.kind == "absent":
                    key = (rule.name, exp_id, ())
                    if key not in self._series:
                        self._series[key] = (Series(rule, since), AlertState())
        out: list[Transition] = []
        for (_, exp_id, labels), (series, st) in self._series.items():
            if exp_id not in live:
                continue
            rule = series.rule
            cond, value = series.holds(at, True)
            before = st.state
            new = st.step(rule, at, cond, value)
            if new is not None:
                out.append(
                    Transition(
                        rule.name,
                        new,
                        before,
                        at,
                        exp_id,
                        {**dict(rule.labels), **{b: v for b, v in zip(rule.by, labels) if v is not None}},
                        value,
                        st.active_since,
                        rule.summary or rule.describe(),
                    )
                )
        return out

    def active(self) -> list[dict[str, Any]]:
        """Alerts now pending or firing: rule, state, experiment, labels, value and since when."""
        out = []
        for (name, exp_id, labels), (series, st) in self._series.items():
            if st.state in ("pending", "firing"):
                rule = series.rule
                out.append(
                    {
                        "rule": name,
                        "state": st.state,
                        "experiment_id": exp_id,
                        "labels": {**dict(rule.labels), **{b: v for b, v in zip(rule.by, labels) if v is not None}},
                        "value": st.value,
                        "active_since": st.active_since,
                    }
                )
        return out

    def forget(self, experiment_ids: Sequence[str]) -> None:
        """Drop the series of experiments that ended (their alerts keep their last state in the records)."""
        gone = set(experiment_ids)
        for key in [k for k in self._series if k[1] in gone]:
            del self._series[key]
