"""Import Trackio projects: each run of a project's SQLite database (``<TRACKIO_DIR>/<project>.db``) is one run.

Read with the standard library (``sqlite3``, read-only), so the ``trackio`` package is not needed: each
``metrics`` row's JSON gives points at its step and timestamp, ``system_metrics`` rows ``system/<key>``
points, ``configs`` the params (keys starting with ``_`` are Trackio's own: ``_Created`` is the start).
"""

from __future__ import annotations

import functools
import json
import math
import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from ._common import ImportResult, Point, Problems, SourceRun, from_timestamp, import_runs

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["trackio"]

SOURCE = "trackio"
_SPECIAL = {"Infinity": math.inf, "-Infinity": -math.inf, "NaN": math.nan}


def trackio_dir() -> Path:
    """Where Trackio keeps its databases: ``$TRACKIO_DIR``, else ``$HF_HOME/trackio``."""
    if os.environ.get("TRACKIO_DIR"):
        return Path(os.environ["TRACKIO_DIR"])
    hf_home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface"
    return Path(hf_home).expanduser() / "trackio"


def trackio(
    project: Any, *, hub: Telemetry | None = None, name: str | None = None, progress: bool | None = None
) -> ImportResult:
    """Import every run of a Trackio project.

    Args:
        project: a project name (its database in ``$TRACKIO_DIR``), a ``.db`` file, or a folder of them.
        hub: the store to write to (default: the default hub).
        name: experiment name for every imported run (default: the run's name).
        progress: progress lines on stderr (default: when stderr is a terminal).
    """
    if not isinstance(project, (str, Path)) or not str(project):
        raise InvalidArgumentError("project", f"expected a project name or a path, got {project!r}")
    p = Path(project).expanduser()
    if not p.exists():
        safe = "".join(c for c in str(project) if c.isalnum() or c in "-_") or "default"
        p = trackio_dir() / f"{safe}.db"
        if not p.exists():
            raise InvalidArgumentError("project", f"no Trackio project {project!r} (looked for {p})")
    p = p.resolve()
    dbs = [p] if p.is_file() else sorted(p.glob("*.db"))
    result = ImportResult(SOURCE)
    problems = Problems(result)
    if not dbs:
        problems(p, "no .db file found")

    def runs() -> Iterator[SourceRun]:
        for db in dbs:
            try:
                yield from _runs(db)
            except sqlite3.DatabaseError as exc:
                problems(db, f"not a readable Trackio database: {exc}")

    return import_runs(SOURCE, runs(), hub=hub, name=name, progress=progress, result=result)


def _connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)


def _ts(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except (TypeError, ValueError):
        return None


def _json(blob: Any) -> Any:
    try:
        return json.loads(blob)
    except (TypeError, ValueError):
        return None


def _runs(db: Path) -> Iterator[SourceRun]:
    con = _connect(db)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "metrics" not in tables:
            raise sqlite3.DatabaseError("no metrics table")
        cols = {r[1] for r in con.execute("PRAGMA table_info(metrics)")}
        key = "run_id" if "run_id" in cols else "run_name"  # older databases key runs by name
        found = con.execute(f"SELECT {key}, min(run_name) FROM metrics GROUP BY {key} ORDER BY min(id)").fetchall()
        configs: dict[str, Any] = {}
        if "configs" in tables:
            for rid, cfg in con.execute(f"SELECT {key}, config FROM configs"):
                configs[rid] = _json(cfg) or {}
    finally:
        con.close()
    for rid, run_name in found:
        cfg = configs.get(rid, {})
        params = {k: v for k, v in cfg.items() if not str(k).startswith("_")} if isinstance(cfg, dict) else {}
        start = _ts(cfg.get("_Created")) if isinstance(cfg, dict) else None
        meta: dict[str, Any] = {"source_path": str(db), "project": db.stem, "trackio_run_id": rid}
        if isinstance(cfg, dict) and cfg.get("_Group"):
            meta["group"] = cfg["_Group"]
        yield SourceRun(
            source=SOURCE,
            source_run_id=f"{db.stem}/{rid}",
            name=run_name or str(rid),
            points=functools.partial(_points, db, key, rid, "system_metrics" in tables),
            params=params,
            started_at=from_timestamp(start),
            metadata=meta,
        )


def _values(blob: Any) -> Iterator[tuple[str, float]]:
    row = _json(blob)
    if not isinstance(row, dict):
        return
    for k, v in row.items():
        v = _SPECIAL.get(v, v) if isinstance(v, str) else v
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            yield str(k), float(v)


def _points(db: Path, key: str, rid: Any, system: bool, problems: Problems) -> Iterator[Point]:
    con = _connect(db)
    try:
        cur = con.execute(f"SELECT step, timestamp, metrics FROM metrics WHERE {key} = ? ORDER BY id", (rid,))
        for step, ts, blob in cur:
            wall = _ts(ts)
            for metric, value in _values(blob):
                yield (metric, value, int(step) if step is not None else None, None, wall, None)
        if system:
            cur = con.execute(
                f"SELECT timestamp, metrics FROM system_metrics WHERE {key} = ? ORDER BY id",
                (rid,),
            )
            for ts, blob in cur:
                wall = _ts(ts)
                for metric, value in _values(blob):
                    yield (f"system/{metric}", value, None, None, wall, None)
    except sqlite3.DatabaseError as exc:
        problems(db, f"reading run {rid} stopped: {exc}")
    finally:
        con.close()
