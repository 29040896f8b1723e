"""Per-run summaries: for every measurement of every event, and every metric, its count, first, last,
min, max, sum and the steps of each, so run tables and dashboards never scan the events.

A merge writes the summary of the rows it holds beside it (``merge-...summary``); readers combine
those with summaries computed from the few files not merged yet (a live run's segments). Partial
summaries combine exactly: counts and sums add, min/max take theirs, first/last follow the time.
Besides the user's names, each partial carries bookkeeping rows (``source`` starting with ``__``):
row counts, exceptions, the last epoch and step, and one row per rank, for the ``runs`` view.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pyarrow as pa

__all__ = ["SUMMARY_COLUMNS", "combine_sql", "empty_partial", "partial_sql", "summarize_table", "summary_sql"]

#: The columns of the ``summaries`` view, in order. ``source`` is ``'metric'`` for rows of the
#: ``metrics`` view and the event name for event measurements (and ``duration``); ``name`` the
#: metric or measurement key. ``min``/``max``/``sum`` are over finite values (``nonfinite`` counts
#: NaN and infinities); ``first``/``last`` follow (ts, seq); ``*_step`` are the step (``global_step``
#: for events) of each.
SUMMARY_COLUMNS = (
    "experiment_id",
    "source",
    "name",
    "count",
    "nonfinite",
    "first",
    "last",
    "min",
    "max",
    "sum",
    "first_step",
    "last_step",
    "min_step",
    "max_step",
    "first_ts",
    "last_ts",
)

_AGG = """count(*) AS count, count(*) FILTER (WHERE NOT isfinite(v)) AS nonfinite,
          arg_min(v, (ts, seq)) AS first, arg_max(v, (ts, seq)) AS last,
          min(v) FILTER (WHERE isfinite(v)) AS min, max(v) FILTER (WHERE isfinite(v)) AS max,
          sum(v) FILTER (WHERE isfinite(v)) AS sum,
          arg_min(step, (ts, seq)) AS first_step, arg_max(step, (ts, seq)) AS last_step,
          arg_min(step, v) FILTER (WHERE isfinite(v)) AS min_step,
          arg_max(step, v) FILTER (WHERE isfinite(v)) AS max_step,
          min(ts) AS first_ts, max(ts) AS last_ts"""

_BOOK = "NULL::BIGINT, NULL::DOUBLE, NULL::DOUBLE"  # nonfinite, first, last placeholders


def partial_sql(rel: str, dataset: str, part: str) -> str:
    """Partial summaries of the rows of ``rel`` (one dataset), with ``part`` as the experiment id."""
    return f"SELECT * FROM ({_partial(rel, dataset, part)})"


def _partial(rel: str, dataset: str, part: str) -> str:
    if dataset == "metrics":
        return f"""
            WITH r AS (SELECT {part} AS experiment_id, * FROM {rel}),
            v AS (SELECT experiment_id, 'metric' AS source, metric AS name, value AS v, step, ts, seq
                  FROM r WHERE value IS NOT NULL)
            SELECT experiment_id, source, name, {_AGG} FROM v GROUP BY ALL
            UNION ALL
            SELECT experiment_id, '__rows__', 'metrics', count(*), {_BOOK}, NULL, NULL, NULL,
                   NULL, NULL, NULL, NULL, min(ts), max(ts)
            FROM r GROUP BY ALL"""
    return f"""
        WITH r AS (SELECT {part} AS experiment_id, * FROM {rel}),
        v AS (
            SELECT experiment_id, event AS source, unnest(map_keys(measurements)) AS name,
                   unnest(map_values(measurements)) AS v, global_step AS step, ts, seq FROM r
            UNION ALL
            SELECT experiment_id, event, 'duration', duration, global_step, ts, seq FROM r
            WHERE duration IS NOT NULL AND NOT map_contains(measurements, 'duration')  -- else counted twice
        )
        SELECT experiment_id, source, name, {_AGG} FROM v WHERE v IS NOT NULL GROUP BY ALL
        UNION ALL
        SELECT experiment_id, '__rows__', 'events', count(*), {_BOOK}, NULL, NULL, NULL,
               NULL, NULL, NULL, NULL, min(ts), max(ts) FROM r GROUP BY ALL
        UNION ALL
        SELECT experiment_id, '__rows__', 'exceptions', count(*), {_BOOK}, NULL, NULL, NULL,
               NULL, NULL, NULL, NULL, min(ts), max(ts) FROM r WHERE event LIKE '%.exception' GROUP BY ALL
        UNION ALL
        SELECT experiment_id, '__rows__', 'epoch', count(epoch), {_BOOK}, min(epoch), max(epoch), NULL,
               NULL, NULL, NULL, NULL, min(ts), max(ts) FROM r GROUP BY ALL
        UNION ALL
        SELECT experiment_id, '__rows__', 'global_step', count(global_step), {_BOOK}, min(global_step),
               max(global_step), NULL, NULL, NULL, NULL, NULL, min(ts), max(ts) FROM r GROUP BY ALL
        UNION ALL
        SELECT experiment_id, '__rank__', coalesce(CAST(rank AS VARCHAR), ''), count(*), {_BOOK}, NULL, NULL,
               NULL, NULL, NULL, NULL, NULL, min(ts), max(ts) FROM r GROUP BY ALL"""


def combine_sql(partials: str) -> str:
    """One row per (experiment, source, name) from the partial summaries in ``partials``."""
    return f"""
        SELECT experiment_id, source, name, sum(count)::BIGINT AS count, sum(nonfinite)::BIGINT AS nonfinite,
               arg_min(first, first_ts) AS first, arg_max(last, last_ts) AS last,
               min(min) AS min, max(max) AS max, sum(sum) AS sum,
               arg_min(first_step, first_ts) AS first_step, arg_max(last_step, last_ts) AS last_step,
               arg_min(min_step, min) AS min_step, arg_max(max_step, max) AS max_step,
               min(first_ts) AS first_ts, max(last_ts) AS last_ts
        FROM ({partials}) GROUP BY experiment_id, source, name"""


def summary_sql(events: str = "events", metrics: str = "metrics") -> str:
    """The summaries of every run computed from the ``events`` and ``metrics`` relations (a scan)."""
    parts = (
        f"{partial_sql(events, 'events', 'experiment_id')} UNION ALL "
        f"{partial_sql(f'(SELECT * EXCLUDE (run_id) , run_id FROM {metrics})', 'metrics', 'run_id')}"
    )
    return f"SELECT * FROM ({combine_sql(parts)}) WHERE NOT starts_with(source, '__')"


_TS = pa.timestamp("us", tz="UTC")
PARTIAL_SCHEMA = pa.schema(
    [("experiment_id", pa.string()), ("source", pa.string()), ("name", pa.string())]
    + [(c, pa.int64()) for c in ("count", "nonfinite")]
    + [(c, pa.float64()) for c in ("first", "last", "min", "max", "sum")]
    + [(c, pa.int64()) for c in ("first_step", "last_step", "min_step", "max_step")]
    + [("first_ts", _TS), ("last_ts", _TS)]
)


def empty_partial(with_file: bool = False, with_single: bool = False) -> pa.Table:
    """An empty table of partial summaries (with the catalog's ``_file`` key column, and its
    ``_single`` mark, if asked)."""
    schema = PARTIAL_SCHEMA.append(pa.field("_file", pa.string())) if with_file else PARTIAL_SCHEMA
    return (schema.append(pa.field("_single", pa.bool_())) if with_single else schema).empty_table()


def mark_single(table: pa.Table) -> pa.Table:
    """The catalog's summaries with ``_single``: true where the row's run has one merge per dataset,
    so its row is the only one of its key and the view passes it through instead of combining it
    (a finished run: most of a big store). Keys of two merges clash only within one dataset, or
    where an event is named ``metric`` like the metrics' source."""
    import pyarrow.compute as pc

    if "_single" in table.column_names:
        table = table.drop_columns(["_single"])
    files = table.column("_file")
    counts: dict[tuple[str, str], int] = {}
    for key in pc.unique(files).to_pylist():
        dataset, value, _ = key.split("/", 2)
        counts[(dataset, value)] = counts.get((dataset, value), 0) + 1
    several = {value for (_, value), n in counts.items() if n > 1}
    clash = pc.and_(pc.equal(table.column("source"), "metric"), pc.starts_with(files, "events/"))
    several.update(pc.unique(table.column("experiment_id").filter(clash)).to_pylist())
    ids = table.column("experiment_id")
    single = pc.invert(pc.is_in(ids, value_set=pa.array(sorted(several), pa.string())))
    return table.append_column("_single", pc.fill_null(single, False))


_local = threading.local()
_INHERITED: list[Any] = []


def summarize_table(table: pa.Table, dataset: str, partition: str | None = None) -> pa.Table:
    """The partial summary of one file's rows (written beside a merge) for the run ``partition``.

    One connection per process and thread: a forked child never uses (nor frees) its parent's.
    """
    import duckdb

    con: Any = getattr(_local, "con", None)
    if con is None or _local.pid != os.getpid():
        if con is not None:  # the parent's, inherited by fork: never touched again, never freed
            import ctypes

            _INHERITED.append(con)
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(con))
        con = _local.con = duckdb.connect(":memory:")
        _local.pid = os.getpid()
    try:
        con.register("_rows", table)
        con.execute("SET VARIABLE ct_partition = ?", [partition])
        out = con.sql(partial_sql("_rows", dataset, "getvariable('ct_partition')::VARCHAR")).to_arrow_table()
        return out.cast(PARTIAL_SCHEMA)
    finally:
        con.unregister("_rows")
