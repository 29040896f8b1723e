"""``export``: an experiment's events to csv, jsonl or parquet, in time order, in bounded memory.

The events are cut into time slices of at most ``CHUNK_ROWS`` rows; each slice is sorted and
streamed to the file as Arrow record batches, so memory stays flat in the number of events.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .. import plugins
from ..errors import ExportExistsError, InvalidArgumentError

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["FORMATS", "export", "write_csv", "write_jsonl", "write_parquet"]

FORMATS = ("csv", "jsonl", "parquet")  # the built-in exporters; plugins add more
CHUNK_ROWS = 50_000
BATCH_ROWS = 10_000
_CSV = pacsv.WriteOptions(quoting_style="needed", include_header=False)

_COLUMNS = {
    # csv has no nested types: maps and lists as JSON text
    "csv": "* REPLACE (to_json(measurements) AS measurements, to_json(tags) AS tags)",
    "jsonl": "to_json(t) AS line",
    "parquet": "*",
}
_ORDER = " ORDER BY ts, host, pid, seq"


def _slices(con: Any, sql: str, params: list[Any]) -> list[tuple[Any, Any]]:
    """Half-open ``[t0, t1)`` time slices of about ``CHUNK_ROWS`` rows each (the last one closed)."""
    n, t_min = con.execute(f"SELECT count(*), min(ts) FROM ({sql}) t", params).fetchall()[0]
    if not n:
        return []
    k = -(-n // CHUNK_ROWS)
    if k == 1:
        return [(t_min, None)]
    qs = [i / k for i in range(1, k)]
    cuts = con.execute(f"SELECT quantile_disc(ts, ?) FROM ({sql}) t", [qs, *params]).fetchall()[0][0]
    bounds = [t_min, *sorted(set(cuts))]
    return [*pairwise(bounds), (bounds[-1], None)]


def _batches(con: Any, sql: str, params: list[Any], fmt: str) -> Iterator[pa.RecordBatch]:
    for t0, t1 in _slices(con, sql, params):
        where = "ts >= ?" + (" AND ts < ?" if t1 is not None else "")
        cols = "* REPLACE (CAST(metadata AS JSON) AS metadata)" if fmt == "jsonl" else "*"
        inner = f"SELECT {cols} FROM ({sql}) r WHERE {where}{_ORDER}"
        yield from con.sql(
            f"SELECT {_COLUMNS[fmt]} FROM ({inner}) t", params=[*params, t0, *([t1] if t1 is not None else [])]
        ).to_arrow_reader(BATCH_ROWS)


def write_jsonl(con: Any, sql: str, params: list[Any], path: Path) -> None:
    """The rows of ``sql`` as JSON lines (an exporter of the ``register_exporters`` hook)."""
    with Path(path).open("wb") as f:
        for batch in _batches(con, sql, params, "jsonl"):
            lines = batch.column(0).to_pylist()
            if lines:
                f.write(("\n".join(lines) + "\n").encode())


def _write_table(con: Any, sql: str, params: list[Any], path: Path, fmt: str) -> None:
    schema = (
        con.sql(f"SELECT {_COLUMNS[fmt]} FROM (SELECT * FROM ({sql}) r WHERE false) t", params=params)
        .to_arrow_table()
        .schema
    )
    with Path(path).open("wb") as sink:
        if fmt == "parquet":
            writer: Any = pq.ParquetWriter(sink, schema, compression="zstd")
        else:
            sink.write((",".join(schema.names) + "\n").encode())  # a plain header, as csv readers expect
            writer = pacsv.CSVWriter(sink, schema, write_options=_CSV)
        try:
            for batch in _batches(con, sql, params, fmt):
                writer.write_batch(batch)
        finally:
            writer.close()


def write_csv(con: Any, sql: str, params: list[Any], path: Path) -> None:
    """The rows of ``sql`` as csv, maps and lists as JSON text (an exporter)."""
    _write_table(con, sql, params, path, "csv")


def write_parquet(con: Any, sql: str, params: list[Any], path: Path) -> None:
    """The rows of ``sql`` as zstd Parquet (an exporter)."""
    _write_table(con, sql, params, path, "parquet")


def export(
    hub: Telemetry,
    exp_id: str,
    fmt: str = "parquet",
    path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Any:
    """Write an experiment's events to ``path`` (default ``<home>/exports/<id>.<fmt>``); returns the path.

    ``fmt="otlp"`` sends the LLM calls of ``exp_id`` (one id or several) to ``endpoint=`` instead and
    returns the counts (``crucible_telemetry.otel.export_otlp``, its keyword options).
    """
    if fmt == "otlp":
        from ..otel.export import export_otlp

        return export_otlp(exp_id, hub=hub, **options)
    hub.get_experiment(exp_id)
    plugins.load_plugins()
    exporter = plugins.EXPORTERS.get(fmt) if isinstance(fmt, str) else None
    if exporter is None:
        raise InvalidArgumentError("fmt", f"unknown format {fmt!r}; use one of {', '.join(sorted(plugins.EXPORTERS))}")
    out = Path(path) if path is not None else hub.home / "exports" / f"{exp_id}.{fmt}"
    if out.exists() and not overwrite:
        raise ExportExistsError(out)
    if out.exists() and out.is_dir():
        raise InvalidArgumentError("path", f"{out} is a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(3)}.tmp")
    hub.flush()
    from .views import connect

    con = connect(hub.home, read_only=False)  # its own (exports run beside queries), and it writes a file
    con.execute("SET threads = 1")  # one slice at a time: memory set by CHUNK_ROWS, not by cores
    try:
        exporter(con, f"SELECT * FROM events WHERE experiment_id = ?{_ORDER}", [exp_id], tmp)
        os.replace(tmp, out)
    finally:
        con.close()
        if tmp.exists():
            tmp.unlink()
    return out
