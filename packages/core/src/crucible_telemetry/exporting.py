"""``export``: an experiment's events to csv, jsonl or parquet, streamed by DuckDB's COPY."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import plugins
from .errors import ExportExistsError, InvalidArgumentError

if TYPE_CHECKING:
    from .hub import Telemetry

__all__ = ["FORMATS", "export"]

FORMATS = ("csv", "jsonl", "parquet")

_FLAT = ("SELECT experiment_id, event, category, ts, mono_ns, seq, host, pid, rank, local_rank, node, world_size, "
         "epoch, global_step, batch, duration, to_json(measurements) AS measurements, metadata, "
         "to_json(tags) AS tags FROM events WHERE experiment_id = ? ORDER BY ts, host, pid, seq")
_NESTED = ("SELECT * REPLACE (CAST(metadata AS JSON) AS metadata) FROM events WHERE experiment_id = ? "
           "ORDER BY ts, host, pid, seq")


def _copy(con: Any, sql: str, params: list[Any], path: Path, options: str) -> None:
    lit = "'" + str(path).replace("'", "''") + "'"
    con.execute(f"COPY ({sql}) TO {lit} ({options})", params)


def export(hub: Telemetry, exp_id: str, fmt: str = "parquet", path: str | os.PathLike[str] | None = None,
           overwrite: bool = False) -> Path:
    """Write an experiment's events to ``path`` (default ``<home>/exports/<id>.<fmt>``); returns the path."""
    hub._require_known(exp_id)
    plugins.load_plugins()
    custom = plugins.EXPORTERS.get(fmt) if fmt not in FORMATS else None
    if fmt not in FORMATS and custom is None:
        raise InvalidArgumentError("fmt", f"unknown format {fmt!r}; use one of {', '.join(FORMATS + tuple(plugins.EXPORTERS))}")
    out = Path(path) if path is not None else hub.home / "exports" / f"{exp_id}.{fmt}"
    if out.exists() and not overwrite:
        raise ExportExistsError(out)
    if out.exists() and out.is_dir():
        raise InvalidArgumentError("path", f"{out} is a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(3)}.tmp")
    hub.flush()
    con = hub.store._con()
    try:
        if custom is not None:
            custom(con, _NESTED, [exp_id], tmp)
        elif fmt == "csv":
            _copy(con, _FLAT, [exp_id], tmp, "FORMAT csv, HEADER true")
        elif fmt == "jsonl":
            _copy(con, _NESTED, [exp_id], tmp, "FORMAT json")
        else:
            _copy(con, _NESTED.replace("CAST(metadata AS JSON)", "metadata"), [exp_id], tmp,
                  "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
