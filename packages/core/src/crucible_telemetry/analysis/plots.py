"""Plots of runs: metric curves by step, epoch or time (labelled by what differs, mean +/- sd bands by a param), and latency histograms.

matplotlib with the Agg canvas (``matplotlib.figure.Figure``, never pyplot), so plotting
works headless and leaves global state alone.
"""

from __future__ import annotations

import difflib
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidArgumentError
from .series import MetricSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..hub import Telemetry

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


def _labels(hub: Telemetry, ids: list[str], by: str = "experiment", label: str | None = None) -> list[str]:
    """Legend label of each run: the params that differ (or ``label``'s), its condition, or its name."""
    from .labels import fmt_value, run_labels

    if by not in ("experiment", "condition"):
        raise InvalidArgumentError("by", f"expected 'experiment' or 'condition', got {by!r}")
    exps = [hub.get_experiment(i) for i in ids]
    if by == "condition":
        return [e.condition or "(no condition)" for e in exps]
    keys = _label_keys(exps, label)
    if keys is not None:  # asked for: replicates share a label (and a color)
        return [" ".join(f"{k}={fmt_value((e.params or {}).get(k, '-'))}" for k in keys) for e in exps]
    return run_labels(exps)


def _label_keys(exps: list[Any], label: str | None) -> list[str] | None:
    """``"lr"`` or ``"lr,seed"`` checked against the runs' params; None: the params that differ."""
    if label is None:
        return None
    keys = [k.strip().removeprefix("params.") for k in label.split(",") if k.strip()]
    known = sorted({k for e in exps for k in (e.params or {})})
    for k in keys:
        if k not in known:
            close = difflib.get_close_matches(k, known, n=3, cutoff=0.5)
            hint = (
                f"did you mean {' or '.join(repr(c) for c in close)}?"
                if close
                else f"params are {', '.join(known[:12]) or 'none'}"
            )
            raise InvalidArgumentError("label", f"no run has a param {k!r}; {hint}")
    return keys


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


