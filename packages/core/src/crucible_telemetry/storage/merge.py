"""Merging a partition's files (every writer's) into one, with its manifest and its summary.

``merge_folder`` takes the folder's lock (``.lock``, ``flock``: one merger at a time per folder,
across processes; a busy lock means someone else is merging, so it returns), lists the live files,
and writes ``merge-<ms>-<nonce>.v2.parquet`` holding their rows, its ``.covers`` manifest (renamed
first) and its ``.summary`` (the per-run summary of those rows, see ``summaries``). Every step
writes a temporary name, fsyncs and renames, so a crash leaves the old files live, never a half.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import listing
from .durable import fsync_dir, stage_parquet, write_bytes, write_parquet
from .schema import FORMAT, with_standard_columns

__all__ = ["SMALL_BYTES", "collect_garbage", "merge_folder"]

log = logging.getLogger("crucible_telemetry")

SMALL_BYTES = 16 * 1024 * 1024  # a live file under this size is merged again by a non-final merge
MAX_MERGE_BYTES = 512 * 1024 * 1024  # one merge reads at most this much (a final merge may write several)


@contextlib.contextmanager
def _folder_lock(folder: Path, wait: bool) -> Iterator[bool]:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): one process per store is then the rule
        yield True
        return
    try:
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield False  # a read-only store: nothing to merge
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def merge_folder(
    folder: Path, *, final: bool, dataset: str = "events", wait: bool = False, min_files: int = 2
) -> Path | None:
    """Merge the live files of ``folder`` (all when ``final``, else only the small ones) into one file.

    Returns the merge written, or None when there was nothing to merge or another process holds the
    folder's lock. Never loses a row: the merged files stay until ``collect_garbage`` removes them.
    """
    with _folder_lock(folder, wait) as locked:
        if not locked:
            return None
        listing.forget(folder)
        now = listing.resolve(folder, _names(folder))
        sizes = {n: _size(folder / n) for n in now.live}
        chosen = [n for n in now.live if sizes[n] is not None and (final or sizes[n] < SMALL_BYTES)]
        chosen.sort(key=lambda n: -1 if listing.MERGE_RE.match(n) else 0)
        total, picked = 0, []
        for n in chosen:
            if picked and total + (sizes[n] or 0) > MAX_MERGE_BYTES:
                break
            picked.append(n)
            total += sizes[n] or 0
        if len(picked) < min_files or (final and len(picked) == 1 and _summarised_merge(folder, picked[0])):
            return None
        tables = [pq.read_table(folder / n, partitioning=None) for n in picked]
        table = pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]
        if dataset == "events" and not all(listing.current(n) for n in picked):
            table = with_standard_columns(table)  # files of an older release: upgraded here
        covers = set(picked) | {h for h in now.hidden}
        return _write_merge(folder, table, sorted(covers), dataset)


def _summarised_merge(folder: Path, name: str) -> bool:
    return listing.MERGE_RE.match(name) is not None and (folder / (name[: -len(".parquet")] + ".summary")).exists()


def _write_merge(folder: Path, table: pa.Table, covers: list[str], dataset: str) -> Path:
    """Summary and data at once (DuckDB and Parquet's writer both leave the GIL), then the summary,
    the manifest, and last the data under its name: a merge is whole once readers can see it."""
    from .summaries import summarize_table

    stem = f"merge-{time.time_ns() // 1_000_000}-{secrets.token_hex(4)}{FORMAT}"
    made: dict[str, Any] = {}

    def summarise() -> None:
        try:
            made["summary"] = summarize_table(table, dataset, folder.name.split("=", 1)[-1])
        except BaseException as exc:  # raised again in the merging thread
            made["error"] = exc

    worker = threading.Thread(target=summarise, name="crucible-merge-summary", daemon=True)
    worker.start()
    path = folder / f"{stem}.parquet"
    try:
        tmp = stage_parquet(table, path)
    finally:
        worker.join()
    try:
        if "error" in made:
            raise made["error"]
        write_parquet(made["summary"], folder / f"{stem}.summary", sync_dir=False)
        write_bytes(folder / f"{stem}.covers", ("\n".join(covers) + "\n").encode(), sync_dir=False)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(folder)
    listing.forget(folder)
    listing.touch(folder)
    return path


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def collect_garbage(folder: Path, grace: float = listing.GRACE_SECONDS) -> int:
    """Delete files hidden for over ``grace`` seconds (with a merge's manifest and summary), and stale
    temporary files; returns how many data files went."""
    names = _names(folder)
    if not names:
        return 0
    now = time.time()
    removed = 0
    with _folder_lock(folder, wait=False) as locked:
        if not locked:
            return 0
        view = listing.resolve(folder, names)
        for name, since in view.hidden.items():
            if now - since < grace:
                continue
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
                removed += 1
            if listing.MERGE_RE.match(name):
                stem = name[: -len(".parquet")]
                for ext in (".summary", ".covers"):
                    with contextlib.suppress(FileNotFoundError):
                        (folder / (stem + ext)).unlink()
        for name in names:
            if ".tmp" in name:
                with contextlib.suppress(FileNotFoundError, OSError):
                    if now - (folder / name).stat().st_mtime >= grace:
                        (folder / name).unlink()
            elif name.endswith(".covers") and (name[: -len(".covers")] + ".parquet") not in names:
                # a manifest whose merge never landed (a crash between the two renames)
                with contextlib.suppress(FileNotFoundError, OSError):
                    if now - (folder / name).stat().st_mtime >= grace:
                        (folder / name).unlink()
        listing.forget(folder)
    return removed
