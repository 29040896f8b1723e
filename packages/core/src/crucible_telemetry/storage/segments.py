"""Immutable Parquet segments, one writer per process, merged without double reads.

A segment is named ``<proc>_<n>_<n>_<created_ms>.v2.parquet``: ``proc`` is host-pid-nonce (one per
writer), ``n`` that writer's flush number in the partition and ``created_ms`` when it was
written. Every ``COMPACT_EVERY`` segments of a partition (on the merger's thread, see ``merger``),
and when its experiment stops, the partition's files (every writer's) are merged into one
(``merge.merge_folder``), with a manifest
naming what it replaces and a summary of its rows. ``listing`` holds the rule readers follow:
one listing per query, a finished merge hides what it covers at once, so no row is read twice
or missed; covered files are deleted ``GRACE_SECONDS`` later. Every file is written to a
temporary name, fsynced and renamed.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..environment import HOSTNAME
from ..experiment import validate_id as validate_partition_value  # noqa: F401  (deprecated spelling)
from . import listing, merge
from .durable import write_parquet
from .listing import GRACE_SECONDS, SEGMENT_RE  # noqa: F401  (their first home)
from .merger import Merger
from .schema import FORMAT

__all__ = ["SegmentWriter", "live_files", "process_id"]

log = logging.getLogger("crucible_telemetry")

COMPACT_EVERY = 32  # small segments of this writer in a partition before the partition is merged


def process_id() -> str:
    """A fresh ``host-pid-nonce`` writer id: one per writer and process (a new one after fork)."""
    host = re.sub(r"[^A-Za-z0-9.-]", "-", HOSTNAME) or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


def live_files(folder: Path) -> list[Path]:
    """The files of ``folder`` a reader listing it now reads."""
    return [folder / n for n in listing.list_folder(folder).live]


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
        self._small: dict[str, int] = {}  # segments written per partition since its last merge
        self.merger = Merger(self._merge_small, dataset)
        self.mirror: Any = None  # a remote.Mirror when the hub's home is on object storage
        self._ensure_schema_file()

    def _ensure_schema_file(self) -> None:
        """An empty segment in a reserved partition, so views have a schema before any data."""
        folder = self.root / f"{self.partition_key}=__schema__"
        path = folder / f"schema_0_0_0{FORMAT}.parquet"
        if path.exists():
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f"schema.{os.getpid()}.{secrets.token_hex(3)}.tmp"
            pq.write_table(self.schema.empty_table(), tmp)
            os.replace(tmp, path)  # empty: nothing a crash could half-write
        except OSError as exc:  # a read-only store: readers make their own schema file
            log.debug("crucible_telemetry: no schema file in %s: %r", folder, exc)

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (the parent's may have been held at the fork), no merger thread."""
        self._lock = threading.Lock()
        self.merger.after_fork()

    def _reset_if_forked(self) -> None:
        if self._pid != os.getpid():  # first use, or a forked child: never reuse the parent's names
            self._pid = os.getpid()
            self._proc = process_id()
            self._counter.clear()
            self._small.clear()

    def folder(self, value: str) -> Path:
        """The folder of one partition value."""
        return self.root / f"{self.partition_key}={value}"

    def _write(self, folder: Path, n: int, table: pa.Table) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self._proc}_{n:010d}_{n:010d}_{time.time_ns() // 1_000_000}{FORMAT}.parquet"
        write_parquet(table, path, data=True)
        return path

    def write(self, value: str, table: pa.Table) -> Path:
        """Write one segment for a partition value, merging the partition when enough have piled up."""
        with self._lock:
            self._reset_if_forked()
            n = self._counter.get(value, 0) + 1
            self._counter[value] = n
            folder = self.folder(value)
            path = self._write(folder, n, table)
            if self.mirror is not None:
                self.mirror.send([path])
            listing.forget(folder)
            listing.touch(folder)
            self._small[value] = self._small.get(value, 0) + 1
            if self._small[value] >= COMPACT_EVERY:
                self._small[value] = 0
                self.merger.ask(value)  # merged on the merger's thread: the flush goes on
            return path

    def _merge_small(self, value: str) -> None:
        """A non-final merge (the small live files of a partition), on the merger's thread."""
        folder = self.folder(value)
        made = merge.merge_folder(folder, final=False, dataset=self.root.name, wait=False)
        if made is not None and self.mirror is not None:
            self.mirror.send_merge(made)
        merge.collect_garbage(folder)

    def _merge_final(self, value: str) -> None:
        try:
            folder = self.folder(value)
            made = merge.merge_folder(folder, final=True, dataset=self.root.name, wait=True, min_files=1)
            if made is not None and self.mirror is not None:
                self.mirror.send_merge(made)
            self._small[value] = 0
            merge.collect_garbage(folder)
        except Exception as exc:  # a failed merge loses nothing: the files stay live
            log.warning("crucible_telemetry: merge of %s failed: %r", value, exc)

    def compact(self, value: str | None = None) -> None:
        """Merge the partition ``value`` (or every partition this process wrote) into one file."""
        with self._lock:
            self._reset_if_forked()
            for v in [value] if value is not None else list(self._counter):
                self.merger.drop(v)
                self._merge_final(v)

    def wait_merges(self, timeout: float | None = None) -> bool:
        """Wait for the background merges asked for so far (tests and benchmarks); False on timeout."""
        return self.merger.wait(timeout)

    def collect_garbage(self, value: str | None = None, grace: float = GRACE_SECONDS) -> int:
        """Delete covered files ``grace`` seconds after their cover was written, and stale temp files."""
        folders = (
            [self.folder(value)]
            if value is not None
            else [p for p in self.root.glob(f"{self.partition_key}=*") if p.is_dir()]
        )
        return sum(merge.collect_garbage(folder, grace) for folder in folders)

    def file_count(self) -> int:
        """Segments on disk for this dataset, every process and partition."""
        return sum(1 for _ in self.root.glob(f"{self.partition_key}=*/*.parquet"))
