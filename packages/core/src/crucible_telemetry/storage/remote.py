"""A store on object storage (``s3://bucket/prefix``, or any fsspec URL): push a local store's live
files to it, and query it with the same views, listing it once per query.

Objects are immutable and written once under their final names (one PUT each; no rename exists
there), in the order a reader needs: a merge's summary and manifest before its data, so a merge a
reader can see is whole. A query lists the prefix once (a paginated LIST), reads the few manifests
(``.covers``) of the folders that hold merges, and gives DuckDB the explicit list of live objects,
so it opens only what it reads; nothing depends on comparing clocks.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InvalidArgumentError
from . import listing
from .catalog import EXPERIMENT_SCHEMA, _record_row
from .listing import current, resolve
from .schema import EVENTS_SCHEMA, FORMAT, METRICS_SCHEMA
from .summaries import empty_partial

__all__ = ["PushResult", "connect_remote", "push", "remote_fs"]

_DATASETS = {"events": ("experiment_id", EVENTS_SCHEMA), "metrics": ("run_id", METRICS_SCHEMA)}


def remote_fs(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec filesystem and root path of ``url`` (``s3://bucket/prefix``). S3 takes the usual
    AWS variables; ``$AWS_ENDPOINT_URL`` (or ``endpoint_url=``) points it at another server."""
    import fsspec

    if "://" not in str(url):
        raise InvalidArgumentError("url", f"expected a URL such as s3://bucket/prefix, got {url!r}")
    opts = dict(storage_options or {})
    if str(url).startswith("s3://"):
        endpoint = opts.pop("endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            opts.setdefault("client_kwargs", {})["endpoint_url"] = endpoint
    try:
        fs, root = fsspec.core.url_to_fs(str(url), **opts)
    except (ImportError, ValueError) as exc:
        raise InvalidArgumentError("url", f"cannot open {url!r}: {exc}") from None
    return fs, str(root).rstrip("/")


# ------------------------------------------------------------------------------------------- push


@dataclass
class PushResult:
    """What ``push`` did: objects uploaded and their bytes, and objects already there (skipped)."""

    uploaded: int = 0
    bytes: int = 0
    skipped: int = 0
    records: int = 0
    failed: list[str] = field(default_factory=list)


def push(url: str, home: str | os.PathLike[str] | None = None, **storage_options: Any) -> PushResult:
    """Upload the live files of the local store ``home`` (default ``$CRUCIBLE_HOME``) to ``url``,
    each once under its final name (a merge's summary and manifest first), then the records."""
    from ..hub import default_home

    local = Path(home).absolute() if home is not None else default_home()
    if not local.is_dir():
        raise InvalidArgumentError("home", f"no store at {local}")
    fs, root = remote_fs(url, storage_options)
    there = _existing(fs, root)
    out = PushResult()
    for dataset, (key, _) in _DATASETS.items():
        for value, view in listing.dataset_listing(local / dataset, key):
            folder = local / dataset / f"{key}={value}"
            for name in view.live:
                stem = name[: -len(".parquet")]
                extras = [stem + ".summary", stem + ".covers"] if name in view.merges else []
                for n in [*extras, name]:  # the data last: what a reader can see is whole
                    _put(fs, folder / n, f"{root}/{dataset}/{key}={value}/{n}", there, out)
    records = local / "experiments"
    for p in sorted(records.glob("*.json")) if records.is_dir() else []:
        target = f"{root}/experiments/{p.name}"
        try:
            fs.pipe_file(target, p.read_bytes())  # records change (status, notes): each push replaces them
            out.records += 1
        except OSError as exc:
            out.failed.append(f"{p.name}: {exc}")
    return out


def _existing(fs: Any, root: str) -> dict[str, int]:
    try:
        return {str(k): int(v.get("size") or 0) for k, v in fs.find(root, detail=True).items()}
    except (FileNotFoundError, OSError):
        return {}


def _put(fs: Any, src: Path, target: str, there: dict[str, int], out: PushResult) -> None:
    try:
        size = src.stat().st_size
    except FileNotFoundError:
        return  # collected meanwhile: the merge that covers it is pushed instead
    if there.get(target) == size:
        out.skipped += 1
        return
    try:
        fs.put_file(str(src), target)
        out.uploaded += 1
        out.bytes += size
    except OSError as exc:
        out.failed.append(f"{target}: {exc}")


# ------------------------------------------------------------------------------------------ query


class _RemoteBinder:
    """The file lists of one query over the remote store: one LIST per query (transaction)."""

    def __init__(self, fs: Any, root: str, scratch: Path) -> None:
        self.fs, self.root, self.scratch = fs, root, scratch
        self.creating = False
        self._key: Any = None
        self._lists: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._schemas = {d: _schema_file(scratch, d, s) for d, (_, s) in _DATASETS.items()}
        self._empty_sum = scratch / "schema-summaries-2.parquet"
        pq.write_table(empty_partial(with_single=True), self._empty_sum)
        self._empty_exp = scratch / "schema-experiments.parquet"
        pq.write_table(EXPERIMENT_SCHEMA.empty_table(), self._empty_exp)
        self._records: dict[str, tuple[Any, dict[str, Any] | None]] = {}  # record -> (etag or size, row)

    def files(self, kind: str, tx: int | None) -> list[str]:
        return self.files_of(kind, None, tx)

    def files_of(self, kind: str, ids: list[str] | None, tx: int | None) -> list[str]:
        if self.creating:
            if kind == "experiments":
                return [self._empty_exp.as_posix()]
            if kind == "summaries":
                return [self._empty_sum.as_posix()]
            if kind == "raw_ids":
                return []
            return [self._schemas[kind.split("_")[0]]]
        with self._lock:
            key = (tx, tuple(sorted(ids)) if ids is not None else None)
            if key != self._key or tx is None:
                self._key, self._lists = key, self._snapshot(ids)
            return self._lists[kind]

    def _snapshot(self, ids: list[str] | None) -> dict[str, list[str]]:
        self.fs.invalidate_cache()  # fsspec caches listings: each query lists the store anew
        entries = _existing(self.fs, self.root)
        folders: dict[tuple[str, str], list[str]] = {}
        records: dict[str, Any] = {}
        for path in entries:
            rel = PurePosixPath(path).relative_to(self.root).parts if path.startswith(self.root + "/") else ()
            if len(rel) == 3 and rel[0] in _DATASETS and rel[1].startswith(_DATASETS[rel[0]][0] + "="):
                value = rel[1].split("=", 1)[1]
                if ids is None or value in ids:
                    folders.setdefault((rel[0], value), []).append(rel[2])
            elif len(rel) == 2 and rel[0] == "experiments" and rel[1].endswith(".json"):
                records[path] = entries[path]
        manifests = [
            f"{self.root}/{d}/{_DATASETS[d][0]}={v}/{n}"
            for (d, v), names in folders.items()
            for n in names
            if n.endswith(".covers")
        ]
        texts = self.fs.cat(manifests, on_error="omit") if manifests else {}
        out: dict[str, list[str]] = {}
        sums = [self._empty_sum.as_posix()]
        for dataset, (key, _) in _DATASETS.items():
            live: list[str] = []
            raw: list[str] = []
            for (d, value), names in sorted(folders.items()):
                if d != dataset:
                    continue
                base = f"{self.root}/{dataset}/{key}={value}"
                view = resolve(Path(base), names, covers_of=lambda m, b=base: _lines(texts.get(f"{b}/{m}")))
                present = set(names)
                for n in view.live:
                    live.append(f"s3://{base}/{n}" if _is_s3(self.fs) else f"{base}/{n}")
                    side = n[: -len(".parquet")] + ".summary"
                    if n in view.merges and side in present:
                        sums.append(f"s3://{base}/{side}" if _is_s3(self.fs) else f"{base}/{side}")
                    else:
                        raw.append(live[-1])
            schema = self._schemas[dataset]
            out[dataset] = [schema, *(f for f in live if current(f))]
            out[f"{dataset}_legacy"] = [schema, *(f for f in live if not current(f))]
            out[f"{dataset}_raw"] = [schema, *(f for f in raw if current(f))]
            out[f"{dataset}_raw_legacy"] = [schema, *(f for f in raw if not current(f))]
        out["summaries"] = sums
        out["raw_ids"] = []  # the sidecars have no ``_single`` mark: every row is combined
        out["experiments"] = [self._experiments(records)]
        return out

    def _experiments(self, records: dict[str, Any]) -> str:
        """The records as one local Parquet file (records fetched again only when their size moved)."""
        stale = [p for p, size in records.items() if self._records.get(p, (None, None))[0] != size]
        if stale:
            for path, data in self.fs.cat(stale, on_error="omit").items():
                with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                    row = _record_row(orjson.loads(data), PurePosixPath(path).name, 0, records[path])
                    self._records[path] = (records[path], row)
        rows = [self._records[p][1] for p in sorted(records) if p in self._records and self._records[p][1]]
        path = self.scratch / f"experiments-{len(rows)}-{abs(hash(tuple(sorted(records.items()))))}.parquet"
        if not path.exists():
            pq.write_table(pa.Table.from_pylist(rows, schema=EXPERIMENT_SCHEMA), path)
        return path.as_posix()


def _is_s3(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("s3", "s3a")


def _lines(data: bytes | None) -> list[str] | None:
    if data is None:
        return None
    try:
        return [n for n in data.decode().splitlines() if n]
    except UnicodeDecodeError:
        return None


def _schema_file(scratch: Path, dataset: str, schema: pa.Schema) -> str:
    key = _DATASETS[dataset][0]
    p = scratch / dataset / f"{key}={listing.SCHEMA_PARTITION}" / f"schema_0_0_0{FORMAT}.parquet"
    p.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(schema.empty_table(), p)
    return p.as_posix()


def connect_remote(url: str, **storage_options: Any) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose views (``events``, ``metrics``, ``experiments``, ``runs``,
    ``summaries``, ``params``, ``events_of``, ``metrics_of``) read the store at ``url``; each query
    lists it once. Read-only: it never writes there."""
    from .views import _create

    fs, root = remote_fs(url, storage_options)
    scratch = Path(tempfile.mkdtemp(prefix="crucible-remote-"))
    binder = _RemoteBinder(fs, root, scratch)
    con = duckdb.connect(":memory:")
    con.register_filesystem(fs)
    from duckdb.sqltypes import BIGINT, BOOLEAN, UBIGINT, VARCHAR

    lst = duckdb.list_type(VARCHAR)
    con.create_function("ct_files", binder.files, [VARCHAR, UBIGINT], lst, side_effects=True)
    con.create_function("ct_files_of", binder.files_of, [VARCHAR, lst, UBIGINT], lst, side_effects=True)
    con.create_function("ct_gone", lambda host, pid: False, [VARCHAR, BIGINT], BOOLEAN, side_effects=True)
    binder.creating = True
    try:
        _create(con)
    finally:
        binder.creating = False
    return con
