"""The schema, as ordered, named migrations; each one applied is recorded in ``crucible_migrations``.

``migrate(conn)`` runs under a transaction-scoped advisory lock, so processes that open the same
database at once apply each migration once. A migration's ``apply(conn)`` returns a note (``""``
when there is nothing to say), kept beside its name: the TimescaleDB one says when it was skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["MIGRATIONS", "MIGRATIONS_TABLE", "TABLE", "Migration", "applied", "migrate"]

log = logging.getLogger("crucible_telemetry_postgres")

#: The table metric values go to, and the table that records applied migrations.
TABLE = "crucible_metrics"
MIGRATIONS_TABLE = "crucible_migrations"
#: ``pg_advisory_xact_lock`` key: "crucible" in ASCII, so other applications' locks do not collide.
_LOCK_KEY = 0x6372756369626C65


@dataclass(frozen=True)
class Migration:
    """One step of the schema: a unique, sortable ``name`` and ``apply(conn) -> note``."""

    name: str
    apply: Callable[[Any], str]
    description: str


def _sql(*statements: str) -> Callable[[Any], str]:
    def apply(conn: Any) -> str:
        for statement in statements:
            conn.execute(statement)
        return ""

    return apply


def _hypertable(conn: Any) -> str:
    """A TimescaleDB hypertable on ``ts`` when the extension can be created; otherwise a note why not."""
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if row is None:
        note = "skipped: the timescaledb extension is not available on this server"
        log.info("%s: %s stays a plain table", note, TABLE)
        return note
    try:
        with conn.transaction():  # a savepoint: a failure here leaves the other migrations applied
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute(f"SELECT create_hypertable('{TABLE}', 'ts', if_not_exists => TRUE, migrate_data => TRUE)")
    except Exception as exc:  # e.g. timescaledb not in shared_preload_libraries
        note = f"skipped: timescaledb is available but could not be enabled ({str(exc).strip()})"
        log.warning("%s: %s stays a plain table", note, TABLE)
        return note
    return "hypertable on ts"


#: In the order they run. Never edit one that shipped: add the next.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "0001_create_metrics",
        _sql(
            f"""CREATE TABLE {TABLE} (
                id bigint GENERATED ALWAYS AS IDENTITY,
                run_id text NOT NULL,
                metric text NOT NULL,
                value double precision NOT NULL,
                step bigint,
                ts timestamptz NOT NULL,
                metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb,
                source text NOT NULL DEFAULT 'adapter'
            )"""
        ),
        "the metrics table: one row per recorded value (source 'adapter', or 'core' when mirrored)",
    ),
    Migration(
        "0002_index_run_metric_step",
        _sql(f"CREATE INDEX {TABLE}_run_metric_step ON {TABLE} (run_id, metric, step)"),
        "an index for one run's series: WHERE run_id = ? AND metric = ? ORDER BY step",
    ),
    Migration(
        "0003_timescaledb_hypertable",
        _hypertable,
        "a TimescaleDB hypertable on ts when the extension exists (skipped, with a note, when not)",
    ),
)


def applied(conn: Any) -> list[tuple[str, str]]:
    """``(name, note)`` of every migration recorded in the database, in the order they ran."""
    exists = conn.execute("SELECT to_regclass(%s)", [MIGRATIONS_TABLE]).fetchone()[0]
    if exists is None:
        return []
    return [(r[0], r[1]) for r in conn.execute(f"SELECT name, note FROM {MIGRATIONS_TABLE} ORDER BY seq")]


def migrate(conn: Any) -> list[str]:
    """Apply the migrations not yet recorded, in order, in one transaction; returns the names applied now."""
    done_now: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
                seq bigint GENERATED ALWAYS AS IDENTITY,
                name text PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now(),
                note text NOT NULL DEFAULT ''
            )"""
        )
        done = {name for name, _ in applied(conn)}
        for m in MIGRATIONS:
            if m.name in done:
                continue
            note = m.apply(conn)
            conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name, note) VALUES (%s, %s)", [m.name, note])
            done_now.append(m.name)
    return done_now
