"""A Delta Lake log over the live files, so other engines (Spark, Polars, delta-rs) read the store exactly.

Another engine globbing the folders would read covered files beside the merge covering them (every
row twice until the covered ones are collected). ``publish`` writes ``<dataset>/_delta_log/`` at each
dataset root instead: an ``add`` for every live file of ``listing.resolve`` (the readers' own rule)
and a ``remove`` for every file published before and no longer live. No data is rewritten: the
entries point at the segments and merges where they lie. The JSON commits follow the Delta protocol
(reader 1, writer 2), written here without a Delta library: each is a temporary file linked to its
version's name, which fails when the version exists, and one publisher at a time holds
``<dataset>/.publish.lock`` (``flock``), so commits never conflict. The state after the last commit
is kept beside the log (``.published.json``) and trusted only while no later version exists, else
the log is replayed. A merge publishes its folder again (``after_merge``) once a log exists.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.parquet as pq

from . import listing
from .schema import EVENTS_SCHEMA, METRICS_SCHEMA

__all__ = ["DATASETS", "LOG", "after_merge", "publish", "publish_dataset"]

log = logging.getLogger("crucible_telemetry")

LOG = "_delta_log"
#: dataset -> (its hive partition column, the schema its files are written with)
DATASETS = {"events": ("experiment_id", EVENTS_SCHEMA), "metrics": ("run_id", METRICS_SCHEMA)}
_STATE = ".published.json"


def _delta_type(t: pa.DataType) -> Any:
    """The Delta schema type of an Arrow type (the types the store's files hold)."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_timestamp(t):
        return "timestamp" if t.tz else "timestamp_ntz"
    simple = {
        pa.int64(): "long",
        pa.int32(): "integer",
        pa.int16(): "short",
        pa.int8(): "byte",
        pa.float64(): "double",
        pa.float32(): "float",
        pa.bool_(): "boolean",
        pa.binary(): "binary",
        pa.date32(): "date",
    }
    if t in simple:
        return simple[t]
    if pa.types.is_map(t):
        return {
            "type": "map",
            "keyType": _delta_type(t.key_type),
            "valueType": _delta_type(t.item_type),
            "valueContainsNull": True,
        }
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return {"type": "array", "elementType": _delta_type(t.value_type), "containsNull": True}
    if pa.types.is_struct(t):
        return _struct(list(t))
    raise TypeError(f"no Delta type for {t}")


def _struct(fields: list[pa.Field]) -> dict[str, Any]:
    out = [{"name": f.name, "type": _delta_type(f.type), "nullable": True, "metadata": {}} for f in fields]
    return {"type": "struct", "fields": out}


def _schema_string(root: Path, key: str, files: list[str], default: pa.Schema) -> str:
    """The table schema: a live file's own columns (the newest format's), then the partition column."""
    schema = default
    for rel in files:
        if listing.current(rel):
            with contextlib.suppress(OSError, pa.ArrowException):
                schema = pq.read_schema(root / unquote(rel))
                break
    fields = [f for f in schema if f.name != key]
    return json.dumps(_struct([*fields, pa.field(key, pa.string())]), separators=(",", ":"))


@contextlib.contextmanager
def _publish_lock(root: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one publishing process per store is then the rule
        yield
        return
    fd = os.open(root / ".publish.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _version_name(v: int) -> str:
    return f"{v:020d}.json"


def _versions(logdir: Path) -> list[int]:
    try:
        names = os.listdir(logdir)
    except FileNotFoundError:
        return []
    return sorted(int(n[:20]) for n in names if len(n) == 25 and n.endswith(".json") and n[:20].isdigit())


def _state(root: Path, logdir: Path) -> tuple[int, dict[str, dict[str, Any]], dict[str, Any] | None]:
    """(last version or -1, the published files' add entries by path, the table's last metaData)."""
    versions = _versions(logdir)
    if not versions:
        return -1, {}, None
    last = versions[-1]
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        saved = json.loads((root / _STATE).read_bytes())
        if saved["version"] == last:
            return last, saved["files"], saved["meta"]
    files: dict[str, dict[str, Any]] = {}
    meta: dict[str, Any] | None = None
    for v in versions:  # replay (another tool's commit, or a state file lost): the log is the truth
        for line in (logdir / _version_name(v)).read_text().splitlines():
            if not line.strip():
                continue
            action = json.loads(line)
            if "add" in action:
                files[action["add"]["path"]] = action["add"]
            elif "remove" in action:
                files.pop(action["remove"]["path"], None)
            elif "metaData" in action:
                meta = action["metaData"]
    return last, files, meta


def _commit(logdir: Path, version: int, actions: list[dict[str, Any]]) -> None:
    """Write one version: a temporary file linked to its final name (fails if that version exists)."""
    body = "".join(json.dumps(a, separators=(",", ":")) + "\n" for a in actions).encode()
    tmp = logdir / f".{version:020d}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    with open(tmp, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, logdir / _version_name(version))
    finally:
        tmp.unlink()


def _live(root: Path, key: str, values: list[str]) -> dict[str, dict[str, Any]]:
    """The add entries of the live files of the partitions ``values`` (one fresh listing each)."""
    from .views import sound_files

    out: dict[str, dict[str, Any]] = {}
    for value in values:
        folder = root / f"{key}={value}"
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue
        live = listing.resolve(folder, names).live
        for p in sound_files([(folder / n).as_posix() for n in live]):
            try:
                st = os.stat(p)
            except FileNotFoundError:
                continue  # merged and collected meanwhile: the cover is in this listing's successor
            rel = quote(f"{key}={value}/{os.path.basename(p)}", safe="/=")
            out[rel] = {
                "path": rel,
                "partitionValues": {key: value},
                "size": st.st_size,
                "modificationTime": st.st_mtime_ns // 1_000_000,
                "dataChange": True,
            }
    return out


def publish_dataset(root: Path, key: str, schema: pa.Schema, values: list[str] | None = None) -> int | None:
    """Bring ``root/_delta_log`` up to the live files (of the partitions ``values``, else all).

    Returns the version written, or None when the log was already current.
    """
    logdir = root / LOG
    root.mkdir(parents=True, exist_ok=True)
    with _publish_lock(root):
        logdir.mkdir(exist_ok=True)
        last, published, meta = _state(root, logdir)
        scope = listing.partitions(root, key) if values is None else [v for v in values if v != "__schema__"]
        live = _live(root, key, scope)
        prefixes = tuple(quote(f"{key}={v}/", safe="/=") for v in scope)
        stale = [p for p in published if values is None or p.startswith(prefixes)]
        removed = [p for p in stale if p not in live]
        added = [p for p in live if p not in published]
        now_ms = time.time_ns() // 1_000_000
        actions: list[dict[str, Any]] = []
        if last < 0:
            actions.append({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}})
        new_schema = _schema_string(root, key, added or list(live), schema)
        old_schema = meta["schemaString"] if meta else None
        if meta is None or (added and old_schema != new_schema and _widens(old_schema, new_schema)):
            meta = {
                "id": meta["id"] if meta else str(uuid.uuid4()),
                "format": {"provider": "parquet", "options": {}},
                "schemaString": new_schema,
                "partitionColumns": [key],
                "configuration": {},
                "createdTime": now_ms,
            }
            actions.append({"metaData": meta})
        elif not added and not removed:
            return None
        actions.append({"commitInfo": {"timestamp": now_ms, "operation": "WRITE", "engineInfo": "crucible-telemetry"}})
        for p in removed:
            entry = published.pop(p)
            rm = {"path": p, "deletionTimestamp": now_ms, "dataChange": True, "extendedFileMetadata": True}
            rm.update(partitionValues=entry.get("partitionValues", {}), size=entry.get("size", 0))
            actions.append({"remove": rm})
        for p in added:
            published[p] = live[p]
            actions.append({"add": live[p]})
        version = last + 1
        _commit(logdir, version, actions)
        state = {"version": version, "files": published, "meta": meta}
        tmp = root / f"{_STATE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(state, separators=(",", ":")))
        os.replace(tmp, root / _STATE)
        return version


def _widens(old: str | None, new: str) -> bool:
    """Whether ``new`` keeps every column of ``old`` (a newer format adds columns, never drops them)."""
    if old is None:
        return True
    names = {f["name"] for f in json.loads(old)["fields"]}
    return names <= {f["name"] for f in json.loads(new)["fields"]}


def publish(home: str | os.PathLike[str]) -> dict[str, int | None]:
    """Publish both datasets of the store at ``home``; returns the version written per dataset."""
    home = Path(home)
    return {ds: publish_dataset(home / ds, key, schema) for ds, (key, schema) in DATASETS.items()}


def after_merge(folder: Path, merged: Path) -> Path:
    """Publish ``folder`` again after a merge wrote ``merged``, where the dataset has a log; never raises."""
    try:
        root = folder.parent
        spec = DATASETS.get(root.name)
        if spec is not None and (root / LOG).is_dir():
            publish_dataset(root, spec[0], spec[1], [folder.name.split("=", 1)[-1]])
    except Exception as exc:  # the merge stands; the next publish catches the log up
        log.warning("crucible_telemetry: publishing %s after a merge failed: %r", folder, exc)
    return merged
