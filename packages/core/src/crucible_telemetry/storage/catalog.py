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
        self._sum_digest: str | None = None  # of the merge keys ``_sum_path`` holds, when known
        self._sum_for: frozenset[str] | None = None  # those keys, once a query found them
        self._loaded: set[str] = set()  # kinds whose newest catalog file this process has loaded
        self._states: dict[str, dict[str, Any]] = {}  # kind -> the state file as last read or written

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
        write_parquet(table, path, sync_dir=False, row_group_size=16_384)  # 3x faster to read than one group
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

    # ------------------------------------------------------------ state files

    def _state(self, kind: str) -> dict[str, Any]:
        """What the last process to check this kind found (``state-<kind>.json``): its catalog file and
        what it checked it against, so a new process (a CLI command) that finds the same needs no scan."""
        if kind not in self._states:
            try:
                data = orjson.loads((self.folder() / f"state-{kind}.json").read_bytes())
                ok = isinstance(data, dict) and isinstance(data.get("path"), str) and "/" not in data["path"]
                self._states[kind] = data if ok else {}
            except (OSError, ValueError):
                self._states[kind] = {}
        return self._states[kind]

    def _save_state(self, kind: str, state: dict[str, Any]) -> None:
        """Keep ``state`` for the next process (a cache: no fsync; a torn or foreign file is ignored)."""
        if self._states.get(kind) == state:
            return
        self._states[kind] = state
        path = self.folder() / f"state-{kind}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            tmp.write_bytes(orjson.dumps(state))
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _load(self, kind: str) -> None:
        """Start from the newest catalog file of ``kind`` another process left (rows checked at use)."""
        if kind in self._loaded:
            return
        self._loaded.add(kind)
        if kind == "experiments":
            self._load_experiments()
        else:
            self._load_summaries()

    def _load_experiments(self) -> None:
        p = self._latest("experiments")
        if p is not None:
            try:
                t = pq.ParquetFile(p).read()  # not read_table: it loads pyarrow.dataset, and that pandas
                if t.schema.names == EXPERIMENT_SCHEMA.names:
                    cols = (t.column(c).to_pylist() for c in ("_file", "_mtime_ns", "_size"))
                    self._stamp = {f: (m, z) for f, m, z in zip(*cols)}
                    self._base = t
                    self._rec_path = p.as_posix()  # reused as it is while every record still matches its row
            except Exception as exc:  # a damaged catalog is only a slower start
                log.debug("crucible_telemetry: catalog %s unreadable: %r", p, exc)

    def _load_summaries(self) -> None:
        p = self._latest("summaries")
        if p is not None:
            try:
                t = pq.ParquetFile(p).read()
                if "_file" in t.column_names:
                    self._sum = t
                    self._sum_keys = frozenset(pc.unique(t.column("_file")).to_pylist())
                    self._sum_path = p.as_posix()
                    self._sum_digest, self._sum_bad, self._sum_for = None, frozenset(), None
            except Exception as exc:
                log.debug("crucible_telemetry: catalog %s unreadable: %r", p, exc)

    # ------------------------------------------------------------ experiments

    def experiments(self) -> str:
        """A Parquet file holding every experiment record as of now."""
        folder = self.home / "experiments"
        with self._lock:
            if self._rec_state is None and "experiments" not in self._loaded:
                saved = self._state("experiments")
                if isinstance(saved.get("mtime_ns"), int) and isinstance(saved.get("when"), float):
                    self._rec_path = (self.folder() / saved["path"]).as_posix()
                    self._rec_state = (saved["mtime_ns"], saved["when"])
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
            if "experiments" not in self._loaded:
                self._rec_path, self._rec_state = None, None  # the saved state did not hold: from the file
                self._load("experiments")
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
                if now - st.st_mtime_ns / 1e9 > SETTLE_SECONDS:  # only a state a reader may trust
                    name = Path(self._rec_path).name
                    self._save_state("experiments", {"path": name, "mtime_ns": st.st_mtime_ns, "when": now})
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
            keys = frozenset(merges)
            if keys == self._sum_for and self._sum_path is not None and os.path.exists(self._sum_path):
                return self._sum_path, sorted(self._sum_bad)  # the same merges as the last query (no digest)
            digest = hashlib.blake2b("\n".join(sorted(merges)).encode(), digest_size=16).hexdigest()
            if "summaries" not in self._loaded and self._sum_path is None:
                saved = self._state("summaries")
                if saved.get("digest") == digest and isinstance(saved.get("bad"), list):
                    path = (self.folder() / saved["path"]).as_posix()
                    if os.path.exists(path):  # what the last process found: no need to read the file
                        self._sum_path, self._sum_digest = path, digest
                        self._sum_bad = frozenset(b for b in saved["bad"] if isinstance(b, str))
            if digest == self._sum_digest and self._sum_path is not None and os.path.exists(self._sum_path):
                self._sum_for = keys
                return self._sum_path, sorted(self._sum_bad)
            self._load("summaries")
            if keys == self._sum_keys | self._sum_bad and self._sum_path is not None and os.path.exists(self._sum_path):
                self._sum_digest, self._sum_for = digest, keys
                self._save_state(
                    "summaries", {"path": Path(self._sum_path).name, "digest": digest, "bad": sorted(self._sum_bad)}
                )
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
            from .summaries import empty_partial, mark_single

            table = pa.concat_tables(parts, promote_options="default") if parts else empty_partial(with_file=True)
            table = mark_single(table)
            self._sum = table
            self._sum_keys = frozenset(pc.unique(table.column("_file")).to_pylist())
            self._sum_bad = frozenset(bad)
            self._sum_path = self._write("summaries", table)
            self._sum_digest, self._sum_for = digest, keys
            self._save_state("summaries", {"path": Path(self._sum_path).name, "digest": digest, "bad": sorted(bad)})
            return self._sum_path, bad


def read_sidecar(merge: Path) -> pa.Table | None:
    """The summary written beside a merge, or None when it is missing or damaged."""
    side = merge.with_name(merge.name[: -len(".parquet")] + ".summary")
    try:
        return pq.ParquetFile(side).read()
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
