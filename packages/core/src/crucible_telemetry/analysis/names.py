"""The metric name space of a run: which summary and which curve a name such as ``val_loss`` denotes.

One rule, read from the ``summaries`` view (never computed another way):

- **What the user logged keeps its name.** Rows of the ``metrics`` view (``self.log`` through the
  Lightning ``CrucibleLogger``, the Hugging Face Trainer's ``logs``, ``MetricsStore.record``) are
  the metric of that name: ``val_loss``, ``train_loss_step``, ``eval_loss``. A row without a step
  whose name is one of the run's params (Lightning's ``log_hyperparams``) is that param, not a metric.
- **Standard training events fill in the rest.** A measurement of ``crucible_train.validation.stop``,
  ``epoch.stop``, ``batch.stop`` or ``training.stop`` is visible under its key when the run logged
  no metric of that name, taken from the first of these four events that has it. So a validation
  value the callbacks store on both ``validation.stop`` and ``epoch.stop`` counts once per
  validation, and ``val_loss`` names the validation loss of a Lightning and a Hugging Face run alike.
  The axes ``epoch``, ``global_step``, ``step`` and ``batch`` are not metrics, nor is an event's
  ``duration``.
- **``<event>:<key>``** always addresses one event's measurement, e.g.
  ``crucible_train.batch.stop:loss`` or ``crucible_train.epoch.stop:duration``.

A summary is chosen with a suffix: ``val_loss`` (or ``val_loss.last``) is the last value,
``val_loss.min``, ``val_loss.max``, ``val_loss.first`` and ``val_loss.count`` the others; a leading
``metrics.`` is accepted (``metrics.val_loss.min``, the column of ``ct.runs()``).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "AXES",
    "SERIES_COLUMNS",
    "STANDARD_SOURCES",
    "STATS",
    "SUMMARY_COLUMNS",
    "MetricRef",
    "metric_names",
    "metric_series",
    "metric_summaries",
    "metric_summaries_table",
    "resolve_metric",
    "unknown_metric_message",
]

#: Events whose measurements are visible under their bare key, first one that has the key wins.
STANDARD_SOURCES = (
    "crucible_train.validation.stop",
    "crucible_train.epoch.stop",
    "crucible_train.batch.stop",
    "crucible_train.training.stop",
)
#: Keys that are axes, not metrics (events carry them as measurements, HF logs ``epoch``).
AXES = ("epoch", "global_step", "step", "batch")
#: Summary suffixes: ``name.min`` ...; a bare name is ``last``.
STATS = ("last", "min", "max", "first", "count")

#: The columns of :func:`metric_summaries` and :func:`metric_series`.
SUMMARY_COLUMNS = [
    "experiment_id",
    "metric",
    "source",
    "count",
    "last",
    "min",
    "max",
    "first",
    "last_step",
    "min_step",
    "max_step",
]
SERIES_COLUMNS = ["experiment_id", "metric", "x", "value", "step", "epoch", "ts"]


@dataclass(frozen=True)
class MetricRef:
    """A resolved metric name: ``text`` as given, ``metric`` its name, ``stat`` its summary.

    Attributes:
        text: what the user wrote (``"val_loss.min"``).
        metric: the metric (``"val_loss"`` or ``"crucible_train.epoch.stop:val_loss"``).
        stat: ``"last"``, ``"min"``, ``"max"``, ``"first"`` or ``"count"``; None when no suffix was given.
    """

    text: str
    metric: str
    stat: str | None = None

    @property
    def column(self) -> str:
        """The ``ct.runs()`` column: ``metrics.val_loss`` (last) or ``metrics.val_loss.min``."""
        stat = self.stat or "last"
        return f"metrics.{self.metric}" if stat == "last" else f"metrics.{self.metric}.{stat}"

    @property
    def event(self) -> str | None:
        """The event of an explicit ``<event>:<key>`` name, else None."""
        return self.metric.rpartition(":")[0] or None

    @property
    def key(self) -> str:
        """The measurement key (the metric name itself for a bare name)."""
        return self.metric.rpartition(":")[2]


def _arrow(src: Any, sql: str, params: list[Any]) -> Any:
    """Run SQL on a hub (flushed first) or a DuckDB connection; a ``pyarrow.Table``."""
    store = getattr(src, "store", None)
    if store is not None and hasattr(store, "arrow"):
        return store.arrow(sql, params)
    return src.sql(sql, params=params).to_arrow_table()


def _frame(src: Any, sql: str, params: list[Any]) -> pd.DataFrame:
    return _arrow(src, sql, params).to_pandas()


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _ids_sql(ids: Sequence[str] | None, column: str = "experiment_id") -> tuple[str, list[Any]]:
    if ids is None:
        return "true", []
    ids = list(ids)
    if not ids:
        return "false", []
    return f"{column} IN ({_marks(ids)})", ids


def _bare_sql(ids: Sequence[str] | None, source: str = "summaries") -> tuple[str, list[Any]]:
    """SQL of the bare name space: logged metrics, then standard event measurements by priority
    (``source``: the summaries view, or a snapshot of it from ``Store.snapshot``)."""
    isql, iparams = _ids_sql(ids)
    prio = " ".join(f"WHEN ? THEN {i}" for i in range(len(STANDARD_SOURCES)))
    sql = f"""
        WITH s AS (SELECT * FROM {source} WHERE {isql}),
        p AS (SELECT experiment_id, key FROM params WHERE {isql}),
        logged AS (
            SELECT s.* FROM s
            WHERE source = 'metric' AND name NOT IN ({_marks(AXES)})
              AND NOT (s.first_step IS NULL AND s.last_step IS NULL
                       AND EXISTS (SELECT 1 FROM p WHERE p.experiment_id = s.experiment_id AND p.key = s.name))
        ),
        std AS (
            SELECT * EXCLUDE (prio, rk) FROM (
                SELECT *, row_number() OVER (PARTITION BY experiment_id, name ORDER BY prio) AS rk FROM (
                    SELECT s.*, CASE source {prio} END AS prio FROM s
                    WHERE source IN ({_marks(STANDARD_SOURCES)}) AND name NOT IN ({_marks(AXES)}) AND name <> 'duration'
                )
            ) WHERE rk = 1
        ),
        named AS (
            SELECT * FROM logged
            UNION ALL
            SELECT * FROM std WHERE NOT EXISTS (
                SELECT 1 FROM logged l WHERE l.experiment_id = std.experiment_id AND l.name = std.name)
        )
        SELECT experiment_id, name AS metric, source, count, last, min, max, first, last_step, min_step, max_step
        FROM named"""
    params = iparams + iparams + list(AXES) + list(STANDARD_SOURCES) + list(STANDARD_SOURCES) + list(AXES)
    return sql, params


def metric_summaries(con: Any, ids: Sequence[str] | None = None, names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per run and metric name: experiment_id, metric, source, count, last, min, max, first,
    last_step, min_step, max_step (``source`` is ``'metric'`` or the event it was read from).

    ``con`` is a ``ct.Telemetry`` hub or a DuckDB connection from ``ct.connect()``; ``ids`` limits
    the runs; ``names`` limits the metrics and may hold explicit ``<event>:<key>`` names (by default
    only the bare name space).
    """
    if names is not None and not list(names):
        return _empty(SUMMARY_COLUMNS)
    return metric_summaries_table(con, ids, names).to_pandas()[SUMMARY_COLUMNS]


