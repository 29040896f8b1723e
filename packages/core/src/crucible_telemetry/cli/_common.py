"""Shared pieces of the ``crucible`` commands: the store to open, run lookup, consoles, number formats, tables.

Tables fit the terminal by truncating cells with an ellipsis (never folding a cell over lines);
piped output is never cut or wrapped (unless ``$COLUMNS`` asks for a width); user text is never
read as rich markup.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
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
    "fit_widths",
    "fmt_duration",
    "fmt_num",
    "home_of",
    "jsonable",
    "open_hub",
    "out_console",
    "print_block",
    "resolve_id",
    "resolve_ids",
    "short_id",
    "table_width",
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

    raw = getattr(args, "home", None) or os.environ.get("CRUCIBLE_HOME") or ""
    if "://" in raw:  # a remote home (s3://...): read there, through a spool of this machine's
        hub = Telemetry(raw)
        set_default(hub)
        return hub
    home = home_of(args)
    if not home.is_dir() or not any((home / d).is_dir() for d in ("experiments", "events", "metrics")):
        raise CommandError(f"no crucible store at {home} (pass --home DIR or set CRUCIBLE_HOME)")
    hub = Telemetry(home)
    set_default(hub)
    return hub


def table_width() -> int | None:
    """Width tables must fit: the terminal's, else ``$COLUMNS``, else None (piped: no limit)."""
    if sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    cols = os.environ.get("COLUMNS", "")
    return int(cols) if cols.isdigit() and int(cols) > 0 else None


def out_console(width: int | None = None) -> Console:
    """Console on stdout: the terminal's width, or a line as long as it needs when piped."""
    from rich.console import Console

    w = width or table_width() or 100_000
    return Console(soft_wrap=False, highlight=False, width=w, emoji=False)


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
        err_console().print(f"wrote {path}", markup=False)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def short_id(experiment_id: str) -> str:
    """What ``crucible runs`` shows of an id: the random tail of ``exp-<time>-<hex>``, else the id."""
    from ..analysis.runs import short_id as short

    return short(experiment_id)


def resolve_id(hub: Telemetry, token: str) -> str:
    """One run named by its id, a unique prefix of the id or of its short id, or its unique name."""
    return resolve_ids(hub, [token])[0]


def resolve_ids(hub: Telemetry, tokens: Sequence[str]) -> list[str]:
    """The experiment ids that ``tokens`` name, in order: each an id, a unique prefix of an id or of
    its short id (as ``crucible runs`` shows it), or a unique run name.

    Raises :class:`CommandError` (exit 1) for a token that names no run, with "did you mean ...",
    or several runs, listing them.
    """
    from ..analysis.runs import match_runs

    ids, message = match_runs(hub, tokens)
    if message:
        raise CommandError(
            message + ("" if "did you mean" in message or "matches" in message else " (crucible runs lists them)")
        )
    return ids


#: Table cells holding JSON (params, environment) are cut to this many characters.
JSON_CELL = 80


def _cut_json(text: str) -> str:
    return text if len(text) <= JSON_CELL else text[: JSON_CELL - 1] + "\u2026"


def _cell(x: Any) -> str:
    if isinstance(x, (dict, list, tuple)):
        return _cut_json(json.dumps(jsonable(x), default=str))
    if isinstance(x, str) and x[:1] in ("{", "["):  # a JSON column (DuckDB hands JSON over as text)
        return _cut_json(x)
    if isinstance(x, datetime):
        return x.isoformat(sep=" ", timespec="seconds")
    return fmt_num(x) if isinstance(x, float) else ("" if x is None else str(x))


def _csv_cell(v: Any) -> Any:
    """A CSV cell of a value that is not a plain string or number: JSON, ISO time, or empty."""
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(jsonable(v), default=str) if v else ("{}" if isinstance(v, dict) else "[]")
    if isinstance(v, datetime):
        return v.isoformat()
    return "" if v is None else v


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

    ``no_wrap`` names columns never cut (ids to copy); the others are cut with an ellipsis to fit the
    terminal. Cells never fold over lines, and output to a pipe or file is not cut at all.
    """
    if fmt == "json":
        data = [{c: jsonable(v) for c, v in zip(columns, r)} for r in rows]
        write_text(json.dumps(data, indent=2, default=str) + "\n", output)
        return
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        plain = (str, int, float)
        w.writerows([[v if type(v) in plain else "" if v is None else _csv_cell(v) for v in r] for r in rows])
        write_text(buf.getvalue(), output)
        return
    from rich import box
    from rich.table import Table
    from rich.text import Text

    shown = list(rows if max_rows is None else rows[:max_rows])
    cells = [[_cell(v).replace("\n", " ") for v in r] for r in shown]
    width = None if output else table_width()
    widths = fit_widths(columns, cells, width, keep=no_wrap)
    hidden = list(columns[len(widths) :])
    table = Table(
        title=Text(title) if title else None,
        show_lines=False,
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        title_justify="left",
    )
    for c, cw in zip(columns, widths):
        table.add_column(Text(str(c)), no_wrap=True, overflow="ellipsis", width=cw)
    for r in cells:
        table.add_row(*[Text(v) for v in r[: len(widths)]])
    notes = []
    if hidden:
        names = ", ".join(hidden[:8]) + (f" and {len(hidden) - 8} more" if len(hidden) > 8 else "")
        notes.append(f"{len(hidden)} more column(s) do not fit: {names} (use --format csv or json)")
    if max_rows is not None and len(rows) > max_rows:
        notes.append(f"... {len(rows) - max_rows} more rows (use --format csv or json for all)")
    con = out_console(100_000 if output else None)
    with con.capture() as cap:
        con.print(table)
        for n in notes:
            con.print(Text(n))
    write_text(_strip_lines(cap.get()), output)


def print_block(renderable: Any, output: str | None = None) -> None:
    """Print a rich renderable (a grid, a table) without trailing spaces, to stdout or ``output``."""
    con = out_console(100_000 if output else None)
    with con.capture() as cap:
        con.print(renderable)
    write_text(_strip_lines(cap.get()), output)


def _strip_lines(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


def fit_widths(
    columns: Sequence[str], cells: Sequence[Sequence[str]], width: int | None, keep: Sequence[str] = ()
) -> list[int]:
    """Widths of the columns that fit ``width`` (None: all, at their natural widths).

    The widest columns give way first, down to 8 characters (``keep`` columns are never cut); cut
    cells end in an ellipsis. Columns that still do not fit at 6 characters each are left off the
    end: fewer widths than columns come back, and the caller says which were left off.
    """
    natural = [max([len(str(c)), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    if width is None or not columns:
        return natural

    def shrink(n: int, floor_of: Any) -> list[int]:
        widths = natural[:n]
        floors = [natural[i] if columns[i] in keep else min(natural[i], floor_of(i)) for i in range(n)]
        avail = width - 3 * (n - 1)  # padding either side of a one-space rule
        while sum(widths) > avail:
            i = max(range(n), key=lambda k: (widths[k] - floors[k], widths[k]))
            if widths[i] <= floors[i]:
                break
            widths[i] -= 1
        return widths

    n = len(columns)
    while n > 1 and sum(shrink(n, lambda i: 6)) > width - 3 * (n - 1):
        n -= 1
    widths = shrink(n, lambda i: max(8, min(len(str(columns[i])), 12)))
    return widths if sum(widths) <= width - 3 * (n - 1) else shrink(n, lambda i: 6)
