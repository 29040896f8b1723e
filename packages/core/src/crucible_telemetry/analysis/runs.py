"""``ct.runs()`` and ``ct.history()``: every run as one row of a pandas DataFrame, and curves in long form.

Read from the ``experiments``, ``summaries`` and ``params`` views (never the events), so a table of
hundreds of runs comes back at once. Metric names follow :mod:`crucible_telemetry.analysis.names`.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import InvalidArgumentError
from .names import STATS, metric_series, resolve_metric

if TYPE_CHECKING:
    import pandas as pd

    from ..hub import Telemetry

__all__ = ["BASE_COLUMNS", "history", "match_runs", "runs", "runs_columns", "runs_frame", "short_id", "sort_rows"]

#: The columns every ``ct.runs()`` frame starts with, before ``params.*`` and ``metrics.*``.
BASE_COLUMNS = [
    "id",
    "name",
    "status",
    "condition",
    "tags",
    "started_at",
    "duration_s",
    "framework",
    "notes",
]

_EXPERIMENTS_SQL = """
SELECT e.experiment_id AS id, e.name, e.status, e.condition, e.tags, e.started_at,
       epoch(coalesce(e.stopped_at, s.last_ts, e.started_at)) - epoch(e.started_at) AS duration_s,
       e.framework, e.notes, CAST(e.params AS VARCHAR) AS params
FROM experiments e
LEFT JOIN (SELECT experiment_id, max(last_ts) AS last_ts FROM {summaries} GROUP BY experiment_id) s
       ON s.experiment_id = e.experiment_id
ORDER BY e.started_at, e.experiment_id
"""


def _hub(hub: Telemetry | None) -> Telemetry:
    if hub is None:
        from .._hubs import default

        return default()
    from ..hub import Telemetry

    if not isinstance(hub, Telemetry):
        raise InvalidArgumentError("hub", f"expected a crucible_telemetry.Telemetry, got {type(hub).__name__}")
    return hub


def _params(text: Any) -> Any:
    """A run's params from their JSON text (orjson; ``json`` for what it refuses)."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _param_value(v: Any) -> Any:
    return json.dumps(v, default=str) if isinstance(v, (dict, list)) else v


def runs_columns(
    hub: Telemetry, stats: Iterable[str] = ("last", "min", "max"), summaries: str | None = None
) -> dict[str, list[Any]]:
    """:func:`runs_frame` as columns of Python values (name -> list, in the frame's order), built
    without pandas: what ``crucible runs`` and the dashboard print. ``summaries``: a snapshot of the
    view (``hub.store.snapshot``) the caller reads again; else one is made for this table."""
    if summaries is None:
        with hub.store.snapshot("summaries") as name:
            return runs_columns(hub, stats, name)
    from ..storage.store import py_values
    from .names import metric_summaries_table

    table = hub.store.arrow(_EXPERIMENTS_SQL.replace("{summaries}", summaries))
    params = [_params(p) for p in table.column("params").to_pylist()]
    cols: dict[str, list[Any]] = {c: py_values(table.column(c)) for c in BASE_COLUMNS}
    cols["tags"] = [t if t is not None else [] for t in cols["tags"]]
    for k in sorted({k for p in params if isinstance(p, dict) for k in p}):
        cols[f"params.{k}"] = [_param_value(p.get(k)) if isinstance(p, dict) else None for p in params]
    summ = metric_summaries_table(hub, source=summaries)
    if summ.num_rows:
        wanted = list(dict.fromkeys(stats))
        row = {i: n for n, i in enumerate(cols["id"])}
        runs, metrics = summ.column("experiment_id").to_pylist(), summ.column("metric").to_pylist()
        values = {stat: summ.column(stat).to_pylist() for stat in wanted}
        nan = float("nan")
        targets: dict[str, list[tuple[list[Any], list[Any]]]] = {}  # metric -> (its column, the stat's values)
        for metric in sorted(set(metrics)):
            for stat in wanted:
                column = cols[f"metrics.{metric}" if stat == "last" else f"metrics.{metric}.{stat}"] = [nan] * len(row)
                targets.setdefault(metric, []).append((column, values[stat]))
        for k, (run, metric) in enumerate(zip(runs, metrics)):
            n = row.get(run)
            if n is not None:
                for column, vals in targets[metric]:
                    v = vals[k]
                    column[n] = nan if v is None else v
    return cols


