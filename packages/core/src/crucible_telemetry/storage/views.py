"""DuckDB views over the Parquet segments and experiment records (the stable SQL schema)."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any

import duckdb
import orjson

from . import segments
from .summaries import summary_sql

__all__ = ["VIEW_NAMES", "connect", "create_views", "set_aside_damaged"]

log = logging.getLogger("crucible_telemetry")

VIEW_NAMES = ("experiments", "events", "metrics", "runs", "params", "summaries")

_EXPERIMENT_COLUMNS = (
    "{experiment_id: 'VARCHAR', name: 'VARCHAR', hypothesis: 'VARCHAR', condition: 'VARCHAR', "
    "tags: 'VARCHAR[]', metadata: 'JSON', status: 'VARCHAR', started_at: 'TIMESTAMPTZ', "
    "stopped_at: 'TIMESTAMPTZ', host: 'VARCHAR', pid: 'BIGINT', dropped_paused: 'BIGINT', params: 'JSON', "
    "framework: 'VARCHAR', notes: 'VARCHAR', environment: 'JSON'}"
)


def _lit(s: str) -> str:
    """A SQL string literal for a path (the home folder is configuration, never user data)."""
    return "'" + s.replace("'", "''") + "'"


def _dataset_sql(home: Path, dataset: str, key: str) -> str:
    pattern = (home / dataset / "*" / "*.parquet").as_posix()
    return f"""
        SELECT * EXCLUDE (filename)
        FROM read_parquet({_lit(pattern)}, hive_partitioning = true, union_by_name = true,
                          filename = true, hive_types = {{'{key}': VARCHAR}})
        WHERE {key} <> '__schema__'
          AND filename IN ({segments.visible_files_sql(f"SELECT file FROM glob({_lit(pattern)})")})"""


_MAGIC = b"PAR1"
_sound: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) of files already found sound


def _parquet_sound(path: Path, size: int) -> bool:
    """Both magic markers and a footer that fits: what a zero-byte, truncated or garbage file lacks."""
    if size < 12:
        return False
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(-8, os.SEEK_END)
        tail = f.read(8)
    return head == _MAGIC and tail[4:] == _MAGIC and int.from_bytes(tail[:4], "little") + 12 <= size


def _json_sound(path: Path, size: int) -> bool:
    try:
        return size > 0 and isinstance(orjson.loads(path.read_bytes()), dict)
    except orjson.JSONDecodeError:
        return False


def set_aside_damaged(home: Path) -> list[Path]:
    """Rename damaged segments and records to ``<name>.damaged`` (one warning each), so one bad
    file cannot fail every query; returns the files found damaged. Each file is read once.

    A read-only store keeps its damaged file (warned about) and its queries still fail on it.
    """
    found: list[Path] = []
    candidates = [(p, _parquet_sound) for ds in ("events", "metrics") for p in (home / ds).glob("*/*.parquet")]
    candidates += [(p, _json_sound) for p in (home / "experiments").glob("*.json")]
    for path, sound in candidates:
        key = str(path)
        try:
            st = path.stat()
            if _sound.get(key) == (st.st_size, st.st_mtime_ns):
                continue
            if sound(path, st.st_size):
                _sound[key] = (st.st_size, st.st_mtime_ns)
                continue
        except FileNotFoundError:  # compacted or replaced meanwhile
            continue
        except OSError as exc:
            log.warning("crucible_telemetry: cannot read %s: %r", path, exc)
            continue
        found.append(path)
        aside = path.with_name(path.name + ".damaged")
        try:
            os.replace(path, aside)
            log.warning("crucible_telemetry: %s is damaged; set aside as %s (its rows are not read)", path, aside.name)
        except OSError as exc:
            log.warning(
                "crucible_telemetry: %s is damaged and cannot be set aside (%r); queries reading it fail", path, exc
            )
    return found


def create_views(con: duckdb.DuckDBPyConnection, home: Path) -> None:
    """(Re)create the four views on ``con`` for the store at ``home`` (damaged files set aside first)."""
    set_aside_damaged(home)
    exp_pattern = (home / "experiments" / "*.json").as_posix()
    events = _dataset_sql(home, "events", "experiment_id")
    metrics = _dataset_sql(home, "metrics", "run_id")
    con.execute(f"CREATE OR REPLACE VIEW events AS SELECT experiment_id, * EXCLUDE (experiment_id) FROM ({events})")
    con.execute(f"CREATE OR REPLACE VIEW metrics AS SELECT run_id, * EXCLUDE (run_id) FROM ({metrics})")
    con.execute(
        f"""CREATE OR REPLACE VIEW experiments AS
        SELECT * FROM read_json({_lit(exp_pattern)}, format = 'auto', columns = {_EXPERIMENT_COLUMNS},
                                union_by_name = true)
        WHERE experiment_id IS NOT NULL"""
    )
    con.execute(f"CREATE OR REPLACE VIEW summaries AS {summary_sql()}")
    con.execute(
        """CREATE OR REPLACE VIEW params AS
        SELECT e.experiment_id, p.key, p.value ->> '$' AS value,
               CASE WHEN json_type(p.value) IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN CAST(p.value AS DOUBLE)
                    WHEN json_type(p.value) = 'BOOLEAN' THEN CAST(CAST(p.value AS BOOLEAN) AS DOUBLE)
               END AS value_num
        FROM experiments e, json_each(coalesce(e.params, '{}')) p
        WHERE json_type(e.params) = 'OBJECT'"""
    )
    con.execute(
        """CREATE OR REPLACE VIEW runs AS
        WITH ev AS (
            SELECT experiment_id, count(*) AS events, min(ts) AS first_event_at, max(ts) AS last_event_at,
                   count(*) FILTER (WHERE event LIKE '%.exception') AS exceptions,
                   max(epoch) AS max_epoch, max(global_step) AS max_global_step,
                   count(DISTINCT rank) AS ranks
            FROM events GROUP BY experiment_id
        ), me AS (
            SELECT run_id, count(*) AS metric_rows, count(DISTINCT metric) AS metric_names
            FROM metrics GROUP BY run_id
        )
        SELECT e.*,
               epoch(coalesce(e.stopped_at, ev.last_event_at, e.started_at)) - epoch(e.started_at) AS duration_s,
               coalesce(ev.events, 0) AS events, coalesce(ev.exceptions, 0) AS exceptions,
               ev.first_event_at, ev.last_event_at, ev.max_epoch, ev.max_global_step, ev.ranks,
               coalesce(me.metric_rows, 0) AS metric_rows, coalesce(me.metric_names, 0) AS metric_names
        FROM experiments e
        LEFT JOIN ev ON ev.experiment_id = e.experiment_id
        LEFT JOIN me ON me.run_id = e.experiment_id"""
    )


def _ensure_experiments_placeholder(home: Path) -> None:
    folder = home / "experiments"
    folder.mkdir(parents=True, exist_ok=True)
    ph = folder / "_schema.json"
    if not ph.exists():
        tmp = folder / f"._schema.json.{os.getpid()}.{secrets.token_hex(3)}.tmp"  # one per writer: others race here
        tmp.write_text('{"experiment_id": null}\n')
        tmp.replace(ph)


def connect(home: Path, read_only: bool = True, **config: Any) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose views read the store at ``home``.

    The store's files are only ever written by writer threads; ``read_only=False`` merely
    lets you create tables of your own in the connection's in-memory catalog.
    """
    _ensure_experiments_placeholder(home)
    from .segments import SegmentWriter  # noqa: F401  (schema files come with any writer)

    con = duckdb.connect(":memory:", config=config or {})
    create_views(con, home)
    return con
