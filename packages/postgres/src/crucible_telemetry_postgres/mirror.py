"""Mirror the core's ``metrics`` rows of chosen runs into PostgreSQL, to join them with other tables there.

The core store stays the source of truth: a mirror replaces the run's rows with ``source = 'core'``
in one transaction, so running it again (after more training) leaves one copy, never two.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from crucible_telemetry.errors import CrucibleError, InvalidArgumentError
from crucible_telemetry.integration import hub_for

from .adapter import PostgresUnavailableError, describe_dsn
from .migrations import TABLE, migrate

__all__ = ["mirror_runs"]


def _rows(home: Any, run_ids: list[str]) -> list[tuple[Any, ...]]:
    con = hub_for(home).connect()
    try:
        marks = ", ".join("?" for _ in run_ids)
        raw = con.execute(
            f"SELECT run_id, metric, value, step, ts, epoch, metadata FROM metrics WHERE run_id IN ({marks}) "
            "ORDER BY ts, host, pid, seq",
            run_ids,
        ).fetchall()
    finally:
        con.close()
    out = []
    for run_id, metric, value, step, ts, epoch, metadata in raw:
        md = json.loads(metadata) if metadata else {}
        if epoch is not None:
            md.setdefault("epoch", epoch)
        out.append((run_id, metric, value, step, ts, json.dumps(md, default=repr), "core"))
    return out


def mirror_runs(dsn: str, run_ids: str | Iterable[str], *, home: str | None = None) -> int:
    """Copy the core store's ``metrics`` rows of ``run_ids`` (in ``home``, else the default store) into
    ``crucible_metrics`` with ``source = 'core'``, replacing an earlier mirror of them; returns the row count.
    """
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    if not ids or not all(isinstance(r, str) and r for r in ids):
        raise InvalidArgumentError("run_ids", f"expected run ids (non-empty strings), got {run_ids!r}")
    try:
        where = describe_dsn(dsn)
    except Exception as exc:
        raise InvalidArgumentError("dsn", f"not a PostgreSQL conninfo string or URL ({exc})") from None
    rows = _rows(home, ids)
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            migrate(conn)
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(f"DELETE FROM {TABLE} WHERE source = 'core' AND run_id = ANY(%s)", [ids])
                with cur.copy(f"COPY {TABLE} (run_id, metric, value, step, ts, metadata, source) FROM STDIN") as cp:
                    for row in rows:
                        cp.write_row(row)
    except CrucibleError:
        raise
    except psycopg.Error as exc:
        raise PostgresUnavailableError(f"dsn: cannot mirror into PostgreSQL at {where}: {exc}") from None
    return len(rows)
