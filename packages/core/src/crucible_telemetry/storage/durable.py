"""Durable writes: temporary name, fsync, rename (and fsync of the folder), so that a crash or a power
loss leaves the old file or the new one under a live name, never half of one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["DICT_COLUMNS", "fsync_dir", "stage_parquet", "write_bytes", "write_parquet"]

#: Repetitive strings only: dictionary pages on numbers and JSON text cost time and save nothing.
DICT_COLUMNS = [
    "event",
    "category",
    "host",
    "metric",
    "kind",
    "source",
    "name",
    "tags",
    "tags.list.element",
    "measurements.key_value.key",
    "tags.key_value.key",
    "tags.key_value.value",
]


def _tmp(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make the folder's latest renames durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _staged(path: Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` beside ``path`` and fsync it; the temporary file never outlives a failure."""
    tmp = _tmp(path)
    try:
        write(tmp)
        _fsync_file(tmp)
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def _discard(tmp: Path) -> None:
    try:
        tmp.unlink()
    except OSError:
        pass


def _replace_durably(path: Path, write: Callable[[Path], None], sync_dir: bool) -> None:
    """``write(tmp)``, fsync it, rename it to ``path`` (and fsync the folder)."""
    tmp = _staged(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def write_parquet(
    table: pa.Table, path: Path, *, sync_dir: bool = True, data: bool = False, row_group_size: int | None = None
) -> None:
    """Write ``table`` to ``path`` durably; ``data`` uses the segments' settings (zstd, row groups);
    ``row_group_size`` smaller groups, which DuckDB reads on several threads."""

    def write(tmp: Path) -> None:
        if data:
            pq.write_table(table, tmp, compression="zstd", row_group_size=256_000, use_dictionary=DICT_COLUMNS)
        else:
            pq.write_table(table, tmp, compression="zstd", row_group_size=row_group_size)

    _replace_durably(path, write, sync_dir)


def stage_parquet(table: pa.Table, path: Path) -> Path:
    """Write ``table`` with the segments' settings to a temporary name beside ``path`` and fsync it;
    the caller renames it into place (``os.replace``) once what must come first is written."""
    return _staged(
        path,
        lambda tmp: pq.write_table(table, tmp, compression="zstd", row_group_size=256_000, use_dictionary=DICT_COLUMNS),
    )


def write_bytes(path: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Write ``data`` to ``path`` durably."""

    def write(tmp: Path) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    _replace_durably(path, write, sync_dir)
