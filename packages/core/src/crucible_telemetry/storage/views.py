"""DuckDB views over the Parquet segments and experiment records (the stable SQL schema)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import duckdb
import orjson

from .schema import STANDARD_KEYS
from .summaries import SUMMARY_COLUMNS, combine_sql, partial_sql

__all__ = [
    "VIEW_NAMES",
    "connect",
    "create_views",
    "set_aside_damaged",
    "set_aside_damaged_records",
    "set_aside_record",
    "sound_files",
]

log = logging.getLogger("crucible_telemetry")

VIEW_NAMES = ("experiments", "events", "metrics", "runs", "params", "summaries")

_MAGIC = b"PAR1"
_sound: dict[str, bool] = {}  # data file -> whether it is whole (data files are never rewritten)
_json_seen: dict[str, tuple[int, int]] = {}  # record -> (size, mtime_ns) when found sound


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


def _set_aside(path: Path) -> None:
    from .listing import forget, touch

    aside = path.with_name(path.name + ".damaged")
    try:
        os.replace(path, aside)
        forget(path.parent)
        touch(path.parent)
        log.warning("crucible_telemetry: %s is damaged; set aside as %s (its rows are not read)", path, aside.name)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("crucible_telemetry: %s is damaged and cannot be set aside (%r); it is not read", path, exc)


def sound_files(paths: list[str]) -> list[str]:
    """The Parquet files of ``paths`` that are whole; damaged ones are set aside (one warning each).

    Each file is checked once per process (names are never reused); a file that cannot be moved
    (a read-only store) is left out of the list, so one bad file never fails a query. Merges are
    trusted: only this code writes them, durably (``set_aside_damaged`` checks them too).
    """
    out: list[str] = []
    for p in paths:
        ok = True if "/merge-" in p else _sound.get(p)
        if ok is None:
            path = Path(p)
            try:
                ok = _parquet_sound(path, path.stat().st_size)
            except FileNotFoundError:
                continue  # merged and collected meanwhile: its rows are in the cover
            except OSError as exc:
                log.warning("crucible_telemetry: cannot read %s: %r", path, exc)
                continue
            if len(_sound) > 500_000:
                _sound.clear()
            _sound[p] = ok
            if not ok:
                _set_aside(path)
        if ok:
            out.append(p)
    return out


def set_aside_record(path: Path) -> None:
    """Set aside one experiment record found damaged (it hides only its own experiment)."""
    _set_aside(path)


def set_aside_damaged_records(home: Path) -> list[Path]:
    """Set aside experiment records that are not a JSON object (a zero-byte or truncated file)."""
    found: list[Path] = []
    try:
        entries = list(os.scandir(home / "experiments"))
    except FileNotFoundError:
        return found
    for e in entries:
        if not e.name.endswith(".json") or e.name.startswith("_"):
            continue
        try:
            st = e.stat()
            key = e.path
            if _json_seen.get(key) == (st.st_size, st.st_mtime_ns):
                continue
            if _json_sound(Path(e.path), st.st_size):
                _json_seen[key] = (st.st_size, st.st_mtime_ns)
                continue
        except (FileNotFoundError, OSError):
            continue
        found.append(Path(e.path))
        _set_aside(Path(e.path))
    return found


def set_aside_damaged(home: Path) -> list[Path]:
    """Check every segment and record of the store; set aside (and return) the damaged ones."""
    from .listing import dataset_files

    found = set_aside_damaged_records(home)
    for ds, key in (("events", "experiment_id"), ("metrics", "run_id")):
        paths = dataset_files(home / ds, key)
        good = set(sound_files(paths))
        found += [Path(p) for p in paths if p not in good]
    return found


def create_views(con: duckdb.DuckDBPyConnection, home: Path) -> None:
    """(Re)create the views on ``con`` for the store at ``home``; each query lists the files it reads."""
    from .snapshot import install

    binder = install(con, home)  # damaged records are set aside by the catalog as it first reads them
    binder.creating = True  # a view is bound again by each query: creating it needs only its columns
    try:
        _create(con)
    finally:
        binder.creating = False


def _create(con: duckdb.DuckDBPyConnection) -> None:
    files = "ct_files('{kind}', txid_current())"
    files_of = "ct_files_of('{kind}', ids, txid_current())"

    fill = ", ".join(f"coalesce({k}, measurements['{k}']) AS {k}" for k in STANDARD_KEYS)

    def read(kind: str, key: str, fn: str = files) -> str:
        """This release's files, then older ones by name (``union_by_name``; their standard-key
        columns read from ``measurements``), as one relation."""
        hive = f"hive_partitioning = true, hive_types = {{'{key}': VARCHAR}}"
        old = f"read_parquet({fn.format(kind=kind + '_legacy')}, {hive}, union_by_name = true)"
        legacy = f"SELECT * REPLACE ({fill}) FROM {old}" if kind.startswith("events") else f"SELECT * FROM {old}"
        return f"(SELECT * FROM read_parquet({fn.format(kind=kind)}, {hive}) UNION ALL BY NAME {legacy})"

    con.execute(
        f"CREATE OR REPLACE VIEW events AS SELECT experiment_id, * EXCLUDE (experiment_id) "
        f"FROM {read('events', 'experiment_id')} WHERE experiment_id <> '__schema__'"
    )
    con.execute(
        f"CREATE OR REPLACE VIEW metrics AS SELECT run_id, * EXCLUDE (run_id) "
        f"FROM {read('metrics', 'run_id')} WHERE run_id <> '__schema__'"
    )
    con.execute(
        f"CREATE OR REPLACE MACRO events_of(ids) AS TABLE SELECT experiment_id, * EXCLUDE (experiment_id) "
        f"FROM {read('events', 'experiment_id', files_of)} WHERE experiment_id <> '__schema__'"
    )
    con.execute(
        f"CREATE OR REPLACE MACRO metrics_of(ids) AS TABLE SELECT run_id, * EXCLUDE (run_id) "
        f"FROM {read('metrics', 'run_id', files_of)} WHERE run_id <> '__schema__'"
    )
    con.execute(
        f"""CREATE OR REPLACE VIEW experiments AS
        SELECT experiment_id, name, hypothesis, condition, tags, CAST(metadata AS JSON) AS metadata,
               CASE WHEN status IN ('running', 'paused') AND ct_gone(host, pid) THEN 'crashed' ELSE status END
                   AS status,
               started_at, stopped_at, host, pid, dropped_paused, CAST(params AS JSON) AS params, framework,
               notes, CAST(environment AS JSON) AS environment, CAST(accounting AS JSON) AS accounting
        FROM read_parquet({files.format(kind="experiments")})"""
    )
    raw_ev = f"(SELECT * FROM {read('events_raw', 'experiment_id')} WHERE experiment_id <> '__schema__')"
    raw_me = f"(SELECT * FROM {read('metrics_raw', 'run_id')} WHERE run_id <> '__schema__')"
    cols = ", ".join(SUMMARY_COLUMNS)
    # A merged summary row marked ``_single`` is the only one of its key (a finished run), unless the
    # run also has files not merged yet (``raw_ids``): passed through, the rest combined.
    merged = f"read_parquet({files.format(kind='summaries')}, union_by_name = true)"
    raw_ids = f"(SELECT unnest({files.format(kind='raw_ids')}) AS id)"
    partials = (
        f"SELECT {cols} FROM m WHERE NOT coalesce(_single, false) "
        f"UNION ALL SELECT {cols} FROM m SEMI JOIN r ON m.experiment_id = r.id WHERE _single "
        f"UNION ALL {partial_sql(raw_ev, 'events', 'experiment_id')} "
        f"UNION ALL {partial_sql(raw_me, 'metrics', 'run_id')}"
    )
    con.execute(
        f"CREATE OR REPLACE VIEW _summaries_all AS WITH m AS NOT MATERIALIZED (SELECT * FROM {merged}), "
        f"r AS {raw_ids} SELECT {cols} FROM m ANTI JOIN r ON m.experiment_id = r.id WHERE _single "
        f"UNION ALL {combine_sql(partials)}"
    )
    con.execute("CREATE OR REPLACE VIEW summaries AS SELECT * FROM _summaries_all WHERE NOT starts_with(source, '__')")
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
        WITH s AS (
            SELECT experiment_id,
                   sum(count) FILTER (WHERE source = '__rows__' AND name = 'events') AS events,
                   sum(count) FILTER (WHERE source = '__rows__' AND name = 'exceptions') AS exceptions,
                   max(max) FILTER (WHERE source = '__rows__' AND name = 'epoch') AS max_epoch,
                   max(max) FILTER (WHERE source = '__rows__' AND name = 'global_step') AS max_global_step,
                   count(*) FILTER (WHERE source = '__rank__' AND name <> '') AS ranks,
                   min(first_ts) FILTER (WHERE source = '__rows__' AND name = 'events') AS first_event_at,
                   max(last_ts) FILTER (WHERE source = '__rows__' AND name = 'events') AS last_event_at,
                   sum(count) FILTER (WHERE source = '__rows__' AND name = 'metrics') AS metric_rows,
                   count(*) FILTER (WHERE source = 'metric') AS metric_names
            FROM _summaries_all GROUP BY experiment_id
        )
        SELECT e.*,
               epoch(coalesce(e.stopped_at, s.last_event_at, e.started_at)) - epoch(e.started_at) AS duration_s,
               coalesce(s.events, 0)::BIGINT AS events, coalesce(s.exceptions, 0)::BIGINT AS exceptions,
               s.first_event_at, s.last_event_at, s.max_epoch::BIGINT AS max_epoch,
               s.max_global_step::BIGINT AS max_global_step, nullif(s.ranks, 0)::BIGINT AS ranks,
               coalesce(s.metric_rows, 0)::BIGINT AS metric_rows, coalesce(s.metric_names, 0)::BIGINT AS metric_names
        FROM experiments e LEFT JOIN s ON s.experiment_id = e.experiment_id"""
    )


def connect(home: Path, read_only: bool = True, **config: Any) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection whose views read the store at ``home``.

    ``read_only`` (the default) also locks the connection's file access to the store's data and
    catalog folders (DuckDB's ``enable_external_access`` off, ``allowed_directories``): its SQL can
    read the store but no other file, and cannot ``COPY ... TO`` a path elsewhere, ``ATTACH`` or
    install anything. ``read_only=False`` leaves DuckDB as it comes, for tables and files of your own.
    """
    con = duckdb.connect(":memory:", config=config or {})
    create_views(con, home)
    if read_only:
        from .catalog import catalog_for

        dirs = [(home / "events").as_posix() + "/", (home / "metrics").as_posix() + "/"]
        dirs.append(catalog_for(home).folder().as_posix() + "/")
        con.execute("SET allowed_directories = ?", [dirs])
        con.execute("SET enable_external_access = false")
    return con
