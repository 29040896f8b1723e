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

from . import delta, listing
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
        return delta.after_merge(folder, _write_merge(folder, table, sorted(covers), dataset))  # never raises


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


def _fs_now(folder: Path) -> float | None:
    """Now on the filesystem's clock: the mtime it stamps on the folder's ``.lock`` written now (the
    file server's on a network mount, the kernel's on a local disk), never this process's own clock
    (a write, not ``utime``: a time given by the process could come from its skewed clock)."""
    try:
        fd = os.open(folder / ".lock", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"\n", 0)
            return os.fstat(fd).st_mtime
        finally:
            os.close(fd)
    except OSError:
        return None


def _placed(path: Path) -> float | None:
    """When a file took its name, on the filesystem's clock (a rename stamps its ctime)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return max(st.st_mtime, st.st_ctime)


def _hidden_since(folder: Path, names: list[str], hidden: dict[str, float]) -> dict[str, float]:
    """Each hidden file with when its first cover was placed, on the filesystem's clock (not the name
    stamp of the writer's clock: another node's clock may be minutes ahead or behind)."""
    present = set(names)
    since: dict[str, float] = {}

    def note(name: str, cover: str) -> None:
        t = _placed(folder / cover)
        if name in hidden and t is not None:
            since[name] = min(since.get(name, t), t)

    for cover in names:
        if listing.MERGE_RE.match(cover) and (stem := cover[: -len(".parquet")]) + ".covers" in present:
            for name in listing._read_covers(folder / (stem + ".covers")) or []:
                if name != cover:
                    note(name, cover)
    for name in hidden:
        m = listing.SEGMENT_RE.match(name)
        if m is None:
            continue
        for other in names:
            g = listing.SEGMENT_RE.match(other)
            same = g is not None and g["proc"] == m["proc"] and other != name
            if same and g and int(g["a"]) <= int(m["a"]) and int(g["b"]) >= int(m["b"]):
                note(name, other)
    return since


def collect_garbage(folder: Path, grace: float = listing.GRACE_SECONDS) -> int:
    """Delete files hidden for over ``grace`` seconds (with a merge's manifest and summary), and stale
    temporary files; returns how many data files went. Ages are measured on the filesystem's clock
    alone (``_fs_now`` against when the cover was placed), so a node whose clock is ahead never
    deletes a file a reader may still be opening."""
    names = _names(folder)
    if not names:
        return 0
    removed = 0
    with _folder_lock(folder, wait=False) as locked:
        if not locked:
            return 0
        now = _fs_now(folder)
        if now is None:
            return 0  # a read-only store (or no lock file): nothing can be deleted anyway
        view = listing.resolve(folder, names)
        since = _hidden_since(folder, names, view.hidden) if grace > 0 else dict.fromkeys(view.hidden, now)
        for name in view.hidden:
            if name not in since or now - since[name] < grace:
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
