"""The dashboard's JSON API: one function per route, each taking the hub and the query string.

Every answer is strict JSON (``json.dumps(allow_nan=False)``): a non-finite number in a table is the
string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``; a curve's non-finite points are left out of its
arrays and listed in ``nonfinite`` as ``[x, "NaN"]`` pairs.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError
from .downsample import downsample, ema, group_band, split_nonfinite

__all__ = ["ROUTES", "dumps", "jsonable"]

Query = dict[str, list[str]]


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as strings, datetimes as ISO text, numpy scalars as Python."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:  # most cells: first, and cheap
        return value
    if kind is float:
        return (
            value
            if math.isfinite(value)
            else ("NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity"))
        )
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, str | int | bool):
        return value
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def dumps(value: Any) -> bytes:
    """Strict JSON bytes of ``value`` (never a bare NaN)."""
    return json.dumps(jsonable(value), allow_nan=False, separators=(",", ":")).encode()


def _one(q: Query, key: str, default: str | None = None) -> str | None:
    vals = q.get(key)
    return vals[-1] if vals else default


def _int(q: Query, key: str, default: int, lo: int, hi: int) -> int:
    raw = _one(q, key)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise InvalidArgumentError(key, f"expected an integer, got {raw!r}") from None
    return min(max(v, lo), hi)


def _runs_list(q: Query) -> list[str]:
    return [r for v in q.get("run", []) for r in v.split(",") if r]


def runs(hub: Any, q: Query) -> dict[str, Any]:
    """``GET /api/runs``: every run (base columns, params, metric summaries) and which params differ."""
    from ..analysis.runs import BASE_COLUMNS, runs_columns

    col = runs_columns(hub)  # columns of Python values: no DataFrame for 10,000 runs
    pcols = [c for c in col if c.startswith("params.")]
    differ = [c[7:] for c in pcols if len({str(v) for v in col[c]}) > 1]
    mcols = [c for c in col if c.startswith("metrics.")]
    base = [c for c in BASE_COLUMNS if c in col]
    rows = []
    for i in range(len(col["id"])):
        row = {c: None for c in BASE_COLUMNS}
        row.update({c: v for c in base if not _missing(v := col[c][i])})
        row["params"] = {c[7:]: v for c in pcols if not _missing(v := col[c][i])}
        row["metrics"] = {c[8:]: v for c in mcols if not _missing(v := col[c][i])}
        rows.append(row)
    metrics = sorted({c[8:] for c in mcols if not c.endswith((".min", ".max"))})
    return {"runs": rows, "params": [c[7:] for c in pcols], "differ": differ, "metrics": metrics}


def _missing(v: Any) -> bool:
    return v is None or (type(v) is float and math.isnan(v))


def run(hub: Any, q: Query, run_id: str) -> dict[str, Any]:
    """``GET /api/runs/<id>``: the run's record, params, environment, metric summaries, checkpoints, events."""
    from ..analysis.names import metric_summaries

    exp = hub.get_experiment(run_id)
    if exp is None:
        raise InvalidArgumentError("run", f"no run {run_id!r}")
    record = exp.to_json()
    summ = metric_summaries(hub, [run_id]).drop(columns="experiment_id").to_dict("records")
    counts = hub.store.execute(
        "SELECT event, count(*) FROM events_of(?) GROUP BY event ORDER BY event", [[run_id]]
    ).fetchall()
    recent = hub.store.arrow(
        "SELECT ts, event, epoch, global_step, measurements, metadata FROM events_of(?) ORDER BY ts DESC, seq DESC "
        "LIMIT ?",
        [[run_id], _int(q, "events", 200, 1, 5000)],
    ).to_pylist()
    ckpts = hub.store.arrow(
        "SELECT ts, epoch, global_step, measurements, metadata FROM events_of(?) "
        "WHERE event = 'crucible_train.checkpoint.saved' ORDER BY ts",
        [[run_id]],
    ).to_pylist()
    for r in recent + ckpts:
        r["measurements"] = dict(r["measurements"] or [])
    status = hub.store.execute("SELECT status FROM experiments WHERE experiment_id = ?", [run_id]).fetchone()
    record["status"] = status[0] if status else record.get("status")
    return {"run": record, "summaries": summ, "event_counts": dict(counts), "events": recent, "checkpoints": ckpts}


def _xs(df: Any, x: str) -> np.ndarray:
    """The x of each row: seconds since the epoch for wall time, else the ``x`` column."""
    if x == "time":
        return np.asarray(df["ts"].astype("int64") / 1e6, dtype="float64") if len(df) else np.empty(0)
    return np.asarray(df["x"], dtype="float64")


