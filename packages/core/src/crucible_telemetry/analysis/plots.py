"""Plots of experiments: metric curves overlaid by step or wall time, and latency histograms.

matplotlib with the Agg canvas (``matplotlib.figure.Figure``, never pyplot), so plotting
works headless and leaves global state alone.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..hub import Telemetry
    from .series import MetricSpec

__all__ = ["COLORS", "ema", "figure_png", "plot_histogram", "plot_metric"]

#: Line colors, in order (matplotlib's tab10).
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def ema(values: np.ndarray, factor: float) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing): ``factor`` in [0, 1)."""
    if not 0 <= factor < 1:
        raise InvalidArgumentError("smooth", f"expected an EMA factor in [0, 1), e.g. 0.6, got {factor!r}")
    out = np.empty_like(values, dtype=np.float64)
    last = 0.0
    for i, v in enumerate(values):
        last = last * factor + (1 - factor) * float(v)
        out[i] = last / (1 - factor ** (i + 1))
    return out


def _hub(hub: Telemetry | None) -> Telemetry:
    if hub is not None:
        return hub
    from .._hubs import default

    return default()


def _ids(experiment_ids: Iterable[str] | str) -> list[str]:
    ids = [experiment_ids] if isinstance(experiment_ids, str) else [getattr(i, "id", i) for i in experiment_ids]
    if not ids or not all(isinstance(i, str) for i in ids):
        raise InvalidArgumentError("experiment_ids", f"expected experiment ids, got {experiment_ids!r}")
    return ids


def _labels(hub: Telemetry, ids: list[str], by: str = "experiment") -> list[str]:
    """Legend label of each experiment: its name, or its condition when grouping by condition."""
    if by not in ("experiment", "condition"):
        raise InvalidArgumentError("by", f"expected 'experiment' or 'condition', got {by!r}")
    exps = [hub.get_experiment(i) for i in ids]
    if by == "condition":
        return [e.condition or "(no condition)" for e in exps]
    names = [e.name for e in exps]
    return names if len(set(names)) == len(names) else [f"{e.name} ({e.id})" for e in exps]


def _colors(labels: list[str]) -> list[str]:
    """One color per distinct label, in order of first appearance."""
    order: dict[str, str] = {}
    for label in labels:
        order.setdefault(label, COLORS[len(order) % len(COLORS)])
    return [order[label] for label in labels]


def _figure(width: float, height: float, dpi: int) -> Figure:
    from matplotlib.figure import Figure

    if width <= 0 or height <= 0 or dpi <= 0:
        raise InvalidArgumentError("size", f"width, height and dpi must be positive, got {width}x{height}@{dpi}")
    return Figure(figsize=(width, height), dpi=dpi, layout="constrained")


