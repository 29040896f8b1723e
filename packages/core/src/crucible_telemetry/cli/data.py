"""``crucible sql``, ``export``, ``prune``, ``serve``: the store as data."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ._common import CommandError, emit_rows, err_console, open_hub, out_console, resolve_id

__all__ = ["register"]


def _sql(args: argparse.Namespace) -> int:
    query = args.query
    if query == "-":
        query = sys.stdin.read()
    if not query.strip():
        raise CommandError("empty query")
    if args.remote:
        from ..storage.remote import connect_remote

        con = connect_remote(args.remote)
    else:
        con = open_hub(args).connect()
    try:
        _refuse_writes(con, query)
        rel = con.sql(query, params=args.param or None)
        if rel is None:  # a statement without result (CREATE, SET ...)
            out_console().print("ok", markup=False)
            return 0
        tbl = rel.to_arrow_table()
    finally:
        con.close()
    import pyarrow as pa

    columns = tbl.column_names
    maps = [c for c in columns if pa.types.is_map(tbl.schema.field(c).type)]
    records = tbl.to_pylist()
    for r in records:
        for c in maps:  # MAP values arrive as lists of (key, value) pairs
            if r[c] is not None:
                r[c] = dict(r[c])
    rows = [tuple(r.values()) for r in records]
    emit_rows(columns, rows, args.format, args.output, max_rows=None if args.format != "table" else args.max_rows)
    return 0


_WRITES = ("COPY", "EXPORT", "ATTACH", "DETACH", "LOAD", "INSTALL", "UPDATE_EXTENSIONS", "COPY_DATABASE")


def _refuse_writes(con: Any, query: str) -> None:
    """``crucible sql`` reads: statements that write or load files are refused by name (the
    connection's file access is locked to the store too, see ``ct.connect``)."""
    try:
        kinds = [str(st.type).rsplit(".", 1)[-1] for st in con.extract_statements(query)]
    except Exception:
        return  # a parse error: DuckDB reports it when the query runs
    bad = [k for k in kinds if k in _WRITES]
    if bad:
        raise CommandError(
            f"crucible sql only reads: {bad[0]} is not run (write query results with --format csv -o FILE)"
        )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _export(args: argparse.Namespace) -> int:
    from ..storage.export import export

    hub = open_hub(args)
    args.id = resolve_id(hub, args.id)
    total = hub.store.count(args.id)
    out = Path(args.output) if args.output else None
    if out is not None and out.exists() and not args.overwrite:
        raise CommandError(f"{out} exists; pass --overwrite to replace it")
    errc = err_console()
    if errc.is_terminal and total >= args.progress_over:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        result: dict[str, Any] = {}

        def work() -> None:
            try:
                result["path"] = export(hub, args.id, args.format, out, args.overwrite)
            except BaseException as exc:
                result["error"] = exc

        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]exporting {task.description}"),
            BarColumn(),
            TextColumn("{task.fields[size]}"),
            TimeElapsedColumn(),
            console=errc,
            transient=True,
        ) as prog:
            task = prog.add_task(f"{total:,} events to {args.format}", total=None, size="")
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            while thread.is_alive():
                thread.join(0.1)
                folder = out.parent if out else hub.home / "exports"
                tmps = list(folder.glob(".*.tmp")) if folder.is_dir() else []
                written = sum(p.stat().st_size for p in tmps if p.exists())
                prog.update(task, size=_size(written) if written else "")
        if "error" in result:
            raise result["error"]
        path = result["path"]
    else:
        path = export(hub, args.id, args.format, out, args.overwrite)
    out_console().print(f"wrote {total:,} events of {args.id} to {path} ({_size(path.stat().st_size)})", markup=False)
    return 0


def _prune(args: argparse.Namespace) -> int:
    hub = open_hub(args)
    before = hub.store.file_count()
    removed = hub.store.compact()
    if args.grace is not None:
        removed += hub.events_writer.collect_garbage(grace=args.grace)
        removed += hub.metrics_writer.collect_garbage(grace=args.grace)
    after = hub.store.file_count()
    out_console().print(
        f"removed {removed} superseded file(s); {after} segment file(s) remain (were {before})", markup=False
    )
    return 0


