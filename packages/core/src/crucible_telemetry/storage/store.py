"""``ct.store``: event queries over the views, each seeing its own process's writes."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from ..errors import InvalidArgumentError, InvalidWindowError
from .schema import EVENTS_SCHEMA
from .views import create_views
from .windowed import windowed_stats
from .windows import Last, LastN, Range

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["EVENT_COLUMNS", "Store", "py_values"]

log = logging.getLogger("crucible_telemetry")
_STORES: weakref.WeakSet[Store] = weakref.WeakSet()
_INHERITED: list[Any] = []


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

#: Columns of the ``events`` view: the partition key, then the schema's columns (defined once, there).
EVENT_COLUMNS = ("experiment_id", *EVENTS_SCHEMA.names)
_OPS = {"=", "!=", "<", "<=", ">", ">="}
_ORDER = " ORDER BY ts, host, pid, seq"


def _json_path(key: str) -> str:
    """``$.a.b`` for a dotted metadata key, each part quoted so that no key is read as path syntax."""
    return "$" + "".join('."' + part.replace("\\", "\\\\").replace('"', '\\"') + '"' for part in key.split("."))


def _column(key: str) -> tuple[str, list[Any]]:
    """SQL for a filter key: a known column, ``measurements.<k>`` or ``metadata.<k>`` (bound)."""
    if key in EVENT_COLUMNS:
        return f'"{key}"', []
    for prefix in ("measurements.", "metadata."):
        if key.startswith(prefix) and (not key[len(prefix) :] or "" in key[len(prefix) :].split(".")):
            raise InvalidArgumentError("where", f"{key!r} names no key: use '{prefix}<key>'")
    if key.startswith("measurements."):
        return "measurements[?]", [key.split(".", 1)[1]]
    if key.startswith("metadata."):
        return "json_extract_string(metadata, ?)", [_json_path(key.split(".", 1)[1])]
    raise InvalidArgumentError(
        "where",
        f"unknown column {key!r}; use one of {', '.join(EVENT_COLUMNS)}, 'measurements.<key>' or 'metadata.<key>'",
    )


def where_sql(where: Any) -> tuple[str, list[Any]]:
    """``{column: value | [values] | (op, value)}`` as SQL with every value bound."""
    if where is None:
        return "", []
    if not isinstance(where, dict):
        raise InvalidArgumentError("where", f"expected a dict of column -> value, got {type(where).__name__}")
    parts: list[str] = []
    params: list[Any] = []
    for key, val in where.items():
        if not isinstance(key, str):
            raise InvalidArgumentError("where", f"column names are strings, got {key!r}")
        col, cparams = _column(key)
        if isinstance(val, tuple) and len(val) == 2 and isinstance(val[0], str) and val[0] in _OPS:
            parts.append(f"{col} {val[0]} ?")
            params += [*cparams, val[1]]
        elif isinstance(val, (list, tuple, set, frozenset)):
            vals = list(val)
            if not vals:
                parts.append("false")
                continue
            parts.append(f"{col} IN ({', '.join('?' * len(vals))})")
            params += cparams + vals
        elif val is None:
            parts.append(f"{col} IS NULL")
            params += cparams
        else:
            parts.append(f"{col} = ?")
            params += [*cparams, val]
    return "".join(f" AND {p}" for p in parts), params


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def py_values(col: Any) -> list[Any]:
    """One column as Python values; UTC microsecond times built here, 5x faster than Arrow's (which
    looks the time zone up for each value)."""
    t = col.type
    if pa.types.is_timestamp(t) and t.unit == "us" and t.tz in ("UTC", "Etc/UTC", "+00:00"):
        return [None if v is None else _EPOCH + timedelta(microseconds=v) for v in col.cast(pa.int64()).to_pylist()]
    return col.to_pylist()  # type: ignore[no-any-return]


def _rows(tbl: Any) -> list[dict[str, Any]]:
    names = tbl.column_names
    cols = [py_values(tbl.column(i)) for i in range(tbl.num_columns)]  # a column at a time, then zipped
    rows: list[dict[str, Any]] = [dict(zip(names, v)) for v in zip(*cols)]
    for r in rows:
        m = r.get("measurements")
        if isinstance(m, list):
            r["measurements"] = dict(m)
        md = r.get("metadata")
        if isinstance(md, str):
            r["metadata"] = orjson.loads(md)
        elif md is None and "metadata" in r:
            r["metadata"] = {}
    return rows


class Result:
    """A fully fetched result: ``description``, ``fetchall()``, ``fetchone()``."""

    __slots__ = ("description", "rows")

    def __init__(self, description: Any, rows: list[tuple[Any, ...]]) -> None:
        self.description = description or []
        self.rows = rows

    @property
    def columns(self) -> list[str]:
        """Column names."""
        return [d[0] for d in self.description]

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every row."""
        return self.rows

    def fetchone(self) -> tuple[Any, ...] | None:
        """The first row or None."""
        return self.rows[0] if self.rows else None


