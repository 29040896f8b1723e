"""crucible-telemetry for PostgreSQL: the ``postgres`` MetricsStore adapter, its migrations and a mirror.

psycopg is imported when a connection is first needed, not when the core loads this plugin.
"""

from __future__ import annotations

from .adapter import PostgresMetrics, PostgresUnavailableError, describe_dsn
from .migrations import MIGRATIONS, MIGRATIONS_TABLE, TABLE, Migration, applied, migrate
from .mirror import mirror_runs

__all__ = [
    "MIGRATIONS",
    "MIGRATIONS_TABLE",
    "TABLE",
    "Migration",
    "PostgresMetrics",
    "PostgresUnavailableError",
    "applied",
    "describe_dsn",
    "migrate",
    "mirror_runs",
]
