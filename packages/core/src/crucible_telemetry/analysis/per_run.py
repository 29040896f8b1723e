"""One value per run: the summary of a training metric (``val_loss.min``, ``val_loss.last``, ``loss.last5``).

The points of one training curve are autocorrelated, not independent samples, so a comparison of
runs on a training metric uses one number per run. Per-request metrics (latency, ttft, cost,
tokens, success) are different: each request is an independent unit and stays one.

Spellings: ``NAME`` (the last value), ``NAME.last``, ``NAME.min``, ``NAME.max``, ``NAME.first``,
``NAME.mean`` (over the whole run) and ``NAME.lastK`` (mean of the last K values, e.g. ``loss.last5``).
``NAME`` is a name of the run's metric name space (:mod:`crucible_telemetry.analysis.names`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidArgumentError
from .series import METRICS, MetricSpec, load_values, metric_spec
from .summary import REQUEST_EVENTS

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["RunMetric", "RunValues", "is_per_request", "parse_run_metric", "request_or_run_values", "run_values"]

_REQUEST = {e for pair in REQUEST_EVENTS for e in pair}
_STAT = re.compile(r"^(last|min|max|first|mean|last([1-9][0-9]*))$")
#: training names of the old metric table, as the events that hold them
_TRAINING = {
    "loss": "crucible_train.batch.stop:loss",
    "accuracy": "crucible_train.batch.stop:accuracy",
    "step_time": "crucible_train.batch.stop:duration",
}


def parse_run_metric(text: str) -> tuple[str, str | None]:
    """``"val_loss.min"`` -> ``("val_loss", "min")``; ``"loss.last5"`` -> ``("loss", "last5")``; no suffix -> None."""
    bare = text.strip().removeprefix("metrics.")
    stem, dot, suffix = bare.rpartition(".")
    if dot and stem and not stem.endswith(":") and _STAT.match(suffix):
        return stem, suffix
    return bare, None


def is_per_request(spec: MetricSpec) -> bool:
    """Whether a metric's unit is one request (latency, ttft, cost, tokens, success), not a training curve."""
    events = spec.events + spec.failure_events
    return bool(events) and all(e in _REQUEST for e in events)


@dataclass(frozen=True)
class RunMetric:
    """A metric summarised to one value per run.

    Attributes:
        text: what the user wrote (``"val_loss.min"``).
        metric: the metric of the run's name space (``"val_loss"``) or a request metric (``"latency"``).
        stat: ``"last"``, ``"min"``, ``"max"``, ``"first"``, ``"mean"`` or ``"lastK"``.
        spec: label, unit and direction of the metric.
        per_request: the metric is per request (the run's value is a summary of its requests).
        chosen: whether the user chose ``stat`` (False: the default was used).
    """

    text: str
    metric: str
    stat: str
    spec: MetricSpec
    per_request: bool = False
    chosen: bool = True

    @property
    def name(self) -> str:
        """``val_loss.min``: the spelling of this summary."""
        return f"{self.metric}.{self.stat}"

    @property
    def words(self) -> str:
        """``the min of val_loss in each run`` / ``the mean of its last 5 values``."""
        m = re.fullmatch(r"last(\d+)", self.stat)
        what = f"the mean of the last {m.group(1)} values" if m else f"the {self.stat}"
        return f"{what} of {self.spec.label} in each run"

    def as_spec(self) -> MetricSpec:
        """A :class:`MetricSpec` labelled with the summary (``val_loss.min``)."""
        s = self.spec
        return MetricSpec(
            self.name, self.name, s.unit, "continuous", s.events, s.measurement, s.scale, (), s.lower_is_better
        )


@dataclass
class RunValues:
    """The value of each run (None where a run has none) and a note when a default summary was used."""

    metric: RunMetric
    values: dict[str, float | None]
    note: str | None = None

    def present(self) -> dict[str, float]:
        """Runs that have a value."""
        return {k: v for k, v in self.values.items() if v is not None}


def _lower_is_better(name: str) -> bool | None:
    low = name.lower()
    if any(w in low for w in ("loss", "error", "perplexity", "ppl", "latency", "time", "wer", "cer", "mse", "mae")):
        return True
    if any(w in low for w in ("acc", "f1", "auc", "precision", "recall", "bleu", "rouge", "reward", "score")):
        return False
    return None


