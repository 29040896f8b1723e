"""Immutable Parquet segments, one writer per process, compacted without double reads.

A segment is named ``<proc>_<first>_<last>_<created_ms>.parquet``: ``proc`` is
host-pid-nonce (one per writer), ``[first, last]`` the range of that writer's flush numbers
it holds and ``created_ms`` when it was written. Compaction writes a file whose range covers
several segments. A reader ignores a covering file until it is ``MATURITY_SECONDS`` old and,
once it is, drops every file it covers. Both rules depend only on names and the query's start
time, so a reader that lists the folder twice (DuckDB binds ``read_parquet`` and runs
``glob()`` at different moments) never reads a row twice and never misses one. Covered
files are deleted only after a grace period, long after their cover matured.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..environment import HOSTNAME
from ..experiment import validate_id as validate_partition_value  # noqa: F401  (deprecated spelling)

__all__ = ["SegmentWriter", "live_files", "process_id"]

log = logging.getLogger("crucible_telemetry")

# ``_<created_ms>`` is absent from files of the first releases: such covers count as mature
SEGMENT_RE = re.compile(r"^(?P<proc>.+?)_(?P<a>\d+)_(?P<b>\d+)(?:_(?P<c>\d+))?\.parquet$")
GRACE_SECONDS = 120.0
MATURITY_SECONDS = 5.0  # a covering file is used by readers once this old (clock skew must stay below it)
COMPACT_EVERY = 32  # small segments per partition before they are merged
MERGE_COMPACTED_OVER = 4  # compacted files per partition before they are merged again
# repetitive strings only: dictionary pages on numbers and JSON text cost time and save nothing
_DICT_COLUMNS = [
    "event",
    "category",
    "host",
    "metric",
    "kind",
    "tags",
    "tags.list.element",
    "measurements.key_value.key",
    "tags.key_value.key",
    "tags.key_value.value",
]


def process_id() -> str:
    """A fresh ``host-pid-nonce`` writer id: one per writer and process (a new one after fork)."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", HOSTNAME) or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


@dataclass
class _Seg:
    a: int
    b: int
    path: Path


@dataclass(frozen=True)
class _Name:
    proc: str
    a: int
    b: int
    created: float  # seconds
    path: Path


def _parse(folder: Path, name: str) -> _Name | None:
    m = SEGMENT_RE.match(name)
    if m is None:
        return None
    return _Name(m["proc"], int(m["a"]), int(m["b"]), int(m["c"] or 0) / 1000, folder / name)


def _names(folder: Path) -> dict[str, list[_Name]]:
    groups: dict[str, list[_Name]] = {}
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return groups
    for name in names:
        p = _parse(folder, name)
        if p is not None:
            groups.setdefault(p.proc, []).append(p)
    return groups


def _covers(g: _Name, f: _Name) -> bool:
    return g.a <= f.a and g.b >= f.b and (g.a, g.b) != (f.a, f.b)


_NAME_SQL = r"([^/\\]+?)_(\d+)_(\d+)(?:_(\d+))?\.parquet$"


def visible_files_sql(files_sql: str, now_ms_sql: str = "epoch_ms(now())") -> str:
    """The visibility rule, spelled once: the files a reader starting at ``now`` reads.

    ``files_sql`` is a query with a ``file`` column (``SELECT file FROM glob(...)``). Per folder
    and writer, a single segment is always usable and a covering file once it is
    ``MATURITY_SECONDS`` old; a usable file covered by another usable file is hidden. The
    DuckDB views run this at each query; ``live_files`` runs the same SQL over a listing.
    """
    maturity_ms = int(MATURITY_SECONDS * 1000)
    return f"""
        WITH f AS (
            SELECT file,
                   regexp_extract(file, '^(.*)[/\\\\]', 1) AS folder,
                   regexp_extract(file, '{_NAME_SQL}', 1) AS proc,
                   TRY_CAST(regexp_extract(file, '{_NAME_SQL}', 2) AS BIGINT) AS a,
                   TRY_CAST(regexp_extract(file, '{_NAME_SQL}', 3) AS BIGINT) AS b,
                   TRY_CAST(regexp_extract(file, '{_NAME_SQL}', 4) AS BIGINT) AS c
            FROM ({files_sql})
        ), u AS (
            SELECT * FROM f WHERE a IS NOT NULL AND (a = b OR coalesce(c, 0) <= {now_ms_sql} - {maturity_ms})
        )
        SELECT file FROM u
        WHERE NOT EXISTS (
            SELECT 1 FROM u g
            WHERE g.folder = u.folder AND g.proc = u.proc AND g.a <= u.a AND g.b >= u.b
              AND (g.a <> u.a OR g.b <> u.b)
        )"""


def live_files(folder: Path, now: float | None = None) -> list[Path]:
    """The files of ``folder`` a reader starting at ``now`` reads (``visible_files_sql`` over a listing)."""
    import duckdb

    now = time.time() if now is None else now
    try:
        names = [n for n in os.listdir(folder) if SEGMENT_RE.match(n)]
    except FileNotFoundError:
        return []
    if not names:
        return []
    con = duckdb.connect()
    try:
        con.execute("CREATE TEMP TABLE listing(file VARCHAR)")
        con.executemany("INSERT INTO listing VALUES (?)", [[(folder / n).as_posix()] for n in names])
        rows = con.execute(visible_files_sql("SELECT file FROM listing", str(int(now * 1000)))).fetchall()
    finally:
        con.close()
    return [Path(r[0]) for r in rows]