def _by_x(xs: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean value per x (ranks and micro-batches merged); the value's index when x is missing."""
    if xs.size and np.isfinite(xs).all():
        uniq, inv = np.unique(xs, return_inverse=True)
        sums = np.bincount(inv, weights=values)
        counts = np.bincount(inv)
        return uniq, sums / counts
    return np.arange(1, values.size + 1, dtype=np.float64), values


#: Series with fewer points than this are drawn with markers (a 3-point validation curve).
SPARSE = 20
_XLABEL = {"step": "global step", "epoch": "epoch", "time": "seconds since the run started"}


def _curves(
    hub: Telemetry, ids: list[str], metric: str | MetricSpec, x: str
) -> tuple[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The metric's name and each run's curve (x, mean value per x), read through the name space."""
    from .names import metric_series, resolve_metric
    from .per_run import _TRAINING

    name = metric.name if not isinstance(metric, str) else metric
    try:
        ref = resolve_metric(hub, name, ids, stats=False)
    except InvalidArgumentError:
        if name not in _TRAINING:
            raise
        ref = resolve_metric(hub, _TRAINING[name], ids, stats=False)
    df = metric_series(hub, ids, ref, x=x)
    scale = 1e-6 if ref.key == "duration" else 1.0
    out = {}
    for exp_id, part in df.groupby("experiment_id", sort=False):
        xs = part["x"].to_numpy(dtype=np.float64)
        ys = part["value"].to_numpy(dtype=np.float64) * scale
        ok = np.isfinite(ys)
        out[str(exp_id)] = _by_x(xs[ok], ys[ok])
    return ref.metric + (" (ms)" if scale != 1.0 else ""), out


def _request_curves(
    hub: Telemetry, ids: list[str], spec: MetricSpec, x: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each run's requests in order: x is the request number (``step``, ``epoch``) or seconds (``time``)."""
    from .series import load_series

    out = {}
    for exp_id, s in load_series(hub, ids, spec).items():
        xs = s.seconds if x == "time" else np.arange(1, s.values.size + 1, dtype=np.float64)
        out[exp_id] = (xs, s.values)
    return out


def _band(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, sd and count over runs at every x any run has (sd 0 where one run has it)."""
    xs = np.unique(np.concatenate([c[0] for c in curves]))
    table = np.full((len(curves), xs.size), np.nan)
    for i, (cx, cy) in enumerate(curves):
        table[i, np.searchsorted(xs, cx)] = cy
    n = np.isfinite(table).sum(axis=0)
    mean = np.nanmean(table, axis=0)
    sd = np.zeros_like(mean)
    many = n >= 2
    sd[many] = np.nanstd(table[:, many], axis=0, ddof=1)
    return xs, mean, sd, n


def plot_metric(
    experiment_ids: Iterable[str] | str,
    metric: str | MetricSpec = "loss",
    *,
    x: str = "step",
    smooth: float | None = None,
    kind: str = "auto",
    by: str = "experiment",
    label: str | None = None,
    group_by: str | None = None,
    logy: bool = False,
    markers: bool | None = None,
    out: str | os.PathLike[str] | None = None,
    hub: Telemetry | None = None,
    title: str | None = None,
    width: float = 8.0,
    height: float = 4.5,
    dpi: int = 100,
) -> Figure | Path:
    """Curves of a metric for several runs overlaid (or histograms for per-request metrics).

    Args:
        experiment_ids: the runs to overlay.
        metric: a metric of the runs' name space (``"val_loss"``, ``"train_loss_step"``,
            ``"crucible_train.batch.stop:loss"``), or ``"latency"``, ``"ttft"``, ``"cost"``, ``"tokens"``.
        x: ``"step"`` (global step), ``"epoch"`` or ``"time"`` (seconds since the run started).
        smooth: EMA factor in [0, 1) drawn over the faded raw curve (series of 20 points or more);
            None draws the raw curve.
        kind: ``"line"``, ``"hist"``, or ``"auto"`` (histograms for latency, ttft, cost, tokens).
        by: ``"experiment"`` (a color each) or ``"condition"`` (a color per condition; seeds
            share it, and histograms pool them).
        label: params that name the curves, ``"lr"`` or ``"lr,seed"``; default: the params that
            differ between the runs (else their names).
        group_by: a param (``"lr"``): one curve per value, the mean over its runs with a +/- 1 sd
            band (runs that differ only in seed are replicates).
        logy: a log y axis (every value must be positive).
        markers: dots on every point; default: on series of fewer than 20 points.
        out: where to write the image (PNG, SVG or PDF by suffix); None returns the ``Figure``.
        hub: the ``Telemetry`` to read; default ``ct.default()``.
        title: figure title; default from the metric.
        width, height, dpi: size in inches and resolution: the PNG is ``width*dpi x height*dpi`` pixels.

    Example:
        >>> from crucible_telemetry.analysis.plots import plot_metric
        >>> plot_metric(run_ids, "val_loss", x="epoch", group_by="lr", out="val_loss.png")  # doctest: +SKIP
        PosixPath('val_loss.png')
    """
    from .per_run import is_per_request
    from .series import metric_spec

    h = _hub(hub)
    ids = _ids(experiment_ids)
    if kind not in ("auto", "line", "hist"):
        raise InvalidArgumentError("kind", f"expected 'auto', 'line' or 'hist', got {kind!r}")
    if x not in ("step", "epoch", "time"):
        raise InvalidArgumentError("x", f"expected 'step', 'epoch' or 'time', got {x!r}")
    if smooth is not None:
        ema(np.zeros(1), smooth)  # validates the factor before any work
    spec = None
    if isinstance(metric, MetricSpec) or (isinstance(metric, str) and _request_name(metric)):
        spec = metric_spec(metric)
    if spec is not None and is_per_request(spec) and (kind == "hist" or (kind == "auto" and spec.histogram)):
        return plot_histogram(ids, spec, by=by, out=out, hub=h, title=title, width=width, height=height, dpi=dpi)
    xlabel = _XLABEL[x]
    if spec is not None and is_per_request(spec):  # requests as a line: by request order or wall time
        name, curves = spec.axis_label(), _request_curves(h, ids, spec, x)
        xlabel = "request" if x != "time" else xlabel
    else:
        name, curves = _curves(h, ids, metric, x)
    exps = [h.get_experiment(i) for i in ids]
    fig = _figure(width, height, dpi)
    ax = fig.add_subplot()
    drawn = 0
    values: list[np.ndarray] = []
    smoothed: list[bool] = []

    def draw(xs: np.ndarray, ys: np.ndarray, color: str, legend: str | None) -> None:
        dots = markers if markers is not None else xs.size < SPARSE
        style: dict[str, Any] = {"marker": "o", "markersize": 4} if dots else {}
        if smooth and xs.size >= SPARSE:  # an EMA over a handful of points only hides them
            smoothed.append(True)
            ax.plot(xs, ys, color=color, alpha=0.25, linewidth=1, **style)
            ax.plot(xs, ema(ys, smooth), color=color, linewidth=2, label=legend)
        else:
            ax.plot(xs, ys, color=color, linewidth=2, label=legend, **style)

    if group_by is not None:
        groups = _param_groups(exps, group_by)
        for (glabel, members), color in zip(groups.items(), COLORS * 10):
            present = [curves[e.id] for e in members if e.id in curves and curves[e.id][0].size]
            if not present:
                continue
            xs, mean, sd, _ = _band(present)
            values.append(mean - sd)
            draw(xs, mean, color, f"{glabel} (mean ± sd of {len(present)} run{'s' if len(present) > 1 else ''})")
            if len(present) > 1:
                ax.fill_between(xs, mean - sd, mean + sd, color=color, alpha=0.18, linewidth=0)
            drawn += 1
    else:
        labels = _labels(h, ids, by, label)
        seen: set[str] = set()
        for exp_id, lab, color in zip(ids, labels, _colors(labels)):
            if exp_id not in curves or not curves[exp_id][0].size:
                continue
            xs, ys = curves[exp_id]
            values.append(ys)
            draw(xs, ys, color, lab if lab not in seen else None)
            seen.add(lab)
            drawn += 1
    if not drawn:
        raise InvalidArgumentError("metric", f"no {name!r} values in {', '.join(ids)}")
    if logy:
        low = min(float(np.min(v)) for v in values if v.size)
        if low <= 0:
            raise InvalidArgumentError("logy", f"a log axis needs positive values; {name} reaches {low:.4g}")
        ax.set_yscale("log")
    _axes_format(ax, x, logy)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(name)
    ax.set_title(title or name + (f" by {group_by}" if group_by else "") + (f" (EMA {smooth})" if smoothed else ""))
    ax.grid(True, alpha=0.3, which="both" if logy else "major")
    ax.legend(loc="best", fontsize="small")
    return _save(fig, out)


def _axes_format(ax: Any, x: str, logy: bool) -> None:
    """Whole steps and epochs on x; plain numbers (``0.5``, ``2``) on a log y axis, not ``2 x 10^0``."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    if x in ("step", "epoch"):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if logy:
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        lo, hi = ax.get_ylim()
        if hi / lo < 100:  # under two decades: label the minor ticks too, else the axis has one or two labels
            ax.yaxis.set_minor_formatter(plain)


def _request_name(metric: str) -> bool:
    from .per_run import _request_spec

    return _request_spec(metric.strip()) is not None


def _param_groups(exps: list[Any], group_by: str) -> dict[str, list[Any]]:
    """Runs by their value of ``group_by``, in value order; runs without it are left out (raises if all are)."""
    from .labels import fmt_value

    key = group_by.strip().removeprefix("params.")
    if not any(key in (e.params or {}) for e in exps):
        try:
            _label_keys(exps, key)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError("group_by", str(exc).split(": ", 1)[1]) from None
    have = [e for e in exps if key in (e.params or {})]
    numeric = all(isinstance(e.params[key], (int, float)) and not isinstance(e.params[key], bool) for e in have)
    have.sort(key=lambda e: e.params[key] if numeric else str(e.params[key]))
    out: dict[str, list[Any]] = {}
    for e in have:
        out.setdefault(f"{key}={fmt_value(e.params[key])}", []).append(e)
    return out


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
