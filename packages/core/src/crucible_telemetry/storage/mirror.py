"""A live home on object storage: a hub writes a local spool and its ``Mirror`` sends each file there as
it is written (segments at their flush, merges, records), so many nodes write one remote store."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb

from . import listing
from .remote import connect_remote, remote_fs

__all__ = ["Mirror", "spool_for"]

log = logging.getLogger("crucible_telemetry")


def spool_for(url: str) -> Path:
    """The local folder a hub whose home is ``url`` writes first (``$CRUCIBLE_SPOOL`` or
    ``~/.cache/crucible/spool``, one folder per URL)."""
    import hashlib

    base = Path(os.environ.get("CRUCIBLE_SPOOL") or Path.home() / ".cache" / "crucible" / "spool")
    return base / hashlib.sha1(url.encode()).hexdigest()[:16]


class Mirror:
    """Sends what a hub writes in its local spool to the remote home as it is written: each segment
    with one PUT under its final name, a merge's summary and manifest before its data, the records
    as they change. A failed upload is kept and sent again before the next one (counted in
    ``stats``); nothing raises into the caller."""

    def __init__(self, url: str, spool: Path, **storage_options: Any) -> None:
        self.url = url
        self.spool = spool
        self.fs, self.root = remote_fs(url, storage_options)
        self._lock = threading.Lock()
        self._pending: list[Path] = []
        self._doomed: list[tuple[float, list[str]]] = []  # (monotonic deadline, remote objects a merge covers)
        self.grace = listing.GRACE_SECONDS
        self.stats = {"sent": 0, "bytes": 0, "failed": 0, "pending": 0, "deleted": 0}

    def remote_path(self, local: Path) -> str:
        return f"{self.root}/{local.relative_to(self.spool).as_posix()}"

    def send(self, paths: list[Path]) -> None:
        """Upload ``paths`` in order, after any earlier ones that failed."""
        with self._lock:
            self._purge()
            queue = [*self._pending, *paths]
            self._pending = []
            for i, p in enumerate(queue):
                try:
                    size = p.stat().st_size
                except FileNotFoundError:
                    continue  # collected meanwhile: the merge covering it is sent instead
                try:
                    self.fs.put_file(str(p), self.remote_path(p))
                except Exception as exc:  # the network or the server: kept, sent again later
                    self.stats["failed"] += 1
                    self._pending = queue[i:]
                    if self.stats["failed"] == 1:
                        log.warning("crucible_telemetry: upload to %s failed (%r); kept and sent again", self.url, exc)
                    break
                self.stats["sent"] += 1
                self.stats["bytes"] += size
            self.stats["pending"] = len(self._pending)

    def send_merge(self, data: Path) -> None:
        """Send a merge (summary, manifest, then data); what it covers is deleted there ``grace``
        seconds later by this process, on its own monotonic clock: no other node's clock is judged,
        and no other node's object is touched (a merge covers only this spool's files)."""
        stem = data.name[: -len(".parquet")]
        self.send([data.with_name(stem + ".summary"), data.with_name(stem + ".covers"), data])
        try:
            covered = [n for n in data.with_name(stem + ".covers").read_text().splitlines() if n and n != data.name]
        except OSError:
            return
        doomed: list[str] = []
        for n in covered:
            doomed.append(self.remote_path(data.with_name(n)))
            if listing.MERGE_RE.match(n):
                doomed += [
                    self.remote_path(data.with_name(n[: -len(".parquet")] + ext)) for ext in (".summary", ".covers")
                ]
        with self._lock:
            self._doomed.append((time.monotonic() + self.grace, doomed))

    def _purge(self) -> None:
        """Delete the covered objects whose grace is over (a failure is tried again at the next send)."""
        now = time.monotonic()
        due = [d for d in self._doomed if d[0] <= now]
        if not due:
            return
        self._doomed = [d for d in self._doomed if d[0] > now]
        for entry in due:
            try:
                self.fs.rm([p for p in entry[1]])
                self.stats["deleted"] += len(entry[1])
            except FileNotFoundError:
                pass
            except Exception:
                self._doomed.append(entry)

    def collect(self) -> None:
        """Delete now what is due (the next send does it too)."""
        with self._lock:
            self._purge()

    def fetch(self, local: Path) -> bool:
        """Copy one remote object (a record another node wrote) into the spool; False when absent."""
        try:
            data = self.fs.cat_file(self.remote_path(local))
        except (FileNotFoundError, OSError):
            return False
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f"{local.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, local)
        return True

    def fetch_records(self, folder: Path) -> None:
        """Bring every remote record into the spool (the store's experiments, from every node)."""
        prefix = self.remote_path(folder)
        try:
            found = self.fs.find(prefix, detail=True)
        except (FileNotFoundError, OSError):
            return
        wanted = [k for k, v in found.items() if str(k).endswith(".json")]
        local_sizes = {p.name: p.stat().st_size for p in folder.glob("*.json")} if folder.is_dir() else {}
        stale = [k for k in wanted if local_sizes.get(PurePosixPath(k).name) != int(found[k].get("size") or -1)]
        if stale:
            folder.mkdir(parents=True, exist_ok=True)
            for key, data in self.fs.cat(stale, on_error="omit").items():
                target = folder / PurePosixPath(key).name
                tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, target)

    def connect(self) -> duckdb.DuckDBPyConnection:
        return connect_remote(self.url)
