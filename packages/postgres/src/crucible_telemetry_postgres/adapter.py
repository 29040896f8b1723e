"""``PostgresMetrics``: a MetricsStore adapter that COPYs batches into PostgreSQL from a writer thread.

``record`` only appends to a bounded buffer and never raises for the server's sake: a down server,
a dropped connection or a wrong address is retried in the background (backoff up to
``retry_max`` seconds) while rows wait in the buffer. When the buffer holds ``max_buffer`` rows a
new row is dropped and counted (``dropped``). ``flush`` and ``read`` are the API boundary: they
raise ``PostgresUnavailableError`` (one clear message, password left out) when the server cannot
be reached within ``flush_timeout`` seconds; the rows stay buffered and are written once it is back.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import threading
import time
import weakref
from collections import deque
from datetime import UTC, datetime
from typing import Any

import crucible_telemetry as ct
from crucible_telemetry.errors import CrucibleError, InvalidArgumentError

from .migrations import TABLE, migrate

__all__ = ["PostgresMetrics", "PostgresUnavailableError", "describe_dsn"]

log = logging.getLogger("crucible_telemetry_postgres")
_COLUMNS = "run_id, metric, value, step, ts, metadata"


class PostgresUnavailableError(CrucibleError):
    """The PostgreSQL server of a ``PostgresMetrics`` cannot be reached (or refused the rows)."""


def describe_dsn(dsn: str) -> str:
    """``host:port/dbname user=...`` of ``dsn``, never its password (for error messages)."""
    from psycopg.conninfo import conninfo_to_dict

    d = conninfo_to_dict(dsn)
    return f"{d.get('host', 'localhost')}:{d.get('port', 5432)}/{d.get('dbname', '')} user={d.get('user', '')}"


def _finite(obj: Any) -> Any:
    """JSON (jsonb) has no NaN or infinities: metadata keeps them as the strings ``NaN``/``Infinity``."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _drain_at_exit(ref: weakref.ref[PostgresMetrics]) -> None:
    """At interpreter exit, write what is buffered (5 s at most; what a down server misses is logged)."""
    adapter = ref()
    if adapter is None or not adapter._thread.is_alive():
        return
    try:
        adapter.close(timeout=min(adapter.flush_timeout, 5.0))
    except Exception as exc:
        log.warning("%d metric rows not written to PostgreSQL at %s at exit: %s", adapter.unwritten, adapter.where, exc)


