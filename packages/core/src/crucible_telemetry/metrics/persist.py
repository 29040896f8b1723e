"""Raw points to the store's ``metrics`` dataset: one Arrow table per run, built with numpy.

Each point becomes one row (``run_id, metric, value, step, epoch, kind, tags, ts, ...``) of the
same Parquet dataset that ``hub.record_metric`` writes, so ``ct.connect()`` joins metrics
with events in one SQL query. Rows are built vectorised (dictionary takes, no per-row Python),
which is what keeps up with the hot path; they go through the hub's segment writer.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..environment import HOSTNAME, distributed_identity
from ..storage.schema import METRICS_SCHEMA

if TYPE_CHECKING:
    from .registry import Metrics

__all__ = ["build_table", "write_pending"]


def _const(value: Any, n: int, typ: pa.DataType) -> pa.Array:
    return pa.repeat(pa.scalar(value, typ), n)


def build_table(m: Metrics, cols: tuple[np.ndarray, ...], seq0: int) -> pa.Table:
    """Rows of one run: ``cols`` are ``(series id, value, ts seconds, step, epoch)``."""
    sid, val, ts, step, epoch = cols
    n = len(sid)
    u, inv = np.unique(sid, return_inverse=True)
    idx = pa.array(inv.astype(np.int32))
    series = [m.series_info(int(s)) for s in u]  # (name, kind, tags, run_id)
    names = pa.array([s[0] for s in series], pa.string())
    kinds_arr = pa.array([s[1] for s in series], pa.string())
    tags = pa.array([list(s[2].items()) if s[2] else None for s in series], pa.map_(pa.string(), pa.string()))
    rank, local, node, _world = distributed_identity()
    us = np.floor(ts * 1e6).astype(np.int64)
    return pa.Table.from_arrays(
        [
            names.take(idx),
            pa.array(val, pa.float64()),
            pa.array(step, pa.int64(), mask=step < 0),
            pa.array(epoch, pa.int64(), mask=epoch < 0),
            kinds_arr.take(idx),
            tags.take(idx),
            pa.array(us, pa.timestamp("us", tz="UTC")),
            pa.array(np.arange(seq0, seq0 + n, dtype=np.int64)),
            _const(HOSTNAME, n, pa.string()),
            _const(os.getpid(), n, pa.int32()),
            _const(rank, n, pa.int32()),
            _const(local, n, pa.int32()),
            _const(node, n, pa.int32()),
            pa.nulls(n, pa.string()),
        ],
        schema=METRICS_SCHEMA,
    )


def write_pending(m: Metrics, pending: list[tuple[np.ndarray, ...]]) -> int:
    """Write drained points, one segment per run id; returns the rows written."""
    cols = tuple(np.concatenate(c) for c in zip(*pending, strict=True)) if len(pending) > 1 else pending[0]
    sid = cols[0]
    runs = m.series_runs(sid) if len({m.series_run(int(s)) for s in np.unique(sid)}) > 1 else None
    writer = m.hub.metrics_writer
    written = 0
    if runs is None:
        groups = [(m.series_run(int(sid[0])), cols)]
    else:
        groups = []
        for run in np.unique(runs):
            sel = runs == run
            groups.append((str(run), tuple(c[sel] for c in cols)))
    for i, (run_id, gcols) in enumerate(groups):
        try:
            table = build_table(m, gcols, m.next_seq(len(gcols[0])))
            writer.write(run_id, table)
        except Exception:
            m.requeue([g for _, g in groups[i:]])  # what was not written is retried on the next round
            raise
        written += table.num_rows
    return written
