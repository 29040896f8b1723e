"""Shared pieces of the ``crucible`` commands: the store to open, consoles, number formats, tables."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._format import fmt_num
from ..errors import CrucibleError

if TYPE_CHECKING:
    from rich.console import Console

    from ..hub import Telemetry

__all__ = [
    "CommandError",
    "emit_rows",
    "err_console",
    "fmt_duration",
    "fmt_num",
    "home_of",
    "jsonable",
    "open_hub",
    "out_console",
    "write_text",
]


class CommandError(CrucibleError):
    """A command cannot do what was asked; the message is the one line the user sees."""


def home_of(args: argparse.Namespace) -> Path:
    """``--home``, else ``$CRUCIBLE_HOME``, else ``./.crucible``."""
    home = getattr(args, "home", None) or os.environ.get("CRUCIBLE_HOME") or ".crucible"
    return Path(home).expanduser().absolute()


def open_hub(args: argparse.Namespace) -> Telemetry:
    """The hub of an existing store (made the default hub, so ``ct.*`` calls read it too)."""
    from .._hubs import set_default
    from ..hub import Telemetry

    home = home_of(args)
    if not home.is_dir() or not any((home / d).is_dir() for d in ("experiments", "events", "metrics")):
        raise CommandError(f"no crucible store at {home} (pass --home DIR or set CRUCIBLE_HOME)")
    hub = Telemetry(home)
    set_default(hub)
    return hub


def out_console() -> Console:
    """Console on stdout (fits the terminal; plain text when piped)."""
    from rich.console import Console

    return Console(soft_wrap=False, highlight=False)


def err_console() -> Console:
    """Console on stderr, for progress and notes."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def fmt_duration(seconds: Any) -> str:
    """``1h02m``, ``3m05s``, ``12.3s``."""
    if seconds is None:
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def jsonable(x: Any) -> Any:
    """Values as JSON can hold them (datetimes as ISO strings, maps as dicts)."""
    if isinstance(x, (datetime, date)):
        return x.isoformat()
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        if x and all(isinstance(i, tuple) and len(i) == 2 for i in x):
            return {str(k): jsonable(v) for k, v in x}
        return [jsonable(i) for i in x]
    if isinstance(x, float) and x != x:
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def write_text(text: str, output: str | None) -> None:
    """Write to a file (``-o``) or stdout."""
    if output:
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        err_console().print(f"wrote {path}")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _cell(x: Any) -> str:
    if isinstance(x, (dict, list, tuple)):
        return json.dumps(jsonable(x), default=str)
    if isinstance(x, datetime):
        return x.isoformat(sep=" ", timespec="seconds")
    return fmt_num(x) if isinstance(x, float) else ("" if x is None else str(x))


def emit_rows(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    fmt: str = "table",
    output: str | None = None,
    title: str | None = None,
    max_rows: int | None = None,
    no_wrap: Sequence[str] = (),
) -> None:
    """Print rows as a rich table, CSV or JSON (a list of objects), to stdout or ``output``.

    ``no_wrap`` names columns kept on one line (ids to copy); the others fold to fit the terminal.
    """
    if fmt == "json":
        data = [{c: jsonable(v) for c, v in zip(columns, r)} for r in rows]
        write_text(json.dumps(data, indent=2, default=str) + "\n", output)
        return
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow(
                [
                    json.dumps(jsonable(v), default=str)
                    if isinstance(v, (dict, list, tuple))
                    else (v.isoformat() if isinstance(v, datetime) else ("" if v is None else v))
                    for v in r
                ]
            )
        write_text(buf.getvalue(), output)
        return
    from rich import box
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
    for c in columns:
        table.add_column(c, overflow="fold", no_wrap=c in no_wrap)
    shown = rows if max_rows is None else rows[:max_rows]
    for r in shown:
        table.add_row(*[_cell(v) for v in r])
    if output:
        from rich.console import Console

        buf = io.StringIO()
        Console(file=buf, width=200, color_system=None).print(table)
        write_text(buf.getvalue(), output)
        return
    con = out_console()
    con.print(table)
    if max_rows is not None and len(rows) > max_rows:
        con.print(f"... {len(rows) - max_rows} more rows (use --format csv or json for all)")
