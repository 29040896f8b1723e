"""The catalog: the experiment records and the merges' summaries, each kept as one Parquet file, so a
query over 10,000 runs reads two files instead of 10,000 records and 20,000 summaries.

The catalog is a cache of the truth (the records and the summaries beside the merges), checked
against it at each use: a record counts when its file's size and mtime match, a summary when its
merge is live in the listing the query made. Files are written under new names
(``<home>/catalog/<kind>-<ms>-<nonce>.parquet``, or a private temporary folder for a read-only
store) and never changed, so a query reading one is never disturbed; old ones are deleted after
the grace period.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .durable import write_parquet
from .listing import GRACE_SECONDS, SETTLE_SECONDS

__all__ = ["EXPERIMENT_SCHEMA", "Catalog", "catalog_for"]

log = logging.getLogger("crucible_telemetry")

_TS = pa.timestamp("us", tz="UTC")
EXPERIMENT_SCHEMA = pa.schema(
    [
        ("experiment_id", pa.string()),
        ("name", pa.string()),
        ("hypothesis", pa.string()),
        ("condition", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("metadata", pa.string()),
        ("status", pa.string()),
        ("started_at", _TS),
        ("stopped_at", _TS),
        ("host", pa.string()),
        ("pid", pa.int64()),
        ("dropped_paused", pa.int64()),
        ("params", pa.string()),
        ("framework", pa.string()),
        ("notes", pa.string()),
        ("environment", pa.string()),
        ("accounting", pa.string()),
        ("_file", pa.string()),
        ("_mtime_ns", pa.int64()),
        ("_size", pa.int64()),
    ]
)


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value, default=repr, option=orjson.OPT_NON_STR_KEYS).decode()
    except Exception:
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError, OverflowError):
        return None


def _record_row(data: dict[str, Any], name: str, mtime_ns: int, size: int) -> dict[str, Any] | None:
    exp_id = data.get("experiment_id")
    if not isinstance(exp_id, str):
        return None
    tags = data.get("tags")
    return {
        "experiment_id": exp_id,
        "name": _text(data.get("name")),
        "hypothesis": _text(data.get("hypothesis")),
        "condition": _text(data.get("condition")),
        "tags": [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
        "metadata": _json(data.get("metadata")),
        "status": _text(data.get("status")),
        "started_at": _ts(data.get("started_at")),
        "stopped_at": _ts(data.get("stopped_at")),
        "host": _text(data.get("host")),
        "pid": _int(data.get("pid")),
        "dropped_paused": _int(data.get("dropped_paused")),
        "params": _json(data.get("params")),
        "framework": _text(data.get("framework")),
        "notes": _text(data.get("notes")),
        "environment": _json(data.get("environment")),
        "accounting": _json(data.get("accounting")),
        "_file": name,
        "_mtime_ns": mtime_ns,
        "_size": size,
    }


class Catalog:
    """The catalog of one store; one per home and process (``catalog_for``), thread-safe."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self._stamp: dict[str, tuple[int, int]] = {}  # record file name -> (mtime_ns, size) of its row
        self._base: pa.Table | None = None  # the rows of the catalog file ``_rec_path``
        self._rec_path: str | None = None
        self._rec_state: tuple[int, float] | None = None  # (folder mtime_ns, when listed)
        self._sum: pa.Table | None = None  # summary rows with a "_file" key column
        self._sum_keys: frozenset[str] = frozenset()
        self._sum_bad: frozenset[str] = frozenset()  # merges whose summary could not be read
        self._sum_path: str | None = None
        self._loaded = False

    # ---------------------------------------------------------------- folders

    def folder(self) -> Path:
        """Where catalog files go: ``<home>/catalog``, or a private temporary folder when read-only."""
        if self._dir is not None:
            return self._dir
        d = self.home / "catalog"
        try:
            d.mkdir(parents=True, exist_ok=True)
            probe = d / f".probe-{os.getpid()}-{secrets.token_hex(3)}"
            probe.touch()
            probe.unlink()
        except OSError:
            digest = hashlib.sha1(str(self.home.resolve()).encode()).hexdigest()[:12]
            d = Path(tempfile.gettempdir()) / f"crucible-catalog-{digest}-{os.getuid() if hasattr(os, 'getuid') else 0}"
            d.mkdir(parents=True, exist_ok=True)
        self._dir = d
        return d

    def _write(self, kind: str, table: pa.Table) -> str:
        d = self.folder()
        path = d / f"{kind}-{time.time_ns() // 1_000_000:013d}-{secrets.token_hex(4)}.parquet"
        write_parquet(table, path, sync_dir=False)
        self._prune(kind, keep=path.name)
        return path.as_posix()

    def _prune(self, kind: str, keep: str) -> None:
        """Delete this kind's older files past the grace, aged on the filesystem's clock (never this
        process's: on a shared folder, a node whose clock runs ahead must not delete what others read)."""
        from .merge import _fs_now, _placed

        now = _fs_now(self.folder())
        if now is None:
            return
        with contextlib.suppress(OSError):
            for name in os.listdir(self.folder()):
                if name.startswith(f"{kind}-") and name != keep:
                    p = self.folder() / name
                    placed = _placed(p)
                    with contextlib.suppress(OSError):
                        if placed is not None and now - placed > GRACE_SECONDS:
                            p.unlink()

    def _latest(self, kind: str) -> Path | None:
        try:
            names = sorted(n for n in os.listdir(self.folder()) if n.startswith(f"{kind}-") and n.endswith(".parquet"))
        except OSError:
            return None
        return self.folder() / names[-1] if names else None

    def _load(self) -> None:
        """Start from the newest catalog files another process left (each row still checked at use)."""
        self._loaded = True
        p = self._latest("experiments")
        if p is not None:
            try:
                t = pq.read_table(p)
                if t.schema.names == EXPERIMENT_SCHEMA.names:
                    cols = (t.column(c).to_pylist() for c in ("_file", "_mtime_ns", "_size"))
                    self._stamp = {f: (m, z) for f, m, z in zip(*cols)}
                    self._base = t
                    self._rec_path = p.as_posix()  # reused as it is while every record still matches its row
            except Exception as exc:  # a damaged catalog is only a slower start
                log.debug("crucible_telemetry: catalog %s unreadable: %r", p, exc)
        p = self._latest("summaries")
        if p is not None:
            try:
                t = pq.read_table(p)
                if "_file" in t.column_names:
                    self._sum = t
                    self._sum_keys = frozenset(pc.unique(t.column("_file")).to_pylist())
                    self._sum_path = p.as_posix()
            except Exception as exc:
                log.debug("crucible_telemetry: catalog %s unreadable: %r", p, exc)

    # ------------------------------------------------------------ experiments

    def experiments(self) -> str:
        """A Parquet file holding every experiment record as of now."""
        folder = self.home / "experiments"
        with self._lock:
            if not self._loaded:
                self._load()
            try:
                st = os.stat(folder)
            except FileNotFoundError:
                st = None
            now = time.time()
            state = self._rec_state
            if (
                st is not None
                and state is not None
                and self._rec_path is not None
                and state[0] == st.st_mtime_ns
                and state[1] - st.st_mtime_ns / 1e9 > SETTLE_SECONDS
                and os.path.exists(self._rec_path)  # another process prunes catalog files after the grace
            ):
                return self._rec_path
            stamps: dict[str, tuple[int, int]] = {}
            fresh: list[dict[str, Any]] = []
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                entries = []
            for e in entries:
                name = e.name
                if not name.endswith(".json") or name.startswith((".", "_")):
                    continue
                try:
                    est = e.stat()
                except FileNotFoundError:
                    continue
                stamp = (est.st_mtime_ns, est.st_size)
                if self._stamp.get(name) == stamp:
                    stamps[name] = stamp
                    continue
                row = self._read_record(folder / name, *stamp)
                if row is not None:
                    fresh.append(row)
            if fresh or len(stamps) != len(self._stamp) or self._rec_path is None or not os.path.exists(self._rec_path):
                parts = [pa.Table.from_pylist(fresh, schema=EXPERIMENT_SCHEMA)]
                if self._base is not None and stamps:
                    keep = pa.array(sorted(stamps), pa.string())
                    parts.insert(0, self._base.filter(pc.is_in(self._base.column("_file"), value_set=keep)))
                table = pa.concat_tables(parts)
                table = table.take(pc.sort_indices(table, [("experiment_id", "ascending")]))
                self._rec_path = self._write("experiments", table)
                self._base = table
                stamps.update({r["_file"]: (r["_mtime_ns"], r["_size"]) for r in fresh})
            self._stamp = stamps
            if st is not None:
                self._rec_state = (st.st_mtime_ns, now)
            assert self._rec_path is not None
            return self._rec_path

    @staticmethod
    def _read_record(path: Path, mtime_ns: int, size: int) -> dict[str, Any] | None:
        try:
            data = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (orjson.JSONDecodeError, OSError):
            data = None
        if not isinstance(data, dict):  # zero-byte, truncated or not an object: set aside, warned once
            from .views import set_aside_record

            set_aside_record(path)
            return None
        return _record_row(data, path.name, mtime_ns, size)

    # -------------------------------------------------------------- summaries

    def summaries(self, merges: dict[str, str]) -> tuple[str, list[str]]:
        """A Parquet file with the summaries of exactly the live ``merges`` (key -> merge path), and the
        keys of those without a readable summary (to be summarised from their rows)."""
        with self._lock:
            if not self._loaded:
                self._load()
            keys = frozenset(merges)
            if keys == self._sum_keys | self._sum_bad and self._sum_path is not None and os.path.exists(self._sum_path):
                return self._sum_path, sorted(self._sum_bad)
            missing = [k for k in merges if k not in self._sum_keys]
            parts: list[pa.Table] = []
            bad: list[str] = []
            for k in missing:
                t = read_sidecar(Path(merges[k]))
                if t is None:
                    bad.append(k)
                    continue
                parts.append(t.append_column("_file", pa.array([k] * t.num_rows, pa.string())))
            base = self._sum
            if base is not None and base.num_rows:
                base = base.filter(pc.is_in(base.column("_file"), value_set=pa.array(sorted(keys), pa.string())))
                parts.insert(0, base)
            from .summaries import empty_partial

            table = pa.concat_tables(parts, promote_options="default") if parts else empty_partial(with_file=True)
            self._sum = table
            self._sum_keys = frozenset(pc.unique(table.column("_file")).to_pylist())
            self._sum_bad = frozenset(bad)
            self._sum_path = self._write("summaries", table)
            return self._sum_path, bad


def read_sidecar(merge: Path) -> pa.Table | None:
    """The summary written beside a merge, or None when it is missing or damaged."""
    side = merge.with_name(merge.name[: -len(".parquet")] + ".summary")
    try:
        return pq.read_table(side)
    except Exception:
        return None


_catalogs: dict[str, Catalog] = {}
_catalogs_lock = threading.Lock()


def catalog_for(home: Path) -> Catalog:
    """This process's catalog of the store at ``home``."""
    key = str(home)
    with _catalogs_lock:
        cat = _catalogs.get(key)
        if cat is None:
            cat = _catalogs[key] = Catalog(home)
        return cat


def _after_fork() -> None:
    for cat in _catalogs.values():
        cat._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
