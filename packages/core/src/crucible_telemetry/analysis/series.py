"""Metric names -> the per-event values they denote, read from the ``events`` view with bound SQL.

``"latency"``, ``"ttft"``, ``"cost"``, ``"tokens"``, ``"loss"``, ``"step_time"``, ``"success"``,
``"<event>:<measurement>"`` (``"crucible_train.epoch.stop:val_loss"``; ``duration`` is read in
ms), ``"<event prefix>:success"`` (stop vs exception of a span), or a bare measurement name
(every non-start event that carries it).

Comparisons read per-request metrics here, one value per request; a training metric is compared
on one value per run instead (:mod:`.per_run`, through the metric name space of :mod:`.names`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArgumentError
from ..names import normalize
from .summary import REQUEST_EVENTS

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["METRICS", "MetricSpec", "Series", "load_series", "load_values", "metric_spec"]

_STOPS = tuple(s for s, _ in REQUEST_EVENTS)
_ERRS = tuple(e for _, e in REQUEST_EVENTS)
_TRAIN_BATCH = ("crucible_train.batch.stop",)


@dataclass(frozen=True)
class MetricSpec:
    """What a metric name means: which events, which value, in which unit.

    Attributes:
        name: the name as given (``"latency"``, ``"crucible_train.epoch.stop:val_loss"``).
        label: words for verdicts and axes (``"latency"``, ``"success rate"``).
        unit: ``"ms"``, ``"USD"``, ``"tokens"`` or ``""``.
        kind: ``"continuous"`` or ``"binary"`` (success vs failure).
        events: events whose value is read (binary: the success events); empty = any non-start event.
        measurement: key of ``measurements``; None reads the ``duration`` column.
        scale: factor applied to the stored value (ns -> ms is 1e-6).
        failure_events: binary metrics only: the failure events.
        lower_is_better: for words like "better"; None when it depends.
        histogram: plotted as a distribution rather than a curve over steps.
    """

    name: str
    label: str
    unit: str
    kind: str
    events: tuple[str, ...]
    measurement: str | None = None
    scale: float = 1.0
    failure_events: tuple[str, ...] = ()
    lower_is_better: bool | None = None
    histogram: bool = False

    @property
    def binary(self) -> bool:
        """Whether values are successes (1) and failures (0)."""
        return self.kind == "binary"

    def axis_label(self) -> str:
        """``"latency (ms)"``."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


METRICS: dict[str, MetricSpec] = {
    "latency": MetricSpec(
        "latency", "latency", "ms", "continuous", _STOPS, None, 1e-6, lower_is_better=True, histogram=True
    ),
    "ttft": MetricSpec(
        "ttft", "time to first token", "ms", "continuous", _STOPS, "ttft_ns", 1e-6, lower_is_better=True, histogram=True
    ),
    "cost": MetricSpec(
        "cost",
        "cost per request",
        "USD",
        "continuous",
        _STOPS + _ERRS,
        "cost_usd",
        lower_is_better=True,
        histogram=True,
    ),
    "tokens": MetricSpec(
        "tokens", "tokens per request", "tokens", "continuous", _STOPS, "total_tokens", histogram=True
    ),
    "loss": MetricSpec("loss", "training loss", "", "continuous", _TRAIN_BATCH, "loss", lower_is_better=True),
    "accuracy": MetricSpec("accuracy", "accuracy", "", "continuous", _TRAIN_BATCH, "accuracy", lower_is_better=False),
    "step_time": MetricSpec(
        "step_time", "step time", "ms", "continuous", _TRAIN_BATCH, None, 1e-6, lower_is_better=True, histogram=True
    ),
    "success": MetricSpec("success", "success rate", "", "binary", _STOPS, failure_events=_ERRS, lower_is_better=False),
}
METRICS["ttft_ms"] = METRICS["ttft"]
METRICS["latency_ms"] = METRICS["latency"]
METRICS["cost_usd"] = METRICS["cost"]
METRICS["success_rate"] = METRICS["success"]
METRICS["total_tokens"] = METRICS["tokens"]


