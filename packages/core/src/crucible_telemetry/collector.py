"""Turns drained buffer rows into Arrow tables and streaming-stat batches (writer thread only)."""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from .events import category_of
from .storage.schema import EVENTS_SCHEMA, METRICS_SCHEMA

__all__ = ["EventBatch", "build_events", "build_metrics", "to_json"]

log = logging.getLogger("crucible_telemetry")

_JSON_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
_warned: set[str] = set()


def _warn_once(key: str, msg: str, *args: object) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(msg, *args)


def to_json(value: Any) -> str | None:
    """JSON text of metadata; what is not JSON-able is stored as its repr, never raised."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, default=repr, option=_JSON_OPTS).decode()
    except (TypeError, orjson.JSONEncodeError):
        if isinstance(value, dict):
            return orjson.dumps({str(k): repr(v) for k, v in value.items()}).decode()
        return orjson.dumps(repr(value)).decode()


def _as_int(v: Any) -> int | None:
    if v is None:
        return None
    t = type(v)
    if t is int:
        return v  # type: ignore[no-any-return]
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) and f == int(f) else None


class EventBatch:
    """One experiment's share of a drained buffer."""

    __slots__ = ("counts", "nonnumeric", "series", "table")

    def __init__(self, table: pa.Table, counts: dict[str, int], series: dict[tuple[str, str], list[float]], nonnumeric: int) -> None:
        self.table = table
        self.counts = counts
        self.series = series
        self.nonnumeric = nonnumeric


def build_events(
    rows: Sequence[tuple[Any, ...]],
    seqs: Sequence[int],
    ident: tuple[str, int, int | None, int | None, int | None, int | None],
    tags: Sequence[str],
    enrichers: Sequence[Callable[..., Any]] = (),
) -> EventBatch:
    """Rows are ``(experiment, dotted, measurements, metadata, wall_ns, mono_ns)``."""
    names: list[str] = []
    walls: list[int] = []
    monos: list[int] = []
    epochs: list[int | None] = []
    steps: list[int | None] = []
    batches: list[int | None] = []
    durations: list[float | None] = []
    offsets: list[int] = [0]
    keys: list[str] = []
    vals: list[float] = []
    metas: list[str | None] = []
    counts: dict[str, int] = {}
    series: dict[tuple[str, str], list[float]] = {}
    nonnumeric = 0
    for _exp, name, m, md, wall, mono in rows:
        names.append(name)
        walls.append(wall)
        monos.append(mono)
        counts[name] = counts.get(name, 0) + 1
        moved: dict[str, Any] | None = None
        if m:
            for k, v in m.items():
                t = type(v)
                if t is not float and t is not int:
                    if isinstance(v, numbers.Real):
                        v = float(v)
                    else:
                        if moved is None:
                            moved = {}
                        moved[k] = v
                        nonnumeric += 1
                        _warn_once(f"nonnum:{name}:{k}", "crucible_telemetry: measurement %r of %s is not a number "
                                   "(%s); stored in metadata instead", k, name, type(v).__name__)
                        continue
                keys.append(k)
                vals.append(v)
                s = series.get((name, k))
                if s is None:
                    series[(name, k)] = [v]
                else:
                    s.append(v)
            durations.append(m.get("duration"))
            ep = m.get("epoch")
            st = m.get("global_step")
            bt = m.get("batch")
        else:
            durations.append(None)
            ep = st = bt = None
        if md:
            if ep is None:
                ep = md.get("epoch")
            if st is None:
                st = md.get("global_step")
            if bt is None:
                bt = md.get("batch")
        if moved is not None or enrichers:
            md = dict(md) if md else {}
            if moved is not None:
                md.update(moved)
            for fn in enrichers:
                try:
                    extra = fn(name, m, md)
                    if extra:
                        md.update(extra)
                except Exception as exc:
                    _warn_once(f"enricher:{fn!r}", "crucible_telemetry: enricher %r failed: %r", fn, exc)
        offsets.append(len(keys))
        epochs.append(ep if type(ep) is int or ep is None else _as_int(ep))
        steps.append(st if type(st) is int or st is None else _as_int(st))
        batches.append(bt if type(bt) is int or bt is None else _as_int(bt))
        metas.append(to_json(md) if md else None)
    n = len(names)
    host, pid, rank, local_rank, node, world = ident
    dur = [d if d is None or type(d) is float or type(d) is int else _float_or_none(d) for d in durations]
    try:
        values = pa.array(vals, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        values = pa.array([_float_or_none(v) for v in vals], pa.float64())
    measurements = pa.MapArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(keys, pa.string()), values)
    name_arr = pa.array(names, pa.string())
    cats = {nm: category_of(nm) for nm in counts}
    wall_arr = np.asarray(walls, dtype=np.int64) // 1000
    table = pa.Table.from_arrays(
        [
            name_arr,
            pa.array([cats[nm] for nm in names], pa.string()),
            pa.array(wall_arr, pa.timestamp("us", tz="UTC")),
            pa.array(monos, pa.int64()),
            pa.array(seqs, pa.int64()),
            pa.array([host] * n, pa.string()),
            pa.array([pid] * n, pa.int32()),
            pa.array([rank] * n, pa.int32()),
            pa.array([local_rank] * n, pa.int32()),
            pa.array([node] * n, pa.int32()),
            pa.array([world] * n, pa.int32()),
            pa.array(epochs, pa.int64()),
            pa.array(steps, pa.int64()),
            pa.array(batches, pa.int64()),
            pa.array(dur, pa.float64()),
            measurements,
            pa.array(metas, pa.string()),
            pa.array([list(tags)] * n, pa.list_(pa.string())),
        ],
        schema=EVENTS_SCHEMA,
    )
    return EventBatch(table, counts, series, nonnumeric)


def _float_or_none(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return None


def build_metrics(rows: Sequence[tuple[Any, ...]], seqs: Sequence[int], ident: tuple[str, int, int | None, int | None, int | None, int | None]) -> pa.Table:
    """Rows are ``(run_id, metric, value, step, epoch, kind, tags, wall_ns, metadata)``."""
    n = len(rows)
    host, pid, rank, local_rank, node, _world = ident
    cols = list(zip(*rows)) if rows else [()] * 9
    tags = [list(t.items()) if t else None for t in cols[6]]
    return pa.Table.from_arrays(
        [
            pa.array(cols[1], pa.string()),
            pa.array([_float_or_none(v) for v in cols[2]], pa.float64()),
            pa.array([_as_int(v) for v in cols[3]], pa.int64()),
            pa.array([_as_int(v) for v in cols[4]], pa.int64()),
            pa.array(cols[5], pa.string()),
            pa.array(tags, pa.map_(pa.string(), pa.string())),
            pa.array(np.asarray(cols[7], dtype=np.int64) // 1000, pa.timestamp("us", tz="UTC")),
            pa.array(seqs, pa.int64()),
            pa.array([host] * n, pa.string()),
            pa.array([pid] * n, pa.int32()),
            pa.array([rank] * n, pa.int32()),
            pa.array([local_rank] * n, pa.int32()),
            pa.array([node] * n, pa.int32()),
            pa.array([to_json(md) if md else None for md in cols[8]], pa.string()),
        ],
        schema=METRICS_SCHEMA,
    )