def metric_summaries_table(
    con: Any, ids: Sequence[str] | None = None, names: Sequence[str] | None = None, source: str = "summaries"
) -> Any:
    """:func:`metric_summaries` as a ``pyarrow.Table`` (no pandas: what ``crucible runs`` reads)."""
    sql, params = _bare_sql(ids, source)
    parts, allp = [sql], list(params)
    explicit = [n for n in names or () if ":" in n]
    if explicit:
        isql, iparams = _ids_sql(ids)
        cond = " OR ".join("(source = ? AND name = ?)" for _ in explicit)
        parts.append(
            "SELECT experiment_id, source || ':' || name AS metric, source, count, last, min, max, first, "
            f"last_step, min_step, max_step FROM {source} WHERE {isql} AND ({cond})"
        )
        allp += iparams
        for n in explicit:
            ev, _, key = n.rpartition(":")
            allp += [_dotted(ev), key]
    body = " UNION ALL ".join(f"({p})" for p in parts)
    where, wparams = "", []
    if names is not None:
        wanted = [n if ":" not in n else f"{_dotted(n.rpartition(':')[0])}:{n.rpartition(':')[2]}" for n in names]
        where, wparams = (f" WHERE metric IN ({_marks(wanted)})", wanted) if wanted else (" WHERE false", [])
    cols = ", ".join(SUMMARY_COLUMNS)
    return _arrow(con, f"SELECT {cols} FROM ({body}){where} ORDER BY experiment_id, metric", allp + wparams)


def _empty(columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: [] for c in columns})


def _dotted(event: str) -> str:
    from ..names import normalize

    try:
        return normalize(event.strip())[0]
    except InvalidArgumentError:
        return event.strip()


def metric_names(con: Any, ids: Sequence[str] | None = None) -> list[str]:
    """The bare metric names any of the runs has, sorted."""
    sql, params = _bare_sql(ids)
    tbl = _arrow(con, f"SELECT DISTINCT metric FROM ({sql}) ORDER BY metric", params)
    return [str(m) for m in tbl.column("metric").to_pylist()]


def _explicit_names(con: Any, ids: Sequence[str] | None) -> list[str]:
    isql, iparams = _ids_sql(ids)
    tbl = _arrow(
        con,
        f"SELECT DISTINCT source || ':' || name AS m FROM summaries WHERE {isql} AND source <> 'metric' ORDER BY m",
        iparams,
    )
    return [str(m) for m in tbl.column("m").to_pylist()]


def _split(text: str) -> tuple[str, str | None]:
    stem, dot, suffix = text.rpartition(".")
    if dot and suffix in STATS and stem and not stem.endswith(":"):
        return stem, suffix
    return text, None


