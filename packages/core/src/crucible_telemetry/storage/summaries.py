"""Per-run summaries: for every measurement of every event, and every metric, its count, first, last,
min, max, sum and the steps of each, so run tables and dashboards never scan the events."""

from __future__ import annotations

__all__ = ["SUMMARY_COLUMNS", "summary_sql"]

#: The columns of the ``summaries`` view, in order. ``source`` is ``'metric'`` for rows of the
#: ``metrics`` view and the event name for event measurements; ``name`` the metric or measurement
#: key. ``min``/``max``/``sum`` are over finite values (``nonfinite`` counts NaN and infinities);
#: ``first``/``last`` follow (ts, seq); ``*_step`` are the step (``global_step`` for events) of each.
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


def _aggregate(keys: str) -> str:
    return f"""
        SELECT {keys}, count(*) AS count, count(*) FILTER (WHERE NOT isfinite(v)) AS nonfinite,
               arg_min(v, (ts, seq)) AS first, arg_max(v, (ts, seq)) AS last,
               min(v) FILTER (WHERE isfinite(v)) AS min, max(v) FILTER (WHERE isfinite(v)) AS max,
               sum(v) FILTER (WHERE isfinite(v)) AS sum,
               arg_min(step, (ts, seq)) AS first_step, arg_max(step, (ts, seq)) AS last_step,
               arg_min(step, v) FILTER (WHERE isfinite(v)) AS min_step,
               arg_max(step, v) FILTER (WHERE isfinite(v)) AS max_step,
               min(ts) AS first_ts, max(ts) AS last_ts"""


def summary_sql(events: str = "events", metrics: str = "metrics") -> str:
    """The summaries of every run, computed from the ``events`` and ``metrics`` relations given."""
    return f"""
        WITH ev AS (
            SELECT experiment_id, event AS source, unnest(map_keys(measurements)) AS name,
                   unnest(map_values(measurements)) AS v, global_step AS step, ts, seq
            FROM {events}
        ), me AS (
            SELECT run_id AS experiment_id, 'metric' AS source, metric AS name, value AS v, step, ts, seq
            FROM {metrics} WHERE value IS NOT NULL
        ), rows AS (
            SELECT * FROM ev WHERE v IS NOT NULL UNION ALL SELECT * FROM me
        )
        {_aggregate("experiment_id, source, name")}
        FROM rows GROUP BY experiment_id, source, name"""