def runs_frame(hub: Telemetry, stats: Iterable[str] = ("last", "min", "max")) -> pd.DataFrame:
    """All runs, oldest first: the base columns, ``params.<key>`` and ``metrics.<name>[.<stat>]``."""
    import pandas as pd

    cols = runs_columns(hub, stats)
    frame = pd.DataFrame({c: v for c, v in cols.items() if not c.startswith("metrics.")})
    metrics = {c: pd.array(v, dtype="float64") for c, v in cols.items() if c.startswith("metrics.")}
    if metrics:
        frame = pd.concat([frame, pd.DataFrame(metrics, index=frame.index)], axis=1)
    return frame


def _column(frame: pd.DataFrame, name: str, argument: str) -> str:
    """A frame column from a full name or a short one (``lr`` -> ``params.lr``, ``val_loss.min``)."""
    if name in frame.columns:
        return name
    for prefix in ("params.", "metrics."):
        if prefix + name in frame.columns:
            return prefix + name
    close = difflib.get_close_matches(name, list(frame.columns), n=3, cutoff=0.6)
    close += [c for c in difflib.get_close_matches(name, [c.split(".", 1)[-1] for c in frame.columns], n=3) if c]
    shown = list(dict.fromkeys(c if c in frame.columns else _full(frame, c) for c in close))[:3]
    hint = f"; did you mean {' or '.join(repr(c) for c in shown)}?" if shown else ""
    raise InvalidArgumentError(argument, f"no column {name!r} in the runs table{hint}")


def _full(frame: pd.DataFrame, short: str) -> str:
    for prefix in ("params.", "metrics."):
        if prefix + short in frame.columns:
            return prefix + short
    return short


def _extra_stats(names: Iterable[str]) -> set[str]:
    out = set()
    for n in names:
        stem, _, stat = str(n).lstrip("-").rpartition(".")
        if stem and stat in STATS:
            out.add(stat)
    return out


def _matches(value: Any, want: Any) -> bool:
    if callable(want):
        return bool(want(value))
    if isinstance(value, list):  # tags: the run has every wanted tag
        wanted = [want] if isinstance(want, str) else list(want)
        return all(w in value for w in wanted)
    if isinstance(want, (list, tuple, set, frozenset)):
        return any(_matches(value, w) for w in want)
    if isinstance(value, float) and math.isnan(value):
        return want is None or (isinstance(want, float) and math.isnan(want))
    return bool(value == want)


def _apply_filter(frame: pd.DataFrame, flt: Any) -> pd.DataFrame:
    if flt is None:
        return frame
    if isinstance(flt, str):
        try:
            return frame.query(flt)
        except Exception as exc:
            raise InvalidArgumentError("filter", f"{flt!r}: {type(exc).__name__}: {exc}") from None
    if callable(flt):
        return frame[[bool(flt(row)) for _, row in frame.iterrows()]]
    if not isinstance(flt, dict):
        raise InvalidArgumentError(
            "filter", f"expected a dict of column -> value, a callable or a query string, got {type(flt).__name__}"
        )
    keep = [True] * len(frame)
    for key, want in flt.items():
        col = _column(frame, str(key), "filter")
        keep = [k and _matches(v, want) for k, v in zip(keep, frame[col])]
    return frame[keep]


def _order(frame: pd.DataFrame, order_by: Any) -> pd.DataFrame:
    if order_by is None:
        return frame
    keys = [order_by] if isinstance(order_by, str) else list(order_by)
    if not keys or not all(isinstance(k, str) and k.strip("-") for k in keys):
        raise InvalidArgumentError("order_by", f"expected a column name or a list of them, got {order_by!r}")
    cols = [_column(frame, k.strip().lstrip("-"), "order_by") for k in keys]
    asc = [not k.strip().startswith("-") for k in keys]
    return sort_rows(frame, cols, asc)


def sort_rows(frame: pd.DataFrame, cols: list[str], ascending: list[bool]) -> pd.DataFrame:
    """Sort with missing values last; a column mixing numbers and text sorts numbers first, then text."""
    try:
        return frame.sort_values(cols, ascending=ascending, na_position="last", kind="stable")
    except TypeError:

        def key(col: pd.Series) -> pd.Series:  # a rank: the numbers in order, then the texts in order
            present = [v for v in col if v is not None and v == v]
            nums = sorted({v for v in present if not isinstance(v, str)})
            texts = sorted({v for v in present if isinstance(v, str)})
            rank = {("n", v): i for i, v in enumerate(nums)} | {("t", v): len(nums) + i for i, v in enumerate(texts)}
            return col.map(lambda v: rank.get(("t" if isinstance(v, str) else "n", v), float("nan")))

        return frame.sort_values(cols, ascending=ascending, na_position="last", kind="stable", key=key)


