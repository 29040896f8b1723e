"""Downsampling and smoothing of one curve for the dashboard: pure functions over numpy arrays.

Downsampling keeps the truth: buckets of a fixed width anchored at x = 0 (bucket ``k`` holds
``k * width <= x < (k + 1) * width``), the width a power of two chosen from the x range, so the
boundaries of a longer series are a superset-free coarsening of a shorter one's (appending points
never moves an earlier boundary: a bucket is either unchanged or merged with its neighbour). Each
bucket keeps its first, last, minimum and maximum point, so every spike survives. NaN and
infinite values are never folded in: they come back as their own list of positions.

Smoothing is a time-aware exponential moving average applied before downsampling: with weight
``w`` (TensorBoard's slider) a point ``dx`` after the previous one uses ``w ** (dx / median_dx)``,
debiased like TensorBoard's, so uneven steps (a resumed run, sparse validation) are weighted by
the distance between points, not by their count. Equal spacing gives TensorBoard's curve exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError

__all__ = ["POINTS_PER_BUCKET", "bucket_width", "downsample", "ema", "group_band", "split_nonfinite"]

#: At most this many points (first, last, min, max) come out of one bucket.
POINTS_PER_BUCKET = 4


def split_nonfinite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[list[Any]]]:
    """``(x, y)`` of the finite points, and ``[[x, "NaN" | "Infinity" | "-Infinity"], ...]`` of the others."""
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    bad = ~np.isfinite(y)
    marks = [
        [float(xv), "NaN" if math.isnan(yv) else ("Infinity" if yv > 0 else "-Infinity")]
        for xv, yv in zip(x[bad], y[bad])
    ]
    return x[~bad], y[~bad], marks


def ema(x: np.ndarray, y: np.ndarray, weight: float) -> np.ndarray:
    """Time-aware, debiased EMA of ``y`` (``x`` ascending); ``weight`` in [0, 1), 0 = no smoothing."""
    if not 0.0 <= float(weight) < 1.0:
        raise InvalidArgumentError("weight", f"expected a smoothing weight in [0, 1), got {weight!r}")
    y = np.asarray(y, dtype="float64")
    if weight == 0 or len(y) < 2:
        return y.copy()
    dx = np.diff(np.asarray(x, dtype="float64"))
    pos = dx[dx > 0]
    unit = float(np.median(pos)) if len(pos) else 1.0
    w = np.empty(len(y))
    w[0] = weight
    w[1:] = float(weight) ** (np.maximum(dx, 0.0) / unit)
    out = np.empty(len(y))
    s = z = 0.0
    for i, (wi, v) in enumerate(zip(w.tolist(), y.tolist())):
        s = wi * s + (1.0 - wi) * v
        z = wi * z + (1.0 - wi)
        out[i] = s / z if z > 0 else v
    return out


def bucket_width(x_min: float, x_max: float, buckets: int) -> float:
    """The smallest power of two ``w`` with ``(x_max - x_min) / w <= buckets`` (1 for an empty range)."""
    span = float(x_max) - float(x_min)
    if not span > 0 or buckets < 1:
        return 1.0
    return float(2.0 ** math.ceil(math.log2(span / buckets)))


def downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray, float | None]:
    """At most about ``max_points`` of the finite points ``(x, y)`` (sorted by x), keeping per bucket
    its first, last, min and max; returns ``(x, y, width)`` (width None when nothing was dropped)."""
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    if max_points < POINTS_PER_BUCKET:
        raise InvalidArgumentError("max_points", f"expected at least {POINTS_PER_BUCKET}, got {max_points}")
    if len(x) <= max_points:
        return x, y, None
    if not np.all(x[1:] >= x[:-1]):
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
    width = bucket_width(x[0], x[-1], max(1, max_points // POINTS_PER_BUCKET - 1))
    k = np.floor(x / width).astype("int64")
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    counts = np.diff(np.r_[starts, len(x)])
    ends = starts + counts - 1
    picks = [starts, ends]
    for reduce in (np.minimum, np.maximum):  # the first point reaching the bucket's min (max)
        hit = np.flatnonzero(y == np.repeat(reduce.reduceat(y, starts), counts))
        picks.append(hit[np.r_[True, k[hit][1:] != k[hit][:-1]]])
    keep = np.unique(np.concatenate(picks))
    return x[keep], y[keep], width


def group_band(series: list[tuple[np.ndarray, np.ndarray]], max_points: int) -> dict[str, list[float]]:
    """Mean and standard deviation across runs (one value per run and bucket: its mean there) at
    buckets shared by every series; ``{"x", "mean", "std", "n"}`` (std uses ``n - 1``, 0 for one run)."""
    finite = [(np.asarray(a, "float64"), np.asarray(b, "float64")) for a, b in series]
    finite = [(a[np.isfinite(b)], b[np.isfinite(b)]) for a, b in finite]
    finite = [(a, b) for a, b in finite if len(a)]
    if not finite:
        return {"x": [], "mean": [], "std": [], "n": []}
    lo = min(float(a.min()) for a, _ in finite)
    hi = max(float(a.max()) for a, _ in finite)
    distinct = np.unique(np.concatenate([a for a, _ in finite]))
    if len(distinct) <= max_points:
        width, keys = None, distinct
    else:
        width = bucket_width(lo, hi, max_points)
        keys = np.unique(np.floor(distinct / width))
    sums = np.zeros(len(keys))
    sq = np.zeros(len(keys))
    n = np.zeros(len(keys))
    for a, b in finite:
        k = a if width is None else np.floor(a / width)
        uk, inv = np.unique(k, return_inverse=True)
        per = np.bincount(inv, weights=b) / np.bincount(inv)  # the run's mean in each bucket
        pos = np.searchsorted(keys, uk)
        sums[pos] += per
        sq[pos] += per * per
        n[pos] += 1
    mean = sums / n
    var = np.where(n > 1, (sq - n * mean * mean) / np.maximum(n - 1, 1), 0.0)
    xs = keys if width is None else (keys + 0.5) * width
    return {
        "x": xs.tolist(),
        "mean": mean.tolist(),
        "std": np.sqrt(np.maximum(var, 0.0)).tolist(),
        "n": n.astype(int).tolist(),
    }