class PostgresMetrics:
    """Metric values in the table ``crucible_metrics`` of the database ``dsn`` (a libpq conninfo or URL).

    Options: ``batch_size`` rows per COPY, ``flush_interval`` seconds between background writes,
    ``max_buffer`` rows kept while the server is away, ``flush_timeout`` seconds ``flush``/``read``
    wait for it, ``retry_max`` the longest pause between reconnection attempts.
    """

    def __init__(
        self,
        dsn: str,
        *,
        batch_size: int = 5000,
        flush_interval: float = 0.2,
        max_buffer: int = 1_000_000,
        flush_timeout: float = 30.0,
        retry_max: float = 2.0,
        connect_timeout: int = 5,
    ) -> None:
        if not isinstance(dsn, str) or not dsn.strip():
            raise InvalidArgumentError("dsn", f"expected a PostgreSQL conninfo string or URL, got {dsn!r}")
        try:
            self.where = describe_dsn(dsn)
        except Exception as exc:  # psycopg.ProgrammingError: not a conninfo
            raise InvalidArgumentError("dsn", f"not a PostgreSQL conninfo string or URL ({exc})") from None
        for name, v in (("batch_size", batch_size), ("max_buffer", max_buffer)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidArgumentError(name, f"expected a positive int, got {v!r}")
        self.dsn, self.batch_size, self.max_buffer = dsn, batch_size, max_buffer
        self.flush_interval, self.flush_timeout, self.retry_max = flush_interval, flush_timeout, retry_max
        self.connect_timeout = connect_timeout
        self.dropped = 0  #: rows refused because the buffer was full
        self.retries = 0  #: failed attempts to write (each is retried)
        self.written = 0  #: rows committed to the server
        self.last_error: Exception | None = None
        self._recorded = 0
        self._pending: deque[tuple[Any, ...]] = deque()
        self._cond = threading.Condition()
        self._flushing = 0
        self._closed = False
        self._conn: Any = None
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="crucible-postgres-writer", daemon=True)
        self._thread.start()
        atexit.register(_drain_at_exit, weakref.ref(self))

    # -- the port -------------------------------------------------------------------------------------

    def record(
        self, run_id: str, metric: str, value: float, step: int | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        """Buffer one value for the writer thread (raises only for bad arguments)."""
        v = ct.MetricsStore.check(run_id, metric, value, step, metadata)
        row = (
            run_id,
            metric,
            v,
            None if step is None else int(step),
            datetime.now(UTC),
            json.dumps(_finite(metadata or {}), default=repr),
        )
        with self._cond:
            if len(self._pending) >= self.max_buffer:
                self.dropped += 1
                self._warn(
                    "full",
                    "buffer of %d rows full (server %s unreachable?): dropping new rows, counted in .dropped",
                    self.max_buffer,
                    self.where,
                )
                return
            self._pending.append(row)
            self._recorded += 1
            if len(self._pending) >= self.batch_size:
                self._cond.notify_all()

    def flush(self, run_id: str | None = None, *, timeout: float | None = None) -> None:
        """Wait until every row recorded so far (all runs) is committed; raise if the server stays away
        ``timeout`` seconds (default ``flush_timeout``)."""
        with self._cond:
            target = self._recorded  # every row appended so far
            wait = self.flush_timeout if timeout is None else timeout
            deadline = time.monotonic() + wait
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self.written < target:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise PostgresUnavailableError(
                            f"dsn: cannot write to PostgreSQL at {self.where} within {wait:g}s "
                            f"({len(self._pending)} rows kept, retried in the background): {self._reason()}"
                        )
                    self._cond.wait(min(left, 0.5))
            finally:
                self._flushing -= 1

    def read(self, run_id: str) -> list[dict[str, Any]]:
        """The values recorded for ``run_id`` through this adapter, oldest first (flushed first)."""
        self.flush(run_id)
        try:
            with self._connect() as conn:
                migrate(conn)  # a read before any write still finds the (empty) table
                rows = conn.execute(
                    f"SELECT {_COLUMNS} FROM {TABLE} WHERE run_id = %s AND source = 'adapter' ORDER BY ts, id", [run_id]
                ).fetchall()
        except Exception as exc:
            if isinstance(exc, CrucibleError):
                raise
            raise PostgresUnavailableError(f"dsn: cannot read from PostgreSQL at {self.where}: {exc}") from None
        return [
            {"run_id": r, "metric": m, "value": v, "step": s, "timestamp": _iso(ts), "metadata": md}
            for r, m, v, s, ts, md in rows
        ]

    @property
    def unwritten(self) -> int:
        """Rows buffered and not yet committed."""
        with self._cond:
            return len(self._pending)

    def close(self, *, flush: bool = True, timeout: float | None = None) -> None:
        """Flush (unless ``flush=False``; waiting ``timeout`` s at most), then stop the writer thread; rows
        it could not write stay counted in ``unwritten``."""
        try:
            if flush:
                self.flush(timeout=timeout)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join(timeout=5)

    # -- the writer thread ----------------------------------------------------------------------------

    def _due(self) -> bool:
        """Write now: a full batch waits, someone flushes, or the adapter closes."""
        return self._closed or len(self._pending) >= self.batch_size or (bool(self._pending) and self._flushing > 0)

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, connect_timeout=self.connect_timeout)

    def _run(self) -> None:
        pause = 0.05
        while True:
            with self._cond:
                self._cond.wait_for(self._due, timeout=self.flush_interval)  # a batch, a flush, or the interval
                if self._closed and not self._pending:
                    break
                batch = [self._pending[i] for i in range(min(self.batch_size, len(self._pending)))]
            if not batch:
                continue
            try:
                self._write(batch)
            except Exception as exc:  # never leaves the thread: the rows stay, the write is retried
                self._drop_connection()
                with self._cond:
                    self.retries += 1
                    self.last_error = exc
                    self._warn(
                        "down",
                        "PostgreSQL at %s unreachable, retrying in the background: %s",
                        self.where,
                        self._reason(),
                    )
                    self._cond.wait_for(lambda: self._closed, timeout=pause)
                    if self._closed:
                        break
                pause = min(pause * 2, self.retry_max)
                continue
            pause = 0.05
            with self._cond:
                for _ in batch:
                    self._pending.popleft()
                self.written += len(batch)
                if self.last_error is not None:
                    log.info("PostgreSQL at %s reachable again", self.where)
                    self._warned.discard("down")
                self.last_error = None
                self._cond.notify_all()
        self._drop_connection()

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        if self._conn is None or self._conn.closed:
            conn = self._connect()
            try:
                migrate(conn)
            except Exception:
                conn.close()
                raise
            self._conn = conn
        with (
            self._conn.transaction(),
            self._conn.cursor() as cur,
            cur.copy(f"COPY {TABLE} ({_COLUMNS}) FROM STDIN") as copy,
        ):
            for row in batch:
                copy.write_row(row)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _reason(self) -> str:
        e = self.last_error
        return "no attempt finished yet" if e is None else f"{type(e).__name__}: {str(e).strip()}"

    def _warn(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args)
