"""The live feed of the dashboard: what is new in the store since a cursor, and the cursor after it.

A cursor is ``(base, seen)``: every row stamped at or before ``base`` (µs since the epoch) counts
as seen, and ``seen`` maps each writer of a row stamped after it (dataset, run, host, pid) to the
highest sequence number already sent (and that row's time). A writer's sequence numbers only grow, so a row is new
exactly when it is stamped after ``base`` and its seq is above its writer's entry: resuming from a
cursor (the SSE ``Last-Event-ID``) gives every row once, with no gap and no repeat, across server
restarts. ``base`` trails the clock by :data:`LAG_S` (far more than the writers' flush interval),
so the cursor stays small: only writers active in the last ``LAG_S`` seconds are listed.

Only runs that are running, or stopped in the last minutes, are read, so a tick costs one listing
of the ``experiments`` dataset and a read of the live runs' newest files.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LAG_S", "MAX_ROWS", "Cursor", "changes"]

#: How far the cursor's base trails the clock: rows flushed later than this after their time are
#: not streamed (the page still shows them on its next full read).
LAG_S = 15.0
#: At most this many rows of each dataset are read per tick; the rest come on the next ones.
MAX_ROWS = 20_000


@dataclass
class Cursor:
    """Where a stream stands; ``encode()`` is its SSE event id."""

    base: int = 0
    seen: dict[str, list[int]] = field(default_factory=dict)

    def encode(self) -> str:
        """A compact URL-safe text (the SSE ``id:``)."""
        raw = json.dumps({"b": self.base, "s": self.seen}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        """The cursor of an SSE id, or None when ``text`` is empty or not one."""
        if not text:
            return None
        try:
            raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            return cls(int(raw["b"]), {str(k): [int(v[0]), int(v[1])] for k, v in dict(raw["s"]).items()})
        except (ValueError, KeyError, TypeError):
            return None

    @classmethod
    def now(cls) -> Cursor:
        """A cursor for a new page: everything up to ``LAG_S`` ago counts as seen."""
        return cls(int((time.time() - LAG_S) * 1e6), {})


_LIVE_SQL = """
SELECT experiment_id FROM experiments
WHERE status IN ('running', 'paused') OR stopped_at IS NULL OR epoch_us(stopped_at) > ?
"""

_SEEN = "WITH c AS (SELECT unnest(?::VARCHAR[]) AS k, unnest(?::BIGINT[]) AS s) "

_METRIC_ROWS = (
    _SEEN
    + """
SELECT run_id AS run, host, pid, seq, epoch_us(ts) AS ts, metric AS name, value, step, epoch, kind
FROM metrics_of(?) d LEFT JOIN c ON c.k = concat_ws('|', 'm', d.run_id, d.host, d.pid)
WHERE d.ts >= to_timestamp(?) AND epoch_us(d.ts) > ? AND (c.s IS NULL OR d.seq > c.s)
ORDER BY d.ts, d.seq LIMIT ?
"""
)

_EVENT_ROWS = (
    _SEEN
    + """
SELECT experiment_id AS run, host, pid, seq, epoch_us(ts) AS ts, event AS name, measurements, global_step AS step,
       epoch
FROM events_of(?) d LEFT JOIN c ON c.k = concat_ws('|', 'e', d.experiment_id, d.host, d.pid)
WHERE d.ts >= to_timestamp(?) AND epoch_us(d.ts) > ? AND (c.s IS NULL OR d.seq > c.s)
ORDER BY d.ts, d.seq LIMIT ?
"""
)


def _key(kind: str, row: dict[str, Any]) -> str:
    return f"{kind}|{row['run']}|{row['host']}|{row['pid']}"


def changes(store: Any, cursor: Cursor, runs: list[str] | None = None) -> tuple[dict[str, Any], Cursor]:
    """New rows since ``cursor`` and the cursor after them.

    Returns ``({"metrics": [...], "events": [...], "counts": {run: rows}}, cursor)``: the rows of the
    runs in ``runs`` (all runs when None), oldest first, and per run how many new rows it has.
    """
    now_base = int((time.time() - LAG_S) * 1e6)
    base = cursor.base
    live = [r[0] for r in store.execute(_LIVE_SQL, [base - int(4 * LAG_S * 1e6)]).fetchall()]
    out: dict[str, Any] = {"metrics": [], "events": [], "counts": {}}
    seen = {k: list(v) for k, v in cursor.seen.items()}  # writer -> [last seq sent, its time in µs]
    full = False
    if live:
        keys, seqs = ["", *seen], [-1, *(v[0] for v in seen.values())]
        for kind, sql, dest in (("m", _METRIC_ROWS, "metrics"), ("e", _EVENT_ROWS, "events")):
            tbl = store.arrow(sql, [keys, seqs, live, base / 1e6 - 1.0, base, MAX_ROWS])
            full = full or tbl.num_rows >= MAX_ROWS  # the rest comes on the next tick
            for row in tbl.to_pylist():
                k = _key(kind, row)
                seen[k] = [max(row["seq"], seen.get(k, [-1, 0])[0]), max(row["ts"], seen.get(k, [-1, 0])[1])]
                out["counts"][row["run"]] = out["counts"].get(row["run"], 0) + 1
                if runs is None or row["run"] in runs:
                    del row["host"], row["pid"]
                    if "measurements" in row:
                        row["measurements"] = dict(row["measurements"] or [])
                    out[dest].append(row)
    if full:  # more rows wait: the base stays
        return out, Cursor(base, seen)
    new_base = max(base, now_base)
    kept = {k: v for k, v in seen.items() if v[1] > new_base}  # the others are covered by the base
    return out, Cursor(new_base, kept)