def _save(fig: Figure, out: str | os.PathLike[str] | None) -> Figure | Path:
    if out is None:
        return fig
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi, format=path.suffix[1:].lower() or "png")
    return path


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes (for data URIs)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def _by_step(steps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean value per global step (ranks and micro-batches merged); the event index when steps are missing."""
    if steps.size and np.isfinite(steps).all():
        uniq, inv = np.unique(steps, return_inverse=True)
        sums = np.bincount(inv, weights=values)
        counts = np.bincount(inv)
        return uniq, sums / counts
    return np.arange(1, values.size + 1, dtype=np.float64), values


def plot_metric(
    experiment_ids: Iterable[str] | str,
    metric: str | MetricSpec = "loss",
    *,
    x: str = "step",
    smooth: float | None = None,
    kind: str = "auto",
    by: str = "experiment",
    out: str | os.PathLike[str] | None = None,
    hub: Telemetry | None = None,
    title: str | None = None,
    width: float = 8.0,
    height: float = 4.5,
    dpi: int = 100,
) -> Figure | Path:
    """Curves of a metric for several experiments overlaid (or histograms for request metrics).

    Args:
        experiment_ids: experiment ids to overlay.
        metric: a metric name as in ``ct.analysis.compare_experiments`` (``"loss"``, ``"latency"``, ...).
        x: ``"step"`` (global step, or event index) or ``"time"`` (seconds since the first value).
        smooth: EMA factor in [0, 1) drawn over the faded raw curve; None draws the raw curve.
        kind: ``"line"``, ``"hist"``, or ``"auto"`` (histograms for latency, ttft, cost, tokens).
        by: ``"experiment"`` (a color each) or ``"condition"`` (a color per condition; seeds
            share it, and histograms pool them).
        out: where to write the image (PNG, SVG or PDF by suffix); None returns the ``Figure``.
        hub: the ``Telemetry`` to read; default ``ct.default()``.
        title: figure title; default from the metric.
        width, height, dpi: size in inches and resolution: the PNG is ``width*dpi x height*dpi`` pixels.

    Example:
        >>> from crucible_telemetry.plots import plot_metric
        >>> plot_metric([run_a, run_b], "loss", smooth=0.6, out="loss.png")  # doctest: +SKIP
        PosixPath('loss.png')
    """
    from .series import load_series, metric_spec

    h = _hub(hub)
    ids = _ids(experiment_ids)
    spec = metric_spec(metric)
    if kind not in ("auto", "line", "hist"):
        raise InvalidArgumentError("kind", f"expected 'auto', 'line' or 'hist', got {kind!r}")
    if x not in ("step", "time"):
        raise InvalidArgumentError("x", f"expected 'step' or 'time', got {x!r}")
    if smooth is not None:
        ema(np.zeros(1), smooth)  # validates the factor before any work
    if kind == "hist" or (kind == "auto" and spec.histogram):
        return plot_histogram(ids, spec, by=by, out=out, hub=h, title=title, width=width, height=height, dpi=dpi)
    series = load_series(h, ids, spec)
    labels = _labels(h, ids, by)
    colors = _colors(labels)
    fig = _figure(width, height, dpi)
    ax = fig.add_subplot()
    drawn = 0
    seen: set[str] = set()
    for exp_id, label, color in zip(ids, labels, colors):
        s = series[exp_id]
        if not s.values.size:
            continue
        legend = label if label not in seen else None
        seen.add(label)
        if x == "step":
            xs, ys = _by_step(s.steps, s.values)
        else:
            xs, ys = s.seconds, s.values
        if smooth:
            ax.plot(xs, ys, color=color, alpha=0.25, linewidth=1)
            ax.plot(xs, ema(ys, smooth), color=color, linewidth=2, label=legend)
        else:
            ax.plot(xs, ys, color=color, linewidth=2, label=legend)
        drawn += 1
    if not drawn:
        raise InvalidArgumentError("metric", f"no {spec.name!r} values in {', '.join(ids)}")
    ax.set_xlabel("global step" if x == "step" else "seconds since first value")
    ax.set_ylabel(spec.axis_label())
    ax.set_title(title or f"{spec.label}" + (f" (EMA {smooth})" if smooth else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, out)


def plot_histogram(
    experiment_ids: Iterable[str] | str,
    metric: str | MetricSpec = "latency",
    *,
    bins: int = 40,
    by: str = "experiment",
    out: str | os.PathLike[str] | None = None,
    hub: Telemetry | None = None,
    title: str | None = None,
    width: float = 8.0,
    height: float = 4.5,
    dpi: int = 100,
) -> Figure | Path:
    """Histograms of a per-event metric (latency by default) for several experiments, on shared bins.

    ``by="condition"`` pools each condition's experiments into one histogram.
    """
    from .series import load_values, metric_spec

    h = _hub(hub)
    ids = _ids(experiment_ids)
    spec = metric_spec(metric)
    values = load_values(h, ids, spec)
    present = [v for v in values.values() if v.size]
    if not present:
        raise InvalidArgumentError("metric", f"no {spec.name!r} values in {', '.join(ids)}")
    allv = np.concatenate(present)
    lo, hi = float(allv.min()), float(allv.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, max(2, bins) + 1)
    pooled: dict[str, list[np.ndarray]] = {}
    for exp_id, label in zip(ids, _labels(h, ids, by)):
        pooled.setdefault(label, []).append(values[exp_id])
    fig = _figure(width, height, dpi)
    ax = fig.add_subplot()
    for label, color in zip(pooled, _colors(list(pooled))):
        v = np.concatenate(pooled[label])
        if not v.size:
            continue
        ax.hist(v, bins=edges.tolist(), color=color, alpha=0.35, histtype="stepfilled")
        ax.hist(
            v,
            bins=edges.tolist(),
            color=color,
            linewidth=2,
            histtype="step",
            label=f"{label} (n={v.size}, p50={np.median(v):.3g})",
        )
    ax.set_xlabel(spec.axis_label())
    ax.set_ylabel("events")
    ax.set_title(title or f"{spec.label} distribution")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _save(fig, out)