def resolve_run_metric(hub: Telemetry, metric: str, ids: Sequence[str], *, argument: str = "metric") -> RunMetric:
    """Resolve a spelling against the runs ``ids`` (errors name ``argument`` and suggest names)."""
    if not isinstance(metric, str) or not metric.strip():
        raise InvalidArgumentError(argument, f"expected a metric name such as 'val_loss.min', got {metric!r}")
    text = metric.strip()
    stem, stat = parse_run_metric(text)
    request = _request_spec(stem)
    if request is not None:
        return RunMetric(text, stem, stat or "mean", request, per_request=True, chosen=stat is not None)
    from .names import resolve_metric

    try:
        if stat in ("last", "min", "max", "first"):  # the name space's own suffixes: its suggestions keep them
            ref = resolve_metric(hub, text, list(ids), argument=argument)
        else:
            ref = resolve_metric(hub, stem, list(ids), argument=argument, stats=False)
        name = ref.metric
    except InvalidArgumentError:
        if stem not in _TRAINING:
            raise
        name = _TRAINING[stem]
    key = name.rpartition(":")[2]
    duration = key == "duration"
    label = METRICS[stem].label if stem in METRICS and stem in _TRAINING else name
    spec = MetricSpec(
        name,
        label,
        "ms" if duration else "",
        "continuous",
        (name.rpartition(":")[0],) if ":" in name else (),
        key,
        1e-6 if duration else 1.0,
        lower_is_better=True if duration else _lower_is_better(key),
    )
    default = "mean" if duration else "last"
    return RunMetric(text, name, stat or default, spec, chosen=stat is not None)


def _request_spec(stem: str) -> MetricSpec | None:
    if stem in _TRAINING:
        return None
    if stem in METRICS or ":" in stem:
        try:
            spec = metric_spec(stem)
        except InvalidArgumentError:
            return None
        return spec if is_per_request(spec) else None
    return None


def _reduce(values: np.ndarray, stat: str) -> float | None:
    v = values[np.isfinite(values)]
    if not v.size:
        return None
    if stat == "mean":
        return float(v.mean())
    if stat == "last":
        return float(v[-1])
    if stat == "first":
        return float(v[0])
    if stat == "min":
        return float(v.min())
    if stat == "max":
        return float(v.max())
    k = int(stat.removeprefix("last"))
    return float(v[-k:].mean())


def run_values(
    hub: Telemetry, experiment_ids: Sequence[str], metric: str | RunMetric, *, argument: str = "metric"
) -> RunValues:
    """The value of ``metric`` (a spelling as in the module docstring) for each run, in order.

    ``last``, ``min``, ``max`` and ``first`` of a training metric come from the ``summaries`` view;
    ``mean`` and ``lastK`` from its curve; a per-request metric's value is a summary of the run's requests.
    """
    ids = list(experiment_ids)
    rm = metric if isinstance(metric, RunMetric) else resolve_run_metric(hub, metric, ids, argument=argument)
    values: dict[str, float | None] = {i: None for i in ids}
    if rm.per_request:
        for i, v in load_values(hub, ids, rm.spec).items():
            values[i] = _reduce(v, rm.stat)
    elif rm.stat in ("last", "min", "max", "first"):
        from .names import metric_summaries

        df = metric_summaries(hub, ids, [rm.metric])
        for exp_id, v in zip(df["experiment_id"], df[rm.stat]):
            values[str(exp_id)] = None if v is None or v != v else float(v) * rm.spec.scale
    else:
        from .names import MetricRef, metric_series

        df = metric_series(hub, ids, MetricRef(rm.metric, rm.metric), x="step")
        for exp_id, part in df.groupby("experiment_id", sort=False):
            values[str(exp_id)] = _reduce(part["value"].to_numpy(dtype=np.float64) * rm.spec.scale, rm.stat)
    note = None
    if not rm.chosen and not rm.per_request:
        note = (
            f"{rm.text} is a training curve: compared on one value per run, its {rm.stat} ({rm.name}); "
            "the points of one curve are not independent samples (choose with .min, .last or .last5)"
        )
    return RunValues(rm, values, note)


def request_or_run_values(
    hub: Telemetry, metric: str | MetricSpec, ids: list[str]
) -> tuple[MetricSpec, RunValues | None]:
    """A per-request metric as it is (each request a unit); anything else as one value per run."""
    if isinstance(metric, MetricSpec):
        if is_per_request(metric):
            return metric, None
        metric = metric.name
    if not isinstance(metric, str) or not metric.strip():
        raise InvalidArgumentError(
            "metric", f"expected a metric name such as 'latency' or 'val_loss.min', got {metric!r}"
        )
    _, stat = parse_run_metric(metric)
    if stat is None:
        try:
            spec = metric_spec(metric)
        except InvalidArgumentError:
            spec = None
        if spec is not None and is_per_request(spec):
            return spec, None
    rv = run_values(hub, ids, metric)
    return rv.metric.as_spec(), rv
