"""What the registry holds per metric name (``MetricInfo``) and per tag set (``TagSet``)."""

from __future__ import annotations

import math

import numpy as np

from . import kinds
from .kinds import COUNTER, GAUGE

__all__ = ["MetricInfo", "TagSet", "update_state"]


class TagSet:
    """One (metric name, tag set): the unit of cardinality and of Prometheus exposition."""

    __slots__ = ("count", "hist", "id", "key", "last", "last_ts", "name", "sum", "tags", "total")

    def __init__(
        self, id: int, name: str, tags: dict[str, str], key: tuple[tuple[str, str], ...], nbuckets: int
    ) -> None:
        self.id = id
        self.name = name
        self.tags = tags
        self.key = key
        self.total = 0.0  # counter: sum of increments ever recorded (never pruned)
        self.last = math.nan  # gauge: newest value
        self.last_ts = -math.inf
        self.hist = np.zeros(nbuckets + 1, dtype=np.int64) if nbuckets else None  # per-bucket (not cumulative)
        self.sum = 0.0
        self.count = 0


class MetricInfo:
    """One metric name: its kind, buckets, tag sets and the retained points (numpy columns)."""

    __slots__ = (
        "buckets",
        "chunks",
        "help",
        "kind",
        "name",
        "overflow",
        "overflow_warned",
        "regular",
        "sids",
        "tagsets",
    )

    def __init__(self, name: str, kind: str, buckets: tuple[float, ...] | None, help: str | None) -> None:
        self.name = name
        self.kind = kind
        self.help = help
        self.buckets = np.asarray(buckets if buckets is not None else kinds.default_buckets(name), dtype=np.float64)
        self.tagsets: dict[tuple[tuple[str, str], ...], TagSet] = {}
        self.overflow_warned = False
        self.overflow: TagSet | None = None  # the series new tag sets fold into past max_tag_sets
        self.regular = 0  # tag sets that count toward max_tag_sets
        self.sids: list[int] = []  # series (tag set x run) of this metric
        # retained points: list of (sid int64, value f64, ts f64, step int64, epoch int64)
        self.chunks: list[tuple[np.ndarray, ...]] = []

    def columns(self) -> tuple[np.ndarray, ...]:
        """The retained points as one set of columns (chunks merged on demand)."""
        if not self.chunks:
            empty_i = np.empty(0, dtype=np.int64)
            empty_f = np.empty(0, dtype=np.float64)
            return (empty_i, empty_f, empty_f, empty_i, empty_i)
        if len(self.chunks) > 1:
            self.chunks = [tuple(np.concatenate(cols) for cols in zip(*self.chunks, strict=True))]
        return self.chunks[0]

    def stored(self) -> int:
        """Points retained in memory."""
        return sum(len(c[0]) for c in self.chunks)

    def nbytes(self) -> int:
        """Bytes of the retained points."""
        return sum(a.nbytes for c in self.chunks for a in c)


def update_state(info: MetricInfo, tagsets: list[TagSet], tsid: np.ndarray, val: np.ndarray, ts: np.ndarray) -> int:
    """Add drained points to the cumulative Prometheus state of their tag sets (never pruned).

    NaN values and negative counter increments are left out; returns how many increments were negative.
    """
    ok = ~np.isnan(val)
    negatives = 0
    if info.kind == COUNTER:
        neg = val < 0
        negatives = int(neg.sum())
        if negatives:
            ok &= ~neg
    if not ok.all():
        tsid, val, ts = tsid[ok], val[ok], ts[ok]
    if not len(tsid):
        return negatives
    u, inv = np.unique(tsid, return_inverse=True)
    if info.kind == COUNTER:
        sums = np.bincount(inv, weights=val, minlength=len(u))
        for i, t in enumerate(u):
            tagsets[t].total += float(sums[i])
    elif info.kind == GAUGE:
        # newest per tag set: the last occurrence of the greatest timestamp
        order = np.lexsort((np.arange(len(ts)), ts, inv))
        last_pos = order[np.r_[np.flatnonzero(np.diff(inv[order])), len(order) - 1]]
        for p in last_pos:
            t = tagsets[tsid[p]]
            if ts[p] >= t.last_ts:
                t.last, t.last_ts = float(val[p]), float(ts[p])
    else:
        nb = len(info.buckets) + 1
        b = np.searchsorted(info.buckets, val, side="left")
        hist = np.bincount(inv * nb + b, minlength=len(u) * nb).reshape(len(u), nb)
        sums = np.bincount(inv, weights=val, minlength=len(u))
        cnts = np.bincount(inv, minlength=len(u))
        for i, t in enumerate(u):
            tag = tagsets[t]
            if tag.hist is None or len(tag.hist) != nb:
                tag.hist = np.zeros(nb, dtype=np.int64)
            tag.hist += hist[i]
            tag.sum += float(sums[i])
            tag.count += int(cnts[i])
    return negatives