def metric_spec(metric: str | MetricSpec) -> MetricSpec:
    """Resolve a metric name (see the module docstring) to its :class:`MetricSpec`."""
    if isinstance(metric, MetricSpec):
        return metric
    if not isinstance(metric, str) or not metric.strip():
        raise InvalidArgumentError("metric", f"expected a metric name such as 'latency' or 'loss', got {metric!r}")
    name = metric.strip()
    if name in METRICS:
        return METRICS[name]
    if ":" in name:
        event, _, meas = name.rpartition(":")
        try:
            dotted = normalize(event)[0]
        except InvalidArgumentError:
            raise InvalidArgumentError("metric", f"{name!r}: {event!r} is not an event name") from None
        if not meas:
            raise InvalidArgumentError("metric", f"{name!r}: expected '<event>:<measurement>'")
        if meas == "success":
            prefix = dotted.rsplit(".", 1)[0] if dotted.endswith((".stop", ".exception", ".start")) else dotted
            return MetricSpec(
                name,
                f"{prefix} success rate",
                "",
                "binary",
                (prefix + ".stop",),
                failure_events=(prefix + ".exception",),
                lower_is_better=False,
            )
        if meas == "duration":
            return MetricSpec(
                name,
                f"{dotted} duration",
                "ms",
                "continuous",
                (dotted,),
                None,
                1e-6,
                lower_is_better=True,
                histogram=True,
            )
        return MetricSpec(name, meas, "", "continuous", (dotted,), meas)
    if "." in name or " " in name:
        raise InvalidArgumentError(
            "metric",
            f"unknown metric {name!r}; use one of {', '.join(sorted(METRICS))}, "
            "'<event>:<measurement>' or a measurement name",
        )
    return MetricSpec(name, name, "", "continuous", (), name)


def _value_sql(spec: MetricSpec) -> tuple[str, list[Any]]:
    if spec.binary:
        marks = ", ".join("?" * len(spec.events))
        return f"CASE WHEN event IN ({marks}) THEN 1.0 ELSE 0.0 END", list(spec.events)
    if spec.measurement is None:
        return "CAST(duration AS DOUBLE)", []
    if spec.measurement == "total_tokens":
        return (
            "coalesce(measurements['total_tokens'], measurements['prompt_tokens'] + measurements['completion_tokens'])"
        ), []
    return "measurements[?]", [spec.measurement]


def _event_sql(spec: MetricSpec) -> tuple[str, list[Any]]:
    events = spec.events + spec.failure_events
    if not events:
        return "NOT ends_with(event, '.start')", []
    return f"event IN ({', '.join('?' * len(events))})", list(events)


def _ids(experiment_ids: list[str]) -> tuple[str, list[Any]]:
    if not experiment_ids:
        raise InvalidArgumentError("experiment_ids", "need at least one experiment id")
    return f"experiment_id IN ({', '.join('?' * len(experiment_ids))})", list(experiment_ids)


@dataclass
class Series:
    """Values of one metric for one experiment, in event order, with step and time axes."""

    experiment_id: str
    values: np.ndarray
    steps: np.ndarray  # global_step, NaN where absent
    seconds: np.ndarray  # wall seconds since the experiment's first value


def load_series(hub: Telemetry, experiment_ids: list[str], metric: str | MetricSpec) -> dict[str, Series]:
    """Per-event values (scaled) with their global step and wall time, for each experiment."""
    spec = metric_spec(metric)
    vsql, vparams = _value_sql(spec)
    esql, eparams = _event_sql(spec)
    isql, iparams = _ids(experiment_ids)
    sql = (
        f"SELECT experiment_id, v, CAST(global_step AS DOUBLE) AS step, epoch_us(ts) AS t FROM ("
        f"SELECT *, {vsql} AS v FROM events WHERE {isql} AND {esql}) "
        "WHERE v IS NOT NULL AND isfinite(v) ORDER BY experiment_id, ts, host, pid, seq"
    )
    tbl = hub.store.arrow(sql, vparams + iparams + eparams)
    import pyarrow.compute as pc

    out: dict[str, Series] = {}
    ids = tbl.column("experiment_id")
    vals = tbl.column("v").to_numpy(zero_copy_only=False).astype(np.float64) * spec.scale
    steps = tbl.column("step").to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN
    ts = tbl.column("t").to_numpy(zero_copy_only=False).astype(np.float64)
    for exp_id in experiment_ids:
        m = pc.equal(ids, exp_id).to_numpy(zero_copy_only=False) if tbl.num_rows else np.zeros(0, dtype=bool)
        t = ts[m]
        out[exp_id] = Series(exp_id, vals[m], steps[m], (t - t.min()) / 1e6 if t.size else t)
    return out


def load_values(hub: Telemetry, experiment_ids: list[str], metric: str | MetricSpec) -> dict[str, np.ndarray]:
    """Per-event values of a metric for each experiment (binary metrics: 1.0 success, 0.0 failure)."""
    return {k: s.values for k, s in load_series(hub, experiment_ids, metric).items()}
