"""Import MLflow tracking stores: the file store (``mlruns/``) and the SQLite store, each active run one experiment.

Both are read with the standard library (the on-disk layout and the tables the ``mlflow`` package
writes), so ``mlflow`` itself is not needed. Metrics keep their step and timestamp (ms), params and
user tags come along, ``mlflow.*`` system tags go to metadata; deleted runs are left out.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from ..errors import InvalidArgumentError
from ._common import ImportResult, Point, Problems, SourceRun, from_timestamp, import_runs

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["mlflow"]

SOURCE = "mlflow"
#: MLflow's RunStatus numbers (file store) and names (SQL store) -> ours.
_STATUS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}
_ENDING = {"FAILED": "failed", "KILLED": "failed"}


def mlflow(
    tracking_uri: Any, *, hub: Telemetry | None = None, name: str | None = None, progress: bool | None = None
) -> ImportResult:
    """Import every active run of an MLflow tracking store.

    Args:
        tracking_uri: ``sqlite:///path/mlflow.db``, ``file:///path/mlruns``, or a path to either.
        hub: the store to write to (default: the default hub).
        name: experiment name for every imported run (default: the MLflow run name).
        progress: progress lines on stderr (default: when stderr is a terminal).
    """
    path = _store_path(tracking_uri)
    result = ImportResult(SOURCE)
    problems = Problems(result)
    if path.is_file():
        runs: Iterator[SourceRun] = _sql_runs(path, problems)
    else:
        runs = _file_runs(path, problems)
    return import_runs(SOURCE, runs, hub=hub, name=name, progress=progress, result=result)


def _store_path(uri: Any) -> Path:
    if not isinstance(uri, (str, Path)) or not str(uri):
        raise InvalidArgumentError("tracking_uri", f"expected a tracking URI or a path, got {uri!r}")
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme == "sqlite":  # sqlite:///relative.db, sqlite:////absolute.db (SQLAlchemy's rule)
        text = unquote(text[len("sqlite:///") :]) if text.startswith("sqlite:///") else unquote(parsed.path)
    elif parsed.scheme == "file":
        text = unquote(parsed.path)
    elif parsed.scheme not in ("",) and len(parsed.scheme) > 1:
        raise InvalidArgumentError(
            "tracking_uri", f"{uri!r}: only file stores and SQLite databases are read (file:// or sqlite:///)"
        )
    p = Path(text).expanduser()
    if not p.exists():
        raise InvalidArgumentError("tracking_uri", f"{p} does not exist")
    return p.resolve()


def _status(code: Any) -> str:
    return _STATUS.get(code, str(code)) if isinstance(code, int) else str(code)


def _split_tags(tags: dict[str, str]) -> tuple[tuple[str, ...], dict[str, str]]:
    user = tuple(k if v in ("", None) else f"{k}={v}" for k, v in tags.items() if not k.startswith("mlflow."))
    system = {k: v for k, v in tags.items() if k.startswith("mlflow.")}
    return user, system


def _make_run(
    run_id: str,
    run_name: str | None,
    exp_id: Any,
    exp_name: str | None,
    status: str,
    start_ms: Any,
    end_ms: Any,
    params: dict[str, Any],
    tags: dict[str, str],
    where: str,
    points: Any,
) -> SourceRun:
    user_tags, system = _split_tags(tags)
    meta: dict[str, Any] = {
        "source_path": where,
        "mlflow_run_id": run_id,
        "mlflow_experiment_id": str(exp_id),
        "mlflow_experiment": exp_name,
        "mlflow_status": status,
    }
    if system:
        meta["mlflow_tags"] = system
    return SourceRun(
        source=SOURCE,
        source_run_id=run_id,
        name=run_name or tags.get("mlflow.runName") or run_id,
        points=points,
        params=params,
        tags=user_tags,
        started_at=from_timestamp(start_ms / 1000) if isinstance(start_ms, (int, float)) else None,
        stopped_at=from_timestamp(end_ms / 1000) if isinstance(end_ms, (int, float)) else None,
        status=_ENDING.get(status, "stopped"),
        metadata=meta,
    )


# ------------------------------------------------------------------ file store


def _meta(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _key_files(folder: Path) -> Iterator[tuple[str, Path]]:
    if folder.is_dir():
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                yield f.relative_to(folder).as_posix(), f


def _file_runs(root: Path, problems: Problems) -> Iterator[SourceRun]:
    try:
        import yaml  # noqa: F401  (meta.yaml files)
    except ImportError:
        problems(root, "reading an MLflow file store needs PyYAML: pip install pyyaml")
        return
    exps = [d for d in sorted(root.iterdir()) if d.is_dir() and (d / "meta.yaml").is_file()]
    if not exps:
        problems(root, "no MLflow experiment (no <id>/meta.yaml)")
    for exp_dir in exps:
        try:
            exp = _meta(exp_dir / "meta.yaml")
        except Exception as exc:  # a damaged meta.yaml: the experiment is skipped
            problems(exp_dir / "meta.yaml", f"not readable: {exc}")
            continue
        if exp.get("lifecycle_stage") == "deleted":
            continue
        for run_dir in sorted(d for d in exp_dir.iterdir() if (d / "meta.yaml").is_file()):
            try:
                meta = _meta(run_dir / "meta.yaml")
                params = {k: f.read_text(encoding="utf-8") for k, f in _key_files(run_dir / "params")}
                tags = {k: f.read_text(encoding="utf-8") for k, f in _key_files(run_dir / "tags")}
            except Exception as exc:  # a damaged run folder: that run is skipped
                problems(run_dir, f"not readable: {exc}")
                continue
            if meta.get("lifecycle_stage") == "deleted":
                continue
            run_id = str(meta.get("run_id") or meta.get("run_uuid") or run_dir.name)
            yield _make_run(
                run_id,
                meta.get("run_name"),
                exp.get("experiment_id", exp_dir.name),
                exp.get("name"),
                _status(meta.get("status")),
                meta.get("start_time"),
                meta.get("end_time"),
                params,
                tags,
                str(run_dir),
                lambda report, d=run_dir: _file_points(d / "metrics", report),
            )


def _file_points(folder: Path, problems: Problems) -> Iterator[Point]:
    for key, f in _key_files(folder):
        bad = 0
        with f.open(encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                try:
                    ts, value = int(parts[0]), float(parts[1])
                    step = int(parts[2]) if len(parts) > 2 else 0
                except (IndexError, ValueError):
                    bad += 1
                    continue
                yield (key, value, step, None, ts / 1000, None)
        if bad:
            problems(f, f"{bad} damaged line(s) skipped")


# ------------------------------------------------------------------ SQL store


def _connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)


def _sql_runs(db: Path, problems: Problems) -> Iterator[SourceRun]:
    try:
        con = _connect(db)
        try:
            exps = dict(con.execute("SELECT experiment_id, name FROM experiments"))
            runs = con.execute(
                "SELECT run_uuid, name, experiment_id, status, start_time, end_time FROM runs "
                "WHERE lifecycle_stage IS NULL OR lifecycle_stage <> 'deleted' ORDER BY start_time, run_uuid"
            ).fetchall()
            params: dict[str, dict[str, Any]] = {}
            for key, value, rid in con.execute("SELECT key, value, run_uuid FROM params"):
                params.setdefault(rid, {})[key] = value
            tags: dict[str, dict[str, str]] = {}
            for key, value, rid in con.execute("SELECT key, value, run_uuid FROM tags"):
                tags.setdefault(rid, {})[key] = value
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        problems(db, f"not a readable MLflow database: {exc}")
        return
    for rid, run_name, exp_id, status, start, end in runs:
        yield _make_run(
            rid,
            run_name,
            exp_id,
            exps.get(exp_id),
            str(status),
            start,
            end,
            params.get(rid, {}),
            tags.get(rid, {}),
            str(db),
            lambda report, rid=rid: _sql_points(db, rid, report),
        )


def _sql_points(db: Path, rid: str, problems: Problems) -> Iterator[Point]:
    con = _connect(db)
    try:
        cur = con.execute(
            "SELECT key, value, step, timestamp, is_nan FROM metrics WHERE run_uuid = ? ORDER BY key, step, timestamp",
            (rid,),
        )
        for key, value, step, ts, is_nan in cur:
            v = math.nan if is_nan else float(value)
            yield (key, v, int(step) if step is not None else None, None, ts / 1000 if ts is not None else None, None)
    except sqlite3.DatabaseError as exc:
        problems(db, f"reading run {rid} stopped: {exc}")
    finally:
        con.close()
