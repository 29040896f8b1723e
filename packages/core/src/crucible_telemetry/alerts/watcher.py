"""Alerts over the store: the events of the DuckDB views replayed through the same evaluator.

``StoreWatcher.advance(until)`` reads the rules' events recorded since the last call (any
process's), feeds them in time order and evaluates each grid instant ``k * interval`` up to
``until``, so it finds the transitions the recording process found for the same data. An
experiment is live from ``started_at`` until ``stopped_at``; a run killed without stopping stays
live, which is what an absence rule is for. ``crucible watch`` is this in a loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson

from ..errors import InvalidArgumentError
from .evaluator import Evaluator
from .rules import Rule
from .state import Transition

__all__ = ["StoreWatcher"]


class StoreWatcher:
    """Evaluate ``rules`` over the store of ``hub`` (see the module docstring).

    Args:
        hub: a ``Telemetry`` (its ``connect()`` gives the views).
        rules: the same ``Rule`` values the recording process evaluates.
        interval: seconds between evaluation instants (as the recording process used).
        experiments: ids to watch (default: every experiment in the store).
        since: seconds of history replayed on the first call (default: all of it).
        clock: UNIX seconds now.
    """

    def __init__(
        self,
        hub: Any,
        rules: Iterable[Rule],
        *,
        interval: float = 10.0,
        experiments: Sequence[str] | None = None,
        since: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub
        self.evaluator = Evaluator(rules, interval)
        if not self.evaluator.rules:
            raise InvalidArgumentError("rules", "at least one rule is needed")
        self.interval = self.evaluator.interval
        self.experiments = list(experiments) if experiments else None
        if since is not None and (isinstance(since, bool) or not isinstance(since, (int, float)) or since <= 0):
            raise InvalidArgumentError("since", f"expected seconds > 0, got {since!r}")
        self.since = since
        self.clock = clock
        self._last_k: int | None = None
        self._read_us: int | None = None  # events with ts <= this (µs) have been fed
        self._lookback = max((r.window or 0.0) for r in self.evaluator.rules)

    def _experiments(self, con: Any) -> list[tuple[str, float, float | None]]:
        rows = con.execute(
            "SELECT experiment_id, epoch_us(started_at), epoch_us(stopped_at) FROM experiments "
            "WHERE started_at IS NOT NULL ORDER BY started_at"
        ).fetchall()
        wanted = set(self.experiments) if self.experiments else None
        return [(e, s / 1e6, None if x is None else x / 1e6) for e, s, x in rows if wanted is None or e in wanted]

    def _rows(self, con: Any, ids: list[str], lo_us: int | None, hi_us: int) -> list[tuple[Any, ...]]:
        events = self.evaluator.events
        fields = self.evaluator.needs_fields
        cols = "experiment_id, event, epoch_us(ts), measurements" + (
            ", metadata, host, pid, rank, local_rank, node" if fields else ""
        )
        sql = (  # events_of lists only these runs' folders
            f"SELECT {cols} FROM events_of(?) WHERE event IN ({', '.join('?' for _ in events)}) AND epoch_us(ts) <= ?"
        )
        params: list[Any] = [ids, *events, hi_us]
        if lo_us is not None:
            sql += " AND epoch_us(ts) > ?"
            params.append(lo_us)
        rows: list[tuple[Any, ...]] = con.execute(sql + " ORDER BY ts, seq", params).fetchall()
        return rows

    def advance(self, until: float | None = None) -> list[Transition]:
        """Read what was recorded since the last call and evaluate the grid instants up to ``until``."""
        now = float(self.clock() if until is None else until)
        interval = self.interval
        con = self.hub.connect()
        try:
            exps = self._experiments(con)
            if not exps:
                return []
            if self._last_k is None:
                start = min(s for _, s, _ in exps)
                if self.since is not None:
                    start = max(start, now - self.since)
                self._last_k = math.floor(start / interval)
                if self.since is not None:
                    self._read_us = int((start - self._lookback) * 1e6)
            last = math.floor(now / interval)
            if last <= self._last_k:
                return []
            hi_us = int(last * interval * 1e6)
            rows = self._rows(con, [e for e, _, _ in exps], self._read_us, hi_us)
        finally:
            con.close()
        self._read_us = hi_us
        out: list[Transition] = []
        fields = self.evaluator.needs_fields
        observe, i, n = self.evaluator.observe, 0, len(rows)
        for k in range(self._last_k + 1, last + 1):
            at = k * interval
            at_us = int(at * 1e6)
            while i < n and rows[i][2] <= at_us:
                r = rows[i]
                i += 1
                if fields:
                    md = orjson.loads(r[4]) if r[4] else None
                    ident = dict(zip(("host", "pid", "rank", "local_rank", "node"), r[5:10]))
                    observe(r[2] / 1e6, r[1], r[0], r[3], md if isinstance(md, dict) else None, ident)
                else:
                    observe(r[2] / 1e6, r[1], r[0], r[3])
            live = {e: s for e, s, x in exps if s <= at and (x is None or at < x)}
            if live:
                out.extend(self.evaluator.evaluate(at, live))
        self._last_k = last
        return out

    def active(self) -> list[dict[str, Any]]:
        """Alerts pending or firing after the last ``advance``."""
        return self.evaluator.active()
