"""Sliding-window statistics over sorted timestamps, vectorised with numpy.

Values are bucketed at the greatest common step of window and step; count, sum, min and
max are exact; percentiles come from per-bucket log-binned histograms (relative error 1%,
the same binning as the streaming sketch), summed over each window.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import InvalidWindowError
from ..sketch import RELATIVE_ACCURACY

__all__ = ["windowed_stats"]

_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_MAX_CELLS = 20_000_000
_MAX_WINDOWS = 1_000_000


def _exact(
    ts: np.ndarray[Any, Any], vals: np.ndarray[Any, Any], t0: int, window_us: int, step_us: int, n_windows: int
) -> list[dict[str, Any]]:
    """Window by window (when window and step share no coarse grid): exact percentiles."""
    starts = t0 + np.arange(n_windows, dtype=np.int64) * step_us
    lo = np.searchsorted(ts, starts, side="left")
    hi = np.searchsorted(ts, starts + window_us, side="left")
    out: list[dict[str, Any]] = []
    for i in range(n_windows):
        sel = vals[lo[i] : hi[i]]
        row: dict[str, Any] = {
            "window_start_us": int(starts[i]),
            "window_end_us": int(starts[i]) + window_us,
            "count": int(sel.size),
        }
        if sel.size:
            p50, p95, p99 = np.quantile(sel, [0.5, 0.95, 0.99], method="inverted_cdf")
            row.update(
                mean=float(sel.mean()),
                min=float(sel.min()),
                max=float(sel.max()),
                p50=float(p50),
                p95=float(p95),
                p99=float(p99),
            )
        else:
            row.update(mean=None, min=None, max=None, p50=None, p95=None, p99=None)
        out.append(row)
    return out


def _bins(v: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Log-bin index of each value, and the representative value of each bin (ascending)."""
    if v.size and v.min() > 0:  # the usual case (durations, tokens, costs): a dense range of bins
        key = np.ceil(np.log(v) / _LOG_GAMMA).astype(np.int64)
        lo, hi = int(key.min()), int(key.max())
        if hi - lo < 100_000:
            reps = 2 * _GAMMA ** np.arange(lo, hi + 1, dtype=np.float64) / (1 + _GAMMA)
            return key - lo, reps
    key = np.zeros(v.shape, dtype=np.int64)
    nz = v != 0
    key[nz] = np.ceil(np.log(np.abs(v[nz])) / _LOG_GAMMA).astype(np.int64)
    signed = np.where(v > 0, key * 2 + 1, np.where(v < 0, -(key * 2 + 1) - 2**40, 0))
    uniq, inverse = np.unique(signed, return_inverse=True)
    rep = np.empty(uniq.shape, dtype=np.float64)
    for i, s in enumerate(uniq.tolist()):
        if s == 0:
            rep[i] = 0.0
        elif s > 0:
            rep[i] = 2 * _GAMMA ** ((s - 1) // 2) / (1 + _GAMMA)
        else:
            rep[i] = -2 * _GAMMA ** ((-(s + 2**40) - 1) // 2) / (1 + _GAMMA)
    order = np.argsort(rep)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[inverse], rep[order]


def windowed_stats(
    ts: np.ndarray[Any, Any], vals: np.ndarray[Any, Any], window_us: int, step_us: int
) -> list[dict[str, Any]]:
    """Stats of ``vals`` in windows ``[s, s + window_us)`` for ``s`` every ``step_us`` from the first event."""
    finite = np.isfinite(vals)
    ts = ts[finite]
    vals = vals[finite]
    if ts.size > 1 and not bool(np.all(ts[1:] >= ts[:-1])):  # several writers interleave
        order = np.argsort(ts, kind="stable")
        ts, vals = ts[order], vals[order]
    if ts.size == 0:
        return []
    g = math.gcd(window_us, step_us)
    t0 = int(ts[0]) // step_us * step_us
    bucket = (ts - t0) // g
    n_buckets = int(bucket[-1]) + 1
    w, s = window_us // g, step_us // g
    n_windows = (n_buckets - 1) // s + 1
    if n_windows > _MAX_WINDOWS:
        raise InvalidWindowError(
            "step_us", f"{n_windows} windows is too many; use a larger step_us (at most {_MAX_WINDOWS})"
        )
    binidx, reps = _bins(vals)
    if n_buckets * reps.size > _MAX_CELLS:
        return _exact(ts, vals, t0, window_us, step_us, n_windows)
    counts = np.bincount(bucket, minlength=n_buckets).astype(np.int64)
    sums = np.bincount(bucket, weights=vals, minlength=n_buckets)
    starts = np.searchsorted(bucket, np.arange(n_buckets))
    nonempty = counts > 0
    mins = np.full(n_buckets, np.inf)
    maxs = np.full(n_buckets, -np.inf)
    mins[nonempty] = np.minimum.reduceat(vals, starts[nonempty])
    maxs[nonempty] = np.maximum.reduceat(vals, starts[nonempty])
    hist = np.bincount(bucket * reps.size + binidx, minlength=n_buckets * reps.size)
    hist = np.concatenate([hist.reshape(n_buckets, reps.size), np.zeros((w, reps.size), dtype=np.int64)])
    pad = w - 1
    idx = np.arange(n_windows) * s
    csum = np.concatenate([[0], np.cumsum(counts), np.full(pad, counts.sum())])
    ssum = np.concatenate([[0.0], np.cumsum(sums), np.full(pad, sums.sum())])
    wcount = csum[idx + w] - csum[idx] if n_buckets >= w else csum[np.minimum(idx + w, n_buckets)] - csum[idx]
    wsum = ssum[np.minimum(idx + w, ssum.size - 1)] - ssum[idx]
    mins_p = np.concatenate([mins, np.full(pad, np.inf)])
    maxs_p = np.concatenate([maxs, np.full(pad, -np.inf)])
    wmin = sliding_window_view(mins_p, w)[idx].min(axis=1)
    wmax = sliding_window_view(maxs_p, w)[idx].max(axis=1)
    hcum = np.cumsum(hist, axis=0)
    hcum = np.concatenate([np.zeros((1, reps.size), dtype=np.int64), hcum], axis=0)
    whist = hcum[np.minimum(idx + w, hcum.shape[0] - 1)] - hcum[idx]
    wcum = np.cumsum(whist, axis=1)
    out: list[dict[str, Any]] = []
    qs = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
    qidx = {k: (wcum >= np.maximum(1, np.ceil(q * wcount))[:, None]).argmax(axis=1) for k, q in qs.items()}
    for i in range(n_windows):
        c = int(wcount[i])
        start = t0 + int(idx[i]) * g
        row: dict[str, Any] = {"window_start_us": start, "window_end_us": start + window_us, "count": c}
        if c:
            row.update(
                mean=float(wsum[i] / c),
                min=float(wmin[i]),
                max=float(wmax[i]),
                **{k: float(reps[qidx[k][i]]) for k in qs},
            )
        else:
            row.update(mean=None, min=None, max=None, p50=None, p95=None, p99=None)
        out.append(row)
    return out