def series(hub: Any, q: Query) -> dict[str, Any]:
    """``GET /api/series``: one metric's curve per run (smoothed, then downsampled), with seed bands."""
    from ..analysis.names import metric_series, metric_summaries, resolve_metric

    ids = _runs_list(q)
    if not ids:
        raise InvalidArgumentError("run", "give at least one run=<id>")
    name = _one(q, "name") or ""
    x = _one(q, "x", "step") or "step"
    if x not in ("step", "epoch", "time", "relative"):
        raise InvalidArgumentError("x", f"expected step, epoch, time or relative, got {x!r}")
    max_points = _int(q, "max_points", 2000, 4, 100_000)
    smooth = _one(q, "smooth", "none") or "none"
    if smooth not in ("none", "ema"):
        raise InvalidArgumentError("smooth", f"expected 'none' or 'ema' (time-aware EMA), got {smooth!r}")
    try:
        weight = float(_one(q, "weight", "0.6") or 0.6)
    except ValueError:
        raise InvalidArgumentError("weight", "expected a number in [0, 1)") from None
    ref = resolve_metric(hub, name, ids, argument="name", stats=False)
    df = metric_series(hub, ids, ref, "step" if x == "time" else ("time" if x == "relative" else x))
    sources = metric_summaries(hub, ids, [ref.metric])
    source_of = dict(zip(sources["experiment_id"], sources["source"]))
    out = []
    for run_id in ids:
        part = df[df["experiment_id"] == run_id]
        xs, ys = _xs(part, x), part["value"].to_numpy(dtype="float64")
        keep = np.isfinite(xs)
        xs, ys = xs[keep], ys[keep]
        if not np.all(xs[1:] >= xs[:-1]):
            order = np.argsort(xs, kind="stable")
            xs, ys = xs[order], ys[order]
        fx, fy, marks = split_nonfinite(xs, ys)
        raw_min = float(fy.min()) if len(fy) else None
        raw_max = float(fy.max()) if len(fy) else None
        if smooth == "ema":
            fy = ema(fx, fy, weight)
        dx, dy, width = downsample(fx, fy, max_points)
        out.append(
            {
                "run": run_id,
                "source": source_of.get(run_id),
                "count": len(part),
                "x": dx.tolist(),
                "y": dy.tolist(),
                "bucket_width": width,
                "min": raw_min,
                "max": raw_max,
                "nonfinite": marks,
                "last_ts": int(part["ts"].astype("int64").max() // 1000) if len(part) else None,
            }
        )
    answer: dict[str, Any] = {"name": ref.metric, "x": x, "smooth": smooth, "series": out}
    if smooth == "ema":
        answer["method"] = f"time-aware debiased EMA, weight {weight} per median x gap"
    group = _one(q, "group")
    if group:
        answer["groups"] = _groups(hub, ids, group, out, max_points)
    return answer


def _groups(hub: Any, ids: list[str], group: str, out: list[dict[str, Any]], max_points: int) -> list[dict[str, Any]]:
    from ..analysis.runs import runs_frame

    frame = runs_frame(hub, ("last",))
    col = group if group in frame.columns else f"params.{group}"
    if col not in frame.columns:
        raise InvalidArgumentError("group", f"no column {group!r} (condition or a param)")
    label_of = dict(zip(frame["id"], frame[col].astype(str)))
    by: dict[str, list[dict[str, Any]]] = {}
    for s in out:
        by.setdefault(label_of.get(s["run"], "None"), []).append(s)
    return [
        {"label": label, "runs": [s["run"] for s in ss], **group_band([(s["x"], s["y"]) for s in ss], max_points)}
        for label, ss in by.items()
    ]


def metrics(hub: Any, q: Query) -> dict[str, Any]:
    """``GET /api/metrics``: counters, gauges and histograms of the store with rollups and a per-minute series."""
    window = _int(q, "hours", 24, 1, 24 * 30)
    where = "kind IN ('counter', 'gauge', 'histogram') AND ts > now() - to_hours(?)"
    roll = hub.store.arrow(
        f"""SELECT metric, kind, CAST(tags AS VARCHAR) AS tags, count(*) AS count, sum(value) AS sum,
               avg(value) AS mean, min(value) AS min, max(value) AS max, last(value ORDER BY ts, seq) AS last,
               quantile_cont(value, 0.5) AS p50, quantile_cont(value, 0.95) AS p95,
               quantile_cont(value, 0.99) AS p99, max(ts) AS last_ts
        FROM metrics WHERE {where} GROUP BY metric, kind, tags ORDER BY metric, tags""",
        [window],
    ).to_pylist()
    ts = hub.store.arrow(
        f"""SELECT metric, kind, epoch(time_bucket(INTERVAL 1 minute, ts)) AS t,
               CASE WHEN kind = 'counter' THEN sum(value) WHEN kind = 'gauge' THEN last(value ORDER BY ts, seq)
                    ELSE quantile_cont(value, 0.95) END AS v
        FROM metrics WHERE {where} GROUP BY metric, kind, t ORDER BY metric, t""",
        [window],
    ).to_pylist()
    per: dict[str, dict[str, list[Any]]] = {}
    for r in ts:
        s = per.setdefault(r["metric"], {"kind": r["kind"], "t": [], "v": []})
        s["t"].append(r["t"])
        s["v"].append(r["v"])
    return {"rollups": roll, "series": per, "series_aggregation": "counter: sum, gauge: last, histogram: p95"}


_LLM_SQL = """
SELECT event, epoch_us(ts) / 1e6 AS t, duration / 1e6 AS latency_ms, ttft_ns / 1e6 AS ttft_ms,
       prompt_tokens, completion_tokens, total_tokens, cost_usd,
       coalesce(json_extract_string(metadata, '$.model'), '?') AS model,
       coalesce(json_extract_string(metadata, '$.provider'), '?') AS provider,
       json_extract_string(metadata, '$.kind') AS kind
FROM events_of(?) WHERE event IN ('req_llm.request.stop', 'req_llm.request.exception') ORDER BY ts
"""


def llm(hub: Any, q: Query) -> dict[str, Any]:
    """``GET /api/llm``: latency and TTFT histograms and percentiles, tokens and cost over time, errors by kind."""
    ids = _runs_list(q) or [e.id for e in hub.list_experiments()]
    rows = hub.store.arrow(_LLM_SQL, [ids]).to_pylist() if ids else []
    groups: dict[str, dict[str, Any]] = {}
    errors: dict[str, int] = {}
    for r in rows:
        g = groups.setdefault(
            f"{r['provider']} / {r['model']}",
            {"requests": 0, "errors": 0, "latency": [], "ttft": [], "t": [], "tokens": [], "cost": []},
        )
        g["requests"] += 1
        if r["event"].endswith("exception"):
            g["errors"] += 1
            errors[r["kind"] or "unknown"] = errors.get(r["kind"] or "unknown", 0) + 1
            continue
        for key, col in (("latency", "latency_ms"), ("ttft", "ttft_ms")):
            if r[col] is not None:
                g[key].append(r[col])
        g["t"].append(r["t"])
        g["tokens"].append(r["total_tokens"] or 0)
        g["cost"].append(r["cost_usd"] or 0)
    out = {}
    for label, g in groups.items():
        out[label] = {
            "requests": g["requests"],
            "errors": g["errors"],
            "latency": _dist(g["latency"]),
            "ttft": _dist(g["ttft"]),
            "t": g["t"],
            "cumulative_tokens": np.cumsum(g["tokens"]).tolist(),
            "cumulative_cost_usd": np.cumsum(g["cost"]).tolist(),
        }
    return {"groups": out, "errors_by_kind": errors, "runs": ids}


def _dist(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype="float64")
    edges = np.histogram_bin_edges(a, bins=min(40, max(5, int(np.sqrt(len(a))))))
    counts, _ = np.histogram(a, bins=edges)
    p50, p95, p99 = np.percentile(a, [50, 95, 99]).tolist()
    return {
        "n": len(a),
        "mean": float(a.mean()),
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "min": float(a.min()),
        "max": float(a.max()),
        "edges": edges.tolist(),
        "counts": counts.tolist(),
    }


def compare(hub: Any, q: Query) -> dict[str, Any]:
    """``GET /api/compare``: the verdict of ``crucible compare`` (a training metric compares one summary per run)."""
    from ..analysis import compare_experiments

    ids = _runs_list(q)
    if len(ids) < 2:
        raise InvalidArgumentError("run", "compare needs two or more run=<id>")
    metric = _one(q, "metric") or "latency"
    by = _one(q, "by", "experiment") or "experiment"
    return compare_experiments(ids, metric, by=by, hub=hub).to_dict()


def sql(hub: Any, text: str, limit: int = 10_000) -> dict[str, Any]:
    """``POST /api/sql``: a read-only query on ``ct.connect(read_only=True)`` (no file outside the store)."""
    con = hub.connect(read_only=True)
    try:
        cur = con.execute(text)
        cols = [d[0] for d in cur.description or []]
        rows = cur.fetchmany(limit) if cols else []
    finally:
        con.close()
    return {"columns": cols, "rows": [list(r) for r in rows], "truncated": len(rows) == limit}


ROUTES = {"runs": runs, "series": series, "metrics": metrics, "llm": llm, "compare": compare}
