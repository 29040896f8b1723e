"""``crucible runs``, ``crucible show ID``, ``crucible metrics ID``: look at experiments."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ._common import (
    emit_rows,
    fmt_duration,
    fmt_num,
    jsonable,
    open_hub,
    out_console,
    print_block,
    resolve_id,
    short_id,
    table_width,
    write_text,
)

__all__ = ["register"]

STATUSES = ["running", "paused", "stopped", "failed", "crashed"]
_BASE = ["id", "name", "status", "condition", "tags", "started_at", "duration_s", "framework", "notes"]
_OPTIONAL = ["tags", "started_at", "condition", "duration_s"]  # left off, in this order, when they do not fit


TABLE_LIMIT = 50  # rows a table shows by default (csv and json give every run)


def _runs(args: argparse.Namespace) -> int:

    hub = open_hub(args)
    with hub.store.snapshot("summaries") as summaries:  # read three times: once from the files
        return _runs_table(hub, args, summaries)


def _runs_table(hub: Any, args: argparse.Namespace, summaries: str) -> int:
    from ..analysis.runs import runs_columns
    from . import _runs as rt

    frame = rt.Table(runs_columns(hub, summaries=summaries))
    filtered = bool(args.condition or args.status or args.tag)
    keep = [
        i
        for i in range(frame.height)
        if (not args.condition or frame["condition"][i] in args.condition)
        and (not args.status or frame["status"][i] in args.status)
        and all(tag in frame["tags"][i] for tag in args.tag or [])
    ]
    if filtered:
        frame = frame.take(keep)
    if not frame.height:
        if args.format == "table":
            out_console().print(
                f"no experiments in {hub.home}" + (" match the filters" if filtered else ""), markup=False
            )
        else:
            emit_rows(_BASE, [], args.format, args.output)
        return 0
    if args.all:  # every param and summary that one of the listed runs has
        pcols = [c for c in frame.columns if c.startswith("params.") and any(map(_present, frame[c]))]
        mcols = [c for c in frame.columns if c.startswith("metrics.") and any(map(_present, frame[c]))]
    else:
        pnames = rt.split_names(args.params)
        mnames = rt.split_names(args.metrics)
        pcols, mcols = rt.resolve_columns(hub, frame, pnames, mnames, "--metrics")
        if not args.params:
            pcols = [f"params.{k}" for k in rt.differing_params(frame)[0]]
        if not args.metrics:
            mcols = [f"metrics.{m}" for m in rt.default_metrics(frame)]
    frame = rt.add_metric_columns(hub, frame, mcols)
    if args.sort:  # sorting has pandas' rules (missing last, numbers before text): through a frame
        import pandas as pd

        df = rt.sort_frame(hub, pd.DataFrame(frame), rt.split_names(args.sort), args.desc)
        frame = rt.Table({c: df[c].tolist() for c in df.columns})
    total = frame.height
    limit = args.limit if args.limit is not None else (TABLE_LIMIT if args.format == "table" else 0)
    if limit:  # the first N as sorted, else the newest N
        frame = frame.take(range(min(limit, total)) if args.sort else range(max(total - limit, 0), total))
    ids = list(frame["id"])
    requests = rt.request_summary(hub, ids, summaries)
    if args.format != "table":
        cols = [*_BASE, *pcols, *mcols]
        columns = [[None if v != v else v for v in frame[c]] for c in cols]  # NaN -> None, a column at a time
        if requests:
            cols += ["requests", "errors", "mean_ms", "cost_usd"]
            got = [requests.get(i) or {} for i in ids]
            columns += [[q.get(k) for q in got] for k in ("requests", "errors", "mean_ms", "cost_usd")]
        emit_rows(cols, [list(r) for r in zip(*columns)], args.format, args.output)
        return 0
    cols = ["id", "name", "status", "condition", "tags", "started_at", "duration_s", *pcols, *mcols]
    if not any(map(_present, frame["condition"])):
        cols.remove("condition")
    if not any(map(bool, frame["tags"])):
        cols.remove("tags")
    records = [dict(zip(frame.columns, r)) for r in zip(*frame.values())]
    table = [[short_id(r["id"]) if c == "id" else rt.cell(c, r[c]) for c in cols] for r in records]
    headers = [rt.header(c) for c in cols]
    if requests:
        headers.append("requests")
        for row, i in zip(table, ids):
            row.append(rt.request_cell(requests.get(i)))
    width = None if args.output else table_width()
    if width is not None:
        for opt in _OPTIONAL:
            natural = [max(len(h), *(len(r[k]) for r in table)) for k, h in enumerate(headers)]
            if sum(natural) + 3 * (len(headers) - 1) <= width or opt not in cols:
                continue
            k = cols.index(opt)
            del cols[k], headers[k]
            for r in table:
                del r[k]
    emit_rows(headers, table, "table", args.output, title=f"experiments in {hub.home}", no_wrap=["id"])
    if total > len(table):
        out_console().print(f"{len(table)} of {total:,} runs shown (--limit N, or --limit 0 for all)", markup=False)
    return 0


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and v != v)  # NaN is the only value unequal to itself


def _summary_rows(hub: Any, exp_id: str) -> list[list[Any]]:
    """The run's metrics (the bare name space), then other events' measurements as ``<event>:<key>``."""
    from ..analysis.names import AXES, STANDARD_SOURCES, metric_summaries

    std, axes = ", ".join("?" * len(STANDARD_SOURCES)), ", ".join("?" * len(AXES))
    sql = (
        "SELECT DISTINCT source || ':' || name AS m FROM summaries WHERE experiment_id = ? AND source <> 'metric' "
        f"AND source NOT IN ({std}) AND name NOT IN ({axes}) AND NOT ends_with(source, '.start') ORDER BY m"
    )
    other = hub.store.arrow(sql, [exp_id, *STANDARD_SOURCES, *AXES]).column("m").to_pylist()
    bare = metric_summaries(hub, [exp_id])
    df = pd_concat(bare, metric_summaries(hub, [exp_id], other)) if other else bare
    rows = []
    for r in df.to_dict("records"):
        source = "logged" if r["source"] == "metric" else str(r["source"]).removeprefix("crucible_train.")
        rows.append([r["metric"], source, int(r["count"]), r["last"], r["min"], _step(r["min_step"]), r["max"]])
    return rows


def pd_concat(a: Any, b: Any) -> Any:
    import pandas as pd

    return pd.concat([a, b[~b["metric"].isin(a["metric"])]], ignore_index=True)


def _step(v: Any) -> Any:
    return int(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else None


_SUMMARY_COLUMNS = ["metric", "source", "count", "last", "min", "min at step", "max"]


def _params_text(params: dict[str, Any], limit: int = 400) -> str:
    text = ", ".join(
        f"{k}={json.dumps(v, default=str) if isinstance(v, (dict, list, str)) else v}" for k, v in params.items()
    )
    return text if len(text) <= limit else text[: limit - 1] + "\u2026 (--format json for all)"


def _show(args: argparse.Namespace) -> int:
    hub = open_hub(args)
    exp = hub.get_experiment(resolve_id(hub, args.id))
    found = hub.store.arrow(
        "SELECT epoch(coalesce(e.stopped_at, s.last_ts, e.started_at)) - epoch(e.started_at) AS duration_s "
        "FROM experiments e LEFT JOIN (SELECT experiment_id, max(last_ts) AS last_ts FROM summaries "
        "WHERE experiment_id = ? GROUP BY experiment_id) s ON s.experiment_id = e.experiment_id "
        "WHERE e.experiment_id = ?",
        [exp.id, exp.id],
    ).to_pylist()
    summary = found[0] if found else {}
    counts = hub.store.execute(
        "SELECT event, count(*) AS n, avg(duration) / 1e6 AS mean_ms FROM events WHERE experiment_id = ? "
        "GROUP BY event ORDER BY n DESC, event",
        [exp.id],
    ).fetchall()
    metrics = _summary_rows(hub, exp.id)
    record = exp.to_json()
    if args.format == "json":
        data = {
            **record,
            "duration_s": summary.get("duration_s"),
            "events": sum(int(n) for _, n, _ in counts),
            "event_counts": {e: int(n) for e, n, _ in counts},
            "summaries": [dict(zip(_SUMMARY_COLUMNS, r)) for r in metrics],
        }
        write_text(json.dumps(jsonable(data), indent=2, default=str) + "\n", args.output)
        return 0
    if args.format == "csv":
        emit_rows(_SUMMARY_COLUMNS, metrics, "csv", args.output)
        return 0
    from rich.table import Table
    from rich.text import Text

    info = Table.grid(padding=(0, 2))
    info.add_column(style="bold", no_wrap=True)
    info.add_column(overflow="fold")
    env = record.get("environment") or {}
    git = env.get("git") or {}
    params = getattr(exp, "params", None) or {}
    for key, val in (
        ("id", exp.id),
        ("name", exp.name),
        ("hypothesis", exp.hypothesis),
        ("condition", exp.condition),
        ("tags", ", ".join(exp.tags)),
        ("status", record.get("status")),
        ("framework", record.get("framework")),
        ("notes", record.get("notes")),
        ("params", _params_text(params) if params else None),
        ("started", record.get("started_at")),
        ("stopped", record.get("stopped_at")),
        ("duration", fmt_duration(summary.get("duration_s"))),
        ("events", fmt_num(sum(int(n) for _, n, _ in counts))),
        ("host", f"{exp.host} (pid {exp.pid})"),
        ("python", env.get("python")),
        ("platform", env.get("platform")),
        ("git", f"{git.get('commit', '')[:12]}{' (dirty)' if git.get('dirty') else ''}" if git else None),
        ("packages", ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())),
        ("metadata", _params_text(exp.metadata) if exp.metadata else None),
    ):
        if val not in (None, ""):
            info.add_row(Text(key), Text(str(val)))
    print_block(info)
    if metrics:
        emit_rows(_SUMMARY_COLUMNS, metrics, "table", title="metrics (the names ct.runs() and crucible runs use)")
    if counts:
        emit_rows(
            ["event", "count", "mean duration (ms)"], [[e, int(n), m] for e, n, m in counts], "table", title="events"
        )
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from ..analysis.summary import calculate_metrics

    hub = open_hub(args)
    exp_id = resolve_id(hub, args.id)
    m = calculate_metrics(hub, exp_id)
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
            rows.append([section, key, val if args.format == "csv" or isinstance(val, str) else fmt_num(val)])
    rows = [r for r in rows if not _empty_section(m, r[0])]
    emit_rows(
        ["section", "metric", "value"],
        rows,
        args.format,
        args.output,
        title=f"metrics of {exp_id} (latency in ms, cost in USD)",
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
        help="list runs with the params that differ and their validation metrics",
        description="List runs (oldest first): short id, name, status, started, duration, the params whose "
        "values differ between the listed runs and the validation metrics (last and best), or the columns "
        "named by --params and --metrics. A run is named by its id, a unique prefix of it or of the short "
        "id shown here, or its unique name.",
        epilog="examples:\n  crucible runs\n  crucible runs --params lr --metrics val_loss.min --sort val_loss.min\n"
        "  crucible runs --sort=-val_acc.max --limit 5\n  crucible runs --condition treatment --status stopped\n"
        "  crucible runs --tag sweep-3 --all --format csv -o runs.csv\n\n"
        "metric names: what you logged keeps its name (val_loss, train_loss_step, eval_loss); standard\n"
        "training events fill in the rest (loss, val_loss, gradient_norm); <event>:<key> names one event's\n"
        "measurement. Suffixes: .min, .max, .first, .count; none is the last value.",
    )
    p.add_argument("--params", action="append", metavar="KEYS", help="params to show (comma-separated or repeated)")
    p.add_argument(
        "--metrics",
        action="append",
        metavar="NAMES",
        help="metrics to show: val_loss, val_loss.min ... (comma-separated)",
    )
    p.add_argument(
        "--sort", action="append", metavar="NAME", help="sort by a metric, param or column (--sort=-NAME: descending)"
    )
    p.add_argument("--desc", action="store_true", help="sort descending")
    p.add_argument("--all", action="store_true", help="every param and metric (last, min, max) as columns")
    p.add_argument("--tag", action="append", help="only runs with this tag (repeat: all of them)")
    p.add_argument("--condition", action="append", help="only this condition (repeat for several)")
    p.add_argument("--status", action="append", choices=STATUSES, help="only this status (repeat for several)")
    p.add_argument(
        "--limit", type=int, help=f"only the first N as sorted, else the newest N (table default {TABLE_LIMIT}; 0: all)"
    )
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")

    p = add(
        "show",
        _show,
        help="one run: record, params, metric summaries, environment, events",
        description="Show a run: hypothesis, condition, tags, status, framework, notes, params, the summary of "
        "every metric (last, min, max), environment and event counts. --format csv prints the metric summaries.",
        epilog="examples:\n  crucible show exp-20250101T120000-1a2b3c4d\n  crucible show 1a2b --format json",
    )
    p.add_argument("id", help="run id, unique id prefix or unique name")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")

    p = add(
        "metrics",
        _metrics,
        help="latency, cost, reliability, tokens and training summaries",
        description="Summaries of one run (ct.calculate_metrics): latency, time to first "
        "token, cost, reliability, tokens, training.",
        epilog="examples:\n  crucible metrics exp-20250101T120000-1a2b3c4d\n"
        "  crucible metrics 1a2b --format json -o metrics.json",
    )
    p.add_argument("id", help="run id, unique id prefix or unique name")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