def _superseded(folder: Path) -> list[tuple[Path, float]]:
    """Files no reader needs once their cover matured, each with the time it became so."""
    out: list[tuple[Path, float]] = []
    try:
        for name in os.listdir(folder):
            if name.endswith(".tmp"):
                try:
                    out.append((folder / name, (folder / name).stat().st_mtime))
                except FileNotFoundError:
                    pass
    except FileNotFoundError:
        return out
    for segs in _names(folder).values():
        for f in segs:
            covers = [g.created for g in segs if _covers(g, f)]
            if covers:
                out.append((f.path, min(covers) + MATURITY_SECONDS))
    return out


class SegmentWriter:
    """Writes one dataset (``events`` or ``metrics``) as hive-partitioned Parquet segments."""

    def __init__(self, home: Path, dataset: str, partition_key: str, schema: pa.Schema) -> None:
        self.root = home / dataset
        self.partition_key = partition_key
        self.schema = schema
        self._lock = threading.Lock()
        self._proc = ""
        self._pid = -1
        self._counter: dict[str, int] = {}
        self._small: dict[str, list[_Seg]] = {}
        self._compacted: dict[str, list[_Seg]] = {}
        self._ensure_schema_file()

    def _ensure_schema_file(self) -> None:
        """An empty segment in a reserved partition, so views have a schema before any data."""
        folder = self.root / f"{self.partition_key}=__schema__"
        path = folder / "schema_0_0_0.parquet"
        if path.exists():
            return
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"schema.{os.getpid()}.{secrets.token_hex(3)}.tmp"
        pq.write_table(self.schema.empty_table(), tmp)
        os.replace(tmp, path)

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held at the fork)."""
        self._lock = threading.Lock()

    def _reset_if_forked(self) -> None:
        if self._pid != os.getpid():  # first use, or a forked child: never reuse the parent's names
            self._pid = os.getpid()
            self._proc = process_id()
            self._counter.clear()
            self._small.clear()
            self._compacted.clear()

    def folder(self, value: str) -> Path:
        """The folder of one partition value."""
        return self.root / f"{self.partition_key}={value}"

    def _write(self, folder: Path, a: int, b: int, table: pa.Table) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self._proc}_{a:010d}_{b:010d}_{time.time_ns() // 1_000_000}.parquet"
        tmp = path.with_name(path.name + f".{secrets.token_hex(3)}.tmp")
        pq.write_table(table, tmp, compression="zstd", row_group_size=256_000, use_dictionary=_DICT_COLUMNS)
        os.replace(tmp, path)
        return path

    def write(self, value: str, table: pa.Table) -> Path:
        """Write one segment for a partition value, compacting when enough have piled up."""
        with self._lock:
            self._reset_if_forked()
            n = self._counter.get(value, 0) + 1
            self._counter[value] = n
            folder = self.folder(value)
            path = self._write(folder, n, n, table)
            small = self._small.setdefault(value, [])
            small.append(_Seg(n, n, path))
            if len(small) >= COMPACT_EVERY:
                self._compact(value)
            return path

    def _merge(self, value: str, segs: list[_Seg]) -> _Seg | None:
        segs = [s for s in segs if s.path.exists()]
        if len(segs) < 2:
            return segs[0] if segs else None
        a = min(s.a for s in segs)
        b = max(s.b for s in segs)
        tables = [pq.read_table(s.path) for s in segs]
        merged = pa.concat_tables(tables, promote_options="default")
        path = self._write(self.folder(value), a, b, merged)
        return _Seg(a, b, path)

    def _compact(self, value: str) -> None:
        try:
            small = self._small.pop(value, [])
            comp = self._compacted.setdefault(value, [])
            seg = self._merge(value, small)
            if seg is not None:
                comp.append(seg)
            if len(comp) > MERGE_COMPACTED_OVER:
                seg = self._merge(value, comp)
                self._compacted[value] = [seg] if seg is not None else []
            self.collect_garbage(value)
        except Exception as exc:  # a failed compaction loses nothing: the segments stay
            log.warning("crucible_telemetry: compaction of %s failed: %r", value, exc)

    def compact(self, value: str | None = None) -> None:
        """Merge this process's segments of one partition (or all) into one file each."""
        with self._lock:
            self._reset_if_forked()
            values = [value] if value is not None else list(set(self._small) | set(self._compacted))
            for v in values:
                self._small[v] = self._compacted.pop(v, []) + self._small.get(v, [])
                self._small[v].sort(key=lambda s: s.a)
                self._compact(v)

    def collect_garbage(self, value: str | None = None, grace: float = GRACE_SECONDS) -> int:
        """Delete covered segments ``grace`` seconds after their cover matured, and stale temp files."""
        folders = (
            [self.folder(value)]
            if value is not None
            else [p for p in self.root.glob(f"{self.partition_key}=*") if p.is_dir()]
        )
        now = time.time()
        removed = 0
        for folder in folders:
            try:
                for path, since in _superseded(folder):
                    if now - since >= grace:
                        try:
                            path.unlink()
                            removed += 1
                        except FileNotFoundError:
                            pass
            except FileNotFoundError:
                continue
        return removed

    def file_count(self) -> int:
        """Segments on disk for this dataset, every process and partition."""
        return sum(1 for _ in self.root.glob(f"{self.partition_key}=*/*.parquet"))