def resolve_metric(
    con: Any,
    name: str,
    ids: Sequence[str] | None = None,
    *,
    argument: str = "metric",
    stats: bool = True,
) -> MetricRef:
    """Resolve ``name`` (with an optional ``.min``-style suffix when ``stats``) against the runs ``ids``.

    Raises :class:`~crucible_telemetry.errors.InvalidArgumentError` naming ``argument`` (the
    user's word, e.g. ``--metric``) with "did you mean ..." suggestions when no run has it.
    """
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError(argument, f"expected a metric name such as 'val_loss', got {name!r}")
    text = name.strip()
    bare = text.removeprefix("metrics.") if text.startswith("metrics.") else text
    explicit = ":" in bare
    known = set(_explicit_names(con, ids) if explicit else metric_names(con, ids))
    candidates: list[tuple[str, str | None]] = [(bare, None)]
    if stats:
        stem, stat = _split(bare)
        if stat is not None:
            candidates.append((stem, stat))
    for metric, stat in candidates:
        if explicit:
            ev, _, key = metric.rpartition(":")
            metric = f"{_dotted(ev)}:{key}"
        if metric in known:
            return MetricRef(text, metric, stat)
    raise InvalidArgumentError(argument, unknown_metric_message(text, known, stats=stats))


def unknown_metric_message(text: str, known: Any, *, stats: bool = True) -> str:
    """``unknown metric 'val_los'; did you mean 'val_loss'?`` (or the names there are)."""
    known = sorted(known)
    bare = text.removeprefix("metrics.")
    head, dot, tail = bare.rpartition(".")
    if stats and dot and head in known and tail not in STATS:
        close = difflib.get_close_matches(tail, STATS, n=1, cutoff=0.3)
        hint = f"did you mean {head + '.' + close[0]!r}? " if close else ""
        return f"unknown summary {'.' + tail!r} of {head!r}; {hint}(suffixes: .min, .max, .first, .count; none = last)"
    stem, stat = _split(bare) if stats else (text, None)
    close = difflib.get_close_matches(stem, known, n=3, cutoff=0.6)
    if not close:
        close = [k for k in known if stem.lower() in k.lower()][:3]
    if close:
        shown = [f"{c}.{stat}" if stat else c for c in close]
        hint = "did you mean " + " or ".join(repr(s) for s in shown) + "?"
    elif known:
        hint = "the runs have " + ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    else:
        hint = "the runs have no metrics"
    suffix = " (suffixes: .min, .max, .first, .count; none = last)" if stats and stat is None and close else ""
    return f"unknown metric {text!r}; {hint}{suffix if not close else ''}"


def metric_series(con: Any, ids: Sequence[str], metric: str | MetricRef, x: str = "step") -> pd.DataFrame:
    """The curve of ``metric`` for each run, long form: experiment_id, metric, x, value, step, epoch, ts.

    Each run reads the source its name resolves to (see the module docstring). ``x`` is ``"step"``,
    ``"epoch"`` or ``"time"`` (seconds since the experiment started). Rows are in time order per run.
    """
    import pandas as pd

    if x not in ("step", "epoch", "time"):
        raise InvalidArgumentError("x", f"expected 'step', 'epoch' or 'time', got {x!r}")
    ids = list(ids)
    ref = metric if isinstance(metric, MetricRef) else resolve_metric(con, metric, ids, stats=False)
    rows = metric_summaries(con, ids, [ref.metric])
    frames = []
    by_source: dict[str, list[str]] = {}
    for exp_id, source in zip(rows["experiment_id"], rows["source"]):
        by_source.setdefault(str(source), []).append(str(exp_id))
    for source, run_ids in by_source.items():
        # events_of / metrics_of list only these runs' folders (the plain views list every run's)
        if source == "metric":
            sql = (
                "SELECT run_id AS experiment_id, value, step, epoch, ts, seq FROM metrics_of(?) "
                "WHERE metric = ? AND value IS NOT NULL"
            )
            params = [run_ids, ref.key]
        else:
            sql = (
                "SELECT experiment_id, measurements[?] AS value, global_step AS step, epoch, ts, seq FROM events_of(?) "
                "WHERE event = ? AND measurements[?] IS NOT NULL"
            )
            params = [ref.key, run_ids, source, ref.key]
        frames.append(_frame(con, sql, params))
    if not frames:
        return _empty(SERIES_COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values(["experiment_id", "ts", "seq"], kind="stable").drop(columns="seq").reset_index(drop=True)
    df.insert(1, "metric", ref.metric)
    if x == "time":
        isql, iparams = _ids_sql(ids)
        starts = _frame(con, f"SELECT experiment_id, started_at FROM experiments WHERE {isql}", iparams)
        start = df["experiment_id"].map(dict(zip(starts["experiment_id"], starts["started_at"])))
        start = start.fillna(df.groupby("experiment_id")["ts"].transform("min"))
        df.insert(2, "x", (df["ts"] - start).dt.total_seconds())
    else:
        df.insert(2, "x", df[x].astype("float64"))
    return df[SERIES_COLUMNS]
