"""Live statistics per experiment, updated from each flushed batch in O(1) memory per series.

Counts, sums, Welford mean/variance (merged batch-wise with Chan's formula), min/max
and a DDSketch for percentiles with a stated 1% relative error.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from .sketch import RELATIVE_ACCURACY, QuantileSketch

if TYPE_CHECKING:
    from .hub import Telemetry

__all__ = ["SeriesStats", "Streaming"]


class SeriesStats:
    """Running statistics of one numeric series."""

    __slots__ = ("count", "m2", "max", "mean", "min", "nonfinite", "sketch", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.nonfinite = 0
        self.sketch = QuantileSketch()

    def update(self, values: np.ndarray[Any, Any]) -> None:
        """Fold a batch of values in (NaN and inf are counted, not averaged)."""
        finite = values[np.isfinite(values)]
        self.nonfinite += int(values.size - finite.size)
        n = int(finite.size)
        if n == 0:
            return
        with np.errstate(over="ignore", invalid="ignore"):
            scale = float(np.abs(finite).max())
            if scale > 1e150:  # squares of such values overflow: work in units of the largest
                x = finite / scale
                x_mean = float(x.mean())
                b_mean = x_mean * scale
                b_m2 = float(((x - x_mean) ** 2).sum()) * scale * scale  # inf when the variance is beyond floats
            else:
                b_mean = float(finite.mean())
                b_m2 = float(((finite - b_mean) ** 2).sum())
        total = self.count + n
        delta = b_mean - self.mean
        self.mean += delta * n / total
        with np.errstate(over="ignore", invalid="ignore"):
            self.m2 += b_m2 + (delta * (self.count * n / total)) * delta if self.count else b_m2
        self.count = total
        self.sum += float(finite.sum())
        self.min = min(self.min, float(finite.min()))
        self.max = max(self.max, float(finite.max()))
        self.sketch.add_many(finite)

    def summary(self) -> dict[str, Any]:
        """count, sum, mean, std, min, max, p50, p90, p95, p99 and the sketch's relative error."""
        if self.count == 0:
            return {"count": 0, "nonfinite": self.nonfinite}
        q = self.sketch.quantile
        return {
            "count": self.count,
            "sum": self.sum,
            "mean": self.mean,
            "std": math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0,
            "min": self.min,
            "max": self.max,
            "p50": q(0.5),
            "p90": q(0.9),
            "p95": q(0.95),
            "p99": q(0.99),
            "nonfinite": self.nonfinite,
            "relative_error": RELATIVE_ACCURACY,
        }


class _ExperimentStats:
    __slots__ = ("events", "series", "stopped")

    def __init__(self) -> None:
        self.events: dict[str, int] = {}
        self.series: dict[tuple[str, str], SeriesStats] = {}
        self.stopped = False


class Streaming:
    """The live stats of every experiment of one hub (``ct.streaming``)."""

    def __init__(self, hub: Telemetry) -> None:
        self._hub = hub
        self._lock = threading.Lock()
        self._stats: dict[str, _ExperimentStats] = {}

    def update(self, experiment_id: str, counts: dict[str, int], series: dict[tuple[str, str], Any]) -> None:
        """Fold one flushed batch in (called by the writer thread)."""
        with self._lock:
            st = self._stats.get(experiment_id)
            if st is None:
                st = self._stats[experiment_id] = _ExperimentStats()
            if st.stopped:
                return
            for name, c in counts.items():
                st.events[name] = st.events.get(name, 0) + c
            for key, values in series.items():
                s = st.series.get(key)
                if s is None:
                    s = st.series[key] = SeriesStats()
                s.update(np.asarray(values, dtype=np.float64))

    def get_metrics(self, experiment_id: str) -> dict[str, Any]:
        """Live stats of one experiment, after draining what is still buffered."""
        self._hub.get_experiment(experiment_id)
        self._hub.flush()
        with self._lock:
            st = self._stats.get(experiment_id) or _ExperimentStats()
            events: dict[str, Any] = {name: {"count": c, "measurements": {}} for name, c in st.events.items()}
            for (name, key), s in st.series.items():
                events.setdefault(name, {"count": 0, "measurements": {}})["measurements"][key] = s.summary()
            exp = self._hub._experiments.get(experiment_id)
            return {
                "experiment_id": experiment_id,
                "events_total": sum(st.events.values()),
                "dropped_paused": exp.dropped_paused if exp is not None else 0,
                "relative_error": RELATIVE_ACCURACY,
                "tracking": not st.stopped,
                "events": events,
            }

    def reset(self, experiment_id: str) -> None:
        """Forget the live stats of an experiment (stored events are untouched)."""
        self._hub.get_experiment(experiment_id)
        self._hub.flush()
        with self._lock:
            self._stats[experiment_id] = _ExperimentStats()

    def stop(self, experiment_id: str) -> None:
        """Stop updating live stats for an experiment (its last values stay readable)."""
        self._hub.get_experiment(experiment_id)
        self._hub.flush()
        with self._lock:
            st = self._stats.setdefault(experiment_id, _ExperimentStats())
            st.stopped = True