class Store:
    """Query the events of one hub's store; every query first flushes this process's buffer."""

    def __init__(self, hub: Telemetry) -> None:
        self._hub = hub
        self._local = threading.local()
        _STORES.add(self)

    def _con(self) -> duckdb.DuckDBPyConnection:
        con = getattr(self._local, "con", None)
        if con is None or getattr(self._local, "pid", None) != os.getpid():
            if getattr(self._hub, "mirror", None) is not None:
                con = self._hub.mirror.connect()  # a remote home: what every node has sent there
            else:
                con = duckdb.connect(":memory:")
                create_views(con, self._hub.home)
            self._local.con, self._local.pid = con, os.getpid()
        return con

    def _after_fork(self) -> None:
        """In a forked child: never touch, close or free a connection the parent made (its threads and
        locks did not survive the fork), so the child opens its own."""
        con = getattr(self._local, "con", None)
        if con is not None:
            _INHERITED.append(con)
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(con))  # never freed: its destructor could hang
        self._local = threading.local()

    def execute(self, sql: str, params: list[Any] | None = None) -> Result:
        """Run SQL on this thread's connection, after flushing this process; rows fetched at once."""
        self._hub.flush()

        def run() -> Result:
            cur = self._con().execute(sql, params or [])
            desc = cur.description
            return Result(desc, cur.fetchall() if desc else [])

        result: Result = self._retry(run)
        return result

    @contextlib.contextmanager
    def snapshot(self, view: str) -> Iterator[str]:
        """The name of a temporary table holding ``view`` as it is now, on this thread's connection, for
        the few queries of one answer that read it (the runs table reads ``summaries`` three times);
        dropped after. The view's own name where no table can be made."""
        if view not in ("summaries", "experiments", "params"):
            raise InvalidArgumentError("view", f"expected summaries, experiments or params, got {view!r}")
        name = f"ct_snapshot_{view}"
        try:
            self.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {view}")
        except duckdb.Error:
            yield view
            return
        try:
            yield name
        finally:
            with contextlib.suppress(duckdb.Error):
                self._con().execute(f"DROP TABLE IF EXISTS {name}")

    def arrow(self, sql: str, params: list[Any] | None = None) -> Any:
        """Run SQL and return a ``pyarrow.Table``, after flushing this process."""
        self._hub.flush()
        return self._retry(lambda: self._con().sql(sql, params=params or []).to_arrow_table())

    @staticmethod
    def _retry(fn: Any) -> Any:
        # A compaction in another process may delete a file between listing and reading it.
        for attempt in range(5):
            try:
                return fn()
            except duckdb.IOException:
                if attempt == 4:
                    raise
                if attempt == 1:  # still missing after a moment: not a merge landing; list anew
                    from .listing import forget_all

                    forget_all()
                time.sleep(0.02 * (attempt + 1))
        raise AssertionError("unreachable")

    def _check(self, exp_id: Any) -> str:
        if not isinstance(exp_id, str):
            raise InvalidArgumentError("exp_id", f"expected an experiment id string, got {type(exp_id).__name__}")
        self._hub.get_experiment(exp_id)
        return exp_id

    def get_all(self, exp_id: str) -> list[dict[str, Any]]:
        """Every stored event of an experiment, oldest first."""
        return self.query(exp_id)

    def _events(self, exp_id: str, sql: str, params: list[Any]) -> Any:
        """``sql`` over one run's events (its first ``{events}``, params after) as a ``pyarrow.Table``:
        its files read directly when they all have this release's columns (no view to bind), else
        through ``events_of``. Listed again on each try (another process may merge meanwhile)."""
        from .snapshot import run_files

        hive = "hive_partitioning = true, hive_types = {'experiment_id': VARCHAR}"

        def run() -> Any:
            files = run_files(self._hub.home, "events", exp_id) if self._hub.mirror is None else None
            if files is None or files[1]:
                return self._con().sql(sql.replace("{events}", "events_of([?])", 1), params=[exp_id, *params])
            source = f"(SELECT experiment_id, * EXCLUDE (experiment_id) FROM read_parquet(?, {hive}))"
            return self._con().sql(sql.replace("{events}", source, 1), params=[files[0], *params])

        self._hub.flush()
        return self._retry(lambda: run().to_arrow_table())

    def query(
        self, exp_id: str, event: Any = None, where: dict[str, Any] | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Events of an experiment, optionally of one event name (or prefix ending in ``.*``), filtered."""
        self._check(exp_id)
        sql = "SELECT * FROM {events} WHERE experiment_id = ?"
        params: list[Any] = [exp_id]
        if event is not None:
            s, p = self._event_filter(event)
            sql += s
            params += p
        s, p = where_sql(where)
        sql += s + _ORDER
        params += p
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise InvalidArgumentError("limit", f"expected a non-negative int, got {limit!r}")
            sql += " LIMIT ?"
            params.append(limit)
        return _rows(self._events(exp_id, sql, params))

    def _event_filter(self, event: Any) -> tuple[str, list[Any]]:
        from ..names import normalize

        if isinstance(event, str) and event.endswith(".*"):
            prefix = normalize(event[:-2])[0]
            return " AND (event = ? OR starts_with(event, ?))", [prefix, prefix + "."]
        return " AND event = ?", [normalize(event)[0]]

    def query_window(self, exp_id: str, window: Any, filter: Any = None) -> list[dict[str, Any]]:
        """Events in a window (``Last``, ``LastN``, ``Range``), optionally filtered by name or columns."""
        self._check(exp_id)
        sql = "SELECT * FROM {events} WHERE experiment_id = ?"
        params: list[Any] = [exp_id]
        if isinstance(filter, (str, tuple)):
            s, p = self._event_filter(filter)
        elif isinstance(filter, dict) and "event" in filter:
            rest = dict(filter)
            s, p = self._event_filter(rest.pop("event"))
            s2, p2 = where_sql(rest)
            s, p = s + s2, p + p2
        else:
            s, p = where_sql(filter)
        sql += s
        params += p
        if isinstance(window, Last):
            sql += " AND ts >= now() - to_microseconds(?)" + _ORDER
            params.append(int(window.delta.total_seconds() * 1_000_000))
        elif isinstance(window, Range):
            sql += " AND ts >= ? AND ts < ?" + _ORDER
            params += [window.t_start, window.t_end]
        elif isinstance(window, LastN):
            sql = f"SELECT * FROM ({sql} ORDER BY ts DESC, host DESC, pid DESC, seq DESC LIMIT ?){_ORDER}"
            params.append(window.n)
        else:
            raise InvalidWindowError("window", f"expected Last(...), LastN(n) or Range(t0, t1), got {window!r}")
        return _rows(self._events(exp_id, sql, params))

    def windowed_metrics(
        self, exp_id: str, window_us: int, step_us: int, event: Any = None, measurement: str = "duration"
    ) -> list[dict[str, Any]]:
        """Sliding windows ``[start, start + window_us)`` every ``step_us``: count, mean, min, max, p50/p95/p99.

        Percentiles come from a log-binned histogram with 1% relative error; the rest is exact.
        """
        self._check(exp_id)
        for arg, v in (("window_us", window_us), ("step_us", step_us)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InvalidWindowError(arg, f"expected a positive int of microseconds, got {v!r}")
        if not isinstance(measurement, str):
            raise InvalidArgumentError("measurement", "expected a measurement name")
        col = "duration" if measurement == "duration" else "measurements[?]"
        params: list[Any] = [] if measurement == "duration" else [measurement]
        sql = f"SELECT epoch_us(ts) AS t, {col} AS v FROM events_of([?]) WHERE experiment_id = ?"
        params += [exp_id, exp_id]
        if event is not None:
            s, p = self._event_filter(event)
            sql += s
            params += p
        sql += " AND v IS NOT NULL"  # windowed_stats sorts only when the files interleave
        tbl = self.arrow(sql, params)
        ts = tbl.column("t").to_numpy()
        vals = tbl.column("v").to_numpy().astype(np.float64, copy=False)
        return windowed_stats(ts, vals, window_us, step_us)

    def count(self, exp_id: str) -> int:
        """Number of stored events of an experiment."""
        self._check(exp_id)
        return int(self._events(exp_id, "SELECT count(*) AS n FROM {events}", []).column("n")[0].as_py())

    def compact(self) -> int:
        """Merge every partition of the store (any writer's, crashed ones' too) into one file each, and
        delete covered files past their grace period; returns how many were deleted."""
        from . import listing, merge

        self._hub.flush()
        for w in (self._hub.events_writer, self._hub.metrics_writer):
            for value in listing.partitions(w.root, w.partition_key):
                try:
                    merge.merge_folder(w.folder(value), final=True, dataset=w.root.name, min_files=1)
                except Exception as exc:  # one partition that cannot be merged never stops the rest
                    log.warning("crucible_telemetry: merge of %s failed: %r", w.folder(value), exc)
        return self._hub.events_writer.collect_garbage() + self._hub.metrics_writer.collect_garbage()

    def file_count(self) -> int:
        """Parquet files on disk, both datasets."""
        return self._hub.events_writer.file_count() + self._hub.metrics_writer.file_count()

    def holds_metrics(self, run_id: str) -> bool:
        """Whether ``run_id`` has metric rows on disk (this process flushed first): a folder look, no query."""
        from ..experiment import validate_id

        validate_id("run_id", run_id)
        self._hub.flush()
        folder = self._hub.metrics_writer.folder(run_id)
        return folder.is_dir() and any(folder.glob("*.parquet"))