def runs(
    filter: Any = None,
    order_by: str | Sequence[str] | None = None,
    *,
    hub: Telemetry | None = None,
) -> pd.DataFrame:
    """Every run as one row: id, name, status, condition, tags, started_at, duration_s, framework,
    notes, ``params.<key>`` and ``metrics.<name>`` (last), ``metrics.<name>.min``, ``.max``.

    Args:
        filter: ``{"params.lr": 0.01, "status": "stopped", "tags": "sweep"}`` (a list value matches
            any of its items, a callable value is a predicate; for ``tags`` the tag, or every tag of a
            list, must be among the run's tags; ``lr`` is short for ``params.lr``), a
            ``DataFrame.query`` string, or a callable on a row.
        order_by: a column or a list of them, ``-`` first for descending (``"metrics.val_loss.min"``,
            ``["-params.lr", "val_loss"]``); ``.first`` and ``.count`` columns are added when named.
        hub: the ``ct.Telemetry`` to read; default the default hub.

    Example:
        >>> best = ct.runs(order_by="metrics.val_loss.min").iloc[0]  # doctest: +SKIP
    """
    h = _hub(hub)
    named = [*([order_by] if isinstance(order_by, str) else list(order_by or ()))]
    if isinstance(filter, dict):
        named += [str(k) for k in filter]
    stats = ["last", "min", "max", *sorted(_extra_stats(named) - {"last", "min", "max"})]
    frame = runs_frame(h, stats)
    frame = _order(_apply_filter(frame, filter), order_by)
    return frame.reset_index(drop=True)


def short_id(experiment_id: str) -> str:
    """The short form of an id: the random tail of ``exp-<time>-<hex>``, else the id itself."""
    head, _, tail = experiment_id.rpartition("-")
    return tail if head.startswith("exp-") and len(tail) >= 6 else experiment_id


def match_runs(hub: Telemetry, tokens: Iterable[Any]) -> tuple[list[str], str | None]:
    """Ids of the runs ``tokens`` name (an id, a unique prefix of an id or of its short id, a unique
    name, an ``Experiment``); ``(ids, None)``, or ``([], message)`` for the first token that fails."""
    exps = hub.list_experiments()
    runs_ = [(e.id, e.name) for e in exps]
    ids = {i for i, _ in runs_}
    out: list[str] = []
    for raw in tokens:
        token = str(getattr(raw, "id", raw)).strip()
        if not token:
            return [], "an empty run name or id"
        if token in ids:
            out.append(token)
            continue
        found = [i for i, _ in runs_ if i.startswith(token) or short_id(i).startswith(token)]
        if not found:
            found = [i for i, n in runs_ if n == token]
        if len(found) == 1:
            out.append(found[0])
            continue
        if found:
            names = dict(runs_)
            listed = ", ".join(f"{short_id(i)} ({names[i]})" for i in found[:6])
            more = f" and {len(found) - 6} more" if len(found) > 6 else ""
            return [], f"{token!r} matches {len(found)} runs: {listed}{more}; give more of an id"
        words = sorted({n for _, n in runs_} | {short_id(i) for i in ids} | ids)
        close = difflib.get_close_matches(token, words, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return [], f"no run with id or name {token!r}{hint}"
    return out, None


def history(
    ids: Any,
    metrics: str | Sequence[str],
    x: str = "step",
    *,
    hub: Telemetry | None = None,
) -> pd.DataFrame:
    """The curves of ``metrics`` for the runs ``ids``, long form: experiment_id, metric, x, value,
    step, epoch, ts (``x`` is ``"step"``, ``"epoch"`` or ``"time"``: seconds since the run started).

    ``ids`` is an id, a name, an ``Experiment``, a list of them, or a ``ct.runs()`` frame.
    """
    import pandas as pd

    h = _hub(hub)
    if hasattr(ids, "columns") and "id" in getattr(ids, "columns", ()):
        ids = list(ids["id"])
    tokens = [ids] if isinstance(ids, str) or hasattr(ids, "id") else list(ids)
    found, message = match_runs(h, tokens)
    if message:
        raise InvalidArgumentError("ids", message)
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise InvalidArgumentError("metrics", "need at least one metric name")
    if x not in ("step", "epoch", "time"):
        raise InvalidArgumentError("x", f"expected 'step', 'epoch' or 'time', got {x!r}")
    frames = [metric_series(h, found, resolve_metric(h, n, found, argument="metrics", stats=False), x) for n in names]
    return pd.concat(frames, ignore_index=True) if frames else frames
