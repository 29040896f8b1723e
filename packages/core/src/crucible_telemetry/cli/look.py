"""``crucible runs``, ``crucible show ID``, ``crucible metrics ID``: look at experiments."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..analysis.summary import REQUEST_EVENTS
from ._common import emit_rows, fmt_duration, fmt_num, jsonable, open_hub, out_console, write_text

__all__ = ["headline", "register"]

_STOPS = [s for s, _ in REQUEST_EVENTS]
_ERRS = [e for _, e in REQUEST_EVENTS]

_RUNS_SQL = """
SELECT r.experiment_id, r.name, r.condition, r.status, r.started_at, r.duration_s, r.events, r.exceptions,
       r.tags, h.requests, h.errors, h.p50_ms, h.cost_usd, h.last_loss, h.steps
FROM runs r
LEFT JOIN (
    SELECT experiment_id,
           count(*) FILTER (WHERE event IN ({stops})) AS requests,
           count(*) FILTER (WHERE event IN ({errs})) AS errors,
           quantile_cont(duration, 0.5) FILTER (WHERE event IN ({stops})) / 1e6 AS p50_ms,
           sum(measurements['cost_usd']) FILTER (WHERE event IN ({stops}) OR event IN ({errs})) AS cost_usd,
           arg_max(measurements['loss'], ts) FILTER (
               WHERE event = 'crucible_train.batch.stop' AND measurements['loss'] IS NOT NULL) AS last_loss,
           max(global_step) AS steps
    FROM events WHERE {ids}
    GROUP BY experiment_id
) h ON h.experiment_id = r.experiment_id
WHERE true {where}
ORDER BY r.started_at, r.experiment_id
"""


def headline(row: dict[str, Any]) -> str:
    """One line of headline metrics: requests, p50 latency, success, cost; final loss and steps."""
    parts: list[str] = []
    req, errs = row.get("requests") or 0, row.get("errors") or 0
    if req + errs:
        parts.append(f"{req + errs:,} req")
        if row.get("p50_ms") is not None:
            parts.append(f"p50 {row['p50_ms']:.1f} ms")
        parts.append(f"{req / (req + errs):.1%} ok")
        if row.get("cost_usd"):
            parts.append(f"${row['cost_usd']:.4f}")
    if row.get("last_loss") is not None:
        parts.append(f"loss {row['last_loss']:.4g}")
    if row.get("steps") is not None:
        parts.append(f"{int(row['steps']):,} steps")
    return " · ".join(parts)


def _runs(args: argparse.Namespace) -> int:
    hub = open_hub(args)
    where, params = "", []
    if args.condition:
        where += f" AND r.condition IN ({', '.join('?' * len(args.condition))})"
        params += args.condition
    if args.status:
        where += f" AND r.status IN ({', '.join('?' * len(args.status))})"
        params += args.status
    for tag in args.tag or []:
        where += " AND list_contains(r.tags, ?)"
        params.append(tag)
    marks_s, marks_e = ", ".join("?" * len(_STOPS)), ", ".join("?" * len(_ERRS))
    # Headline aggregates only over the experiments the filters keep.
    ids_sql = f"experiment_id IN (SELECT r.experiment_id FROM runs r WHERE true {where})"
    sql = _RUNS_SQL.format(stops=marks_s, errs=marks_e, ids=ids_sql, where=where)
    sel = [*_STOPS, *_ERRS, *_STOPS, *_STOPS, *_ERRS]
    # Arrow, not fetchall(): DuckDB's Python conversion of TIMESTAMPTZ needs pytz.
    tbl = hub.store.arrow(sql, sel + params + params)
    columns = tbl.column_names
    rows = tbl.to_pylist()
    if args.limit is not None:
        rows = rows[-args.limit :]
    if args.format != "table":
        cols = [*columns, "headline"]
        emit_rows(cols, [[*r.values(), headline(r)] for r in rows], args.format, args.output)
        return 0
    if not rows:
        out_console().print(f"no experiments in {hub.home}" + (" match the filters" if params else ""))
        return 0
    width = out_console().width
    cols = ["id", "name", "condition", "status", "started", "duration", "events", "tags", "metrics"]
    if width < 130:
        cols = [c for c in cols if c not in ("started", "tags")]
    if width < 100:
        cols = [c for c in cols if c not in ("condition", "duration")]
    table_rows = []
    for r in rows:
        cell = {
            "id": r["experiment_id"],
            "name": r["name"],
            "condition": r["condition"] or "",
            "status": r["status"],
            "duration": fmt_duration(r["duration_s"]),
            "events": fmt_num(r["events"]),
            "started": r["started_at"].strftime("%Y-%m-%d %H:%M") if r["started_at"] else "",
            "tags": ", ".join(r["tags"] or []),
            "metrics": headline(r),
        }
        table_rows.append([cell[c] for c in cols])
    keep = [c for c in cols if c not in ("metrics", "tags")]  # only these two fold
    emit_rows(cols, table_rows, "table", args.output, title=f"experiments in {hub.home}", no_wrap=keep)
    return 0


def _show(args: argparse.Namespace) -> int:
    hub = open_hub(args)
    exp = hub.get_experiment(args.id)
    found = hub.store.arrow("SELECT * FROM runs WHERE experiment_id = ?", [exp.id]).to_pylist()
    summary = found[0] if found else {}
    counts = hub.store.execute(
        "SELECT event, count(*) AS n, avg(duration) / 1e6 AS mean_ms FROM events WHERE experiment_id = ? "
        "GROUP BY event ORDER BY n DESC, event",
        [exp.id],
    ).fetchall()
    record = exp.to_json()
    if args.format == "json":
        data = {
            **record,
            "duration_s": summary.get("duration_s"),
            "events": summary.get("events"),
            "exceptions": summary.get("exceptions"),
            "event_counts": {e: int(n) for e, n, _ in counts},
        }
        write_text(json.dumps(jsonable(data), indent=2, default=str) + "\n", args.output)
        return 0
    from rich.table import Table

    con = out_console()
    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold")
    info.add_column(overflow="fold")
    env = record.get("environment") or {}
    git = env.get("git") or {}
    for key, val in (
        ("id", exp.id),
        ("name", exp.name),
        ("hypothesis", exp.hypothesis),
        ("condition", exp.condition),
        ("tags", ", ".join(exp.tags)),
        ("status", record["status"]),
        ("started", record["started_at"]),
        ("stopped", record["stopped_at"]),
        ("duration", fmt_duration(summary.get("duration_s"))),
        ("events", fmt_num(summary.get("events"))),
        ("exceptions", fmt_num(summary.get("exceptions"))),
        ("host", f"{exp.host} (pid {exp.pid})"),
        ("python", env.get("python")),
        ("platform", env.get("platform")),
        ("git", f"{git.get('commit', '')[:12]}{' (dirty)' if git.get('dirty') else ''}" if git else None),
        ("packages", ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())),
        ("metadata", json.dumps(exp.metadata, default=str) if exp.metadata else None),
    ):
        if val not in (None, ""):
            info.add_row(key, str(val))
    con.print(info)
    if counts:
        emit_rows(
            ["event", "count", "mean duration (ms)"], [[e, int(n), m] for e, n, m in counts], "table", title="events"
        )
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from ..analysis.summary import calculate_metrics

    hub = open_hub(args)
    m = calculate_metrics(hub, args.id)
    if args.format == "json":
        write_text(json.dumps(jsonable(m), indent=2, default=str) + "\n", args.output)
        return 0
    rows: list[list[Any]] = []
    for section, values in m.items():
        if not isinstance(values, dict):
            continue
        for key, val in values.items():
            if val is None or val == {} or (key == "count" and val == 0):
                continue
            if isinstance(val, dict):
                val = ", ".join(f"{k}: {fmt_num(v)}" for k, v in val.items())
            rows.append([section, key, fmt_num(val) if not isinstance(val, str) else val])
    rows = [r for r in rows if not _empty_section(m, r[0])]
    emit_rows(
        ["section", "metric", "value"],
        rows,
        args.format if args.format != "json" else "table",
        args.output,
        title=f"metrics of {args.id} (latency in ms, cost in USD)",
    )
    return 0


def _empty_section(m: dict[str, Any], section: str) -> bool:
    v = m.get(section) or {}
    if section in ("latency", "time_to_first_token"):
        return not v.get("count")
    if section == "reliability":
        return not v.get("total")
    if section == "cost":
        return not v.get("priced_requests") and not v.get("unpriced_requests")
    if section == "tokens":
        return v.get("total") is None
    if section == "training":
        return not v.get("batches") and not v.get("epochs")
    return False


def register(add: Any) -> None:
    """Add ``runs``, ``show`` and ``metrics`` to the subcommand parser."""
    p = add(
        "runs",
        _runs,
        help="list experiments with status, duration, counts and headline metrics",
        description="List experiments (oldest first) with status, duration, event counts and headline metrics.",
        epilog="examples:\n  crucible runs\n  crucible runs --condition treatment --status stopped\n"
        "  crucible runs --tag sweep-3 --format json",
    )
    p.add_argument("--tag", action="append", help="only experiments with this tag (repeat: all of them)")
    p.add_argument("--condition", action="append", help="only this condition (repeat for several)")
    p.add_argument("--status", action="append", choices=["running", "paused", "stopped"], help="only this status")
    p.add_argument("--limit", type=int, help="only the newest N")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")

    p = add(
        "show",
        _show,
        help="one experiment: record, environment, events",
        description="Show an experiment: hypothesis, condition, tags, status, environment and event counts.",
        epilog="example:\n  crucible show exp-20250101T120000-1a2b3c4d",
    )
    p.add_argument("id", help="experiment id")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")

    p = add(
        "metrics",
        _metrics,
        help="latency, cost, reliability, tokens and training summaries",
        description="Summaries of one experiment (ct.calculate_metrics): latency, time to first "
        "token, cost, reliability, tokens, training.",
        epilog="examples:\n  crucible metrics exp-20250101T120000-1a2b3c4d\n"
        "  crucible metrics exp-20250101T120000-1a2b3c4d --format json -o metrics.json",
    )
    p.add_argument("id", help="experiment id")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