def _serve(args: argparse.Namespace) -> int:
    from ..metrics.prometheus import serve

    server = serve(args.host, args.port, hub=open_hub(args), from_store=True)  # what every process recorded
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"serving {server.url} (Ctrl-C to stop)", flush=True)
    try:
        stop.wait()
    finally:
        server.close()
    return 0


def _push(args: argparse.Namespace) -> int:
    from ..storage.remote import push

    hub = open_hub(args)
    result = push(args.url, hub.home)
    out_console().print(
        f"pushed {result.uploaded} objects ({result.bytes:,} bytes), {result.skipped} already there, "
        f"{result.records} records to {args.url}",
        markup=False,
    )
    for line in result.failed:
        err_console().print(f"failed: {line}", markup=False)
    return 1 if result.failed else 0


def register(add: Any) -> None:
    """Add ``sql``, ``export``, ``prune``, ``serve`` and ``push``."""
    p = add(
        "sql",
        _sql,
        help="run DuckDB SQL over the views",
        description="Run DuckDB SQL over the views experiments, events, metrics and runs. "
        "Use ? placeholders with --param for values.",
        epilog="examples:\n"
        '  crucible sql "SELECT event, count(*) FROM events GROUP BY event"\n'
        '  crucible sql "SELECT * FROM events WHERE experiment_id = ?" --param ID --format csv '
        "-o events.csv",
    )
    p.add_argument("query", help="the SQL statement ('-' reads it from stdin)")
    p.add_argument("--param", action="append", help="a value bound to the next ? placeholder (repeat)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.add_argument("--max-rows", type=int, default=200, help="rows shown in table format (default 200)")
    p.add_argument("--remote", metavar="URL", help="query the store pushed to this URL (s3://bucket/prefix)")

    p = add(
        "push",
        _push,
        help="upload the store's live files to object storage",
        description="Upload this store's live files (each once, under its final name) and its records to "
        "URL; query it there with `crucible sql --remote URL`. S3 takes the usual AWS variables and "
        "$AWS_ENDPOINT_URL.",
        epilog="examples:\n  crucible push s3://lab-runs/crucible\n"
        '  crucible sql --remote s3://lab-runs/crucible "SELECT name, status FROM runs"',
    )
    p.add_argument("url", help="s3://bucket/prefix (or another fsspec URL)")

    p = add(
        "export",
        _export,
        help="write an experiment's events to a file",
        description="Write an experiment's events as csv, jsonl or parquet (streamed by DuckDB).",
        epilog="examples:\n  crucible export exp-20250101T120000-1a2b3c4d --format parquet -o run.parquet\n"
        "  crucible export exp-20250101T120000-1a2b3c4d --format csv -o run.csv --overwrite",
    )
    p.add_argument("id", help="run id, unique id prefix or unique name")
    p.add_argument("--format", default="parquet", help="csv, jsonl, parquet (or a plugin's format)")
    p.add_argument("-o", "--output", help="output path (default <home>/exports/<id>.<format>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.add_argument("--progress-over", type=int, default=50_000, help=argparse.SUPPRESS)

    p = add(
        "prune",
        _prune,
        help="compact segments and delete garbage",
        description="Compact this store's segment files and delete superseded ones past their grace period.",
        epilog="examples:\n  crucible prune\n  crucible prune --grace 0",
    )
    p.add_argument("--grace", type=float, help="seconds a superseded file is kept for readers (default 120)")

    p = add(
        "serve",
        _serve,
        help="serve the Prometheus /metrics endpoint (rebuilt from the store)",
        description="Serve the Prometheus /metrics endpoint until interrupted.",
        epilog="examples:\n  crucible serve --port 9464\n  crucible serve --host 0.0.0.0 --port 9464",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9464, help="0 picks a free port")
