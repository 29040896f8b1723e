"""Which files of a partition folder a reader reads: one listing, names and manifests only.

Two kinds of data files live in a partition folder:

* segments, ``<proc>_<first>_<last>_<created_ms>.v2.parquet``: one writer's flushes ``first..last``;
  a segment whose range covers another of the same writer hides it (the first releases' compaction);
* merges, ``merge-<created_ms>-<nonce>.v2.parquet``, each with a manifest ``<same stem>.covers``
  naming every file it hides (any writer, earlier merges and what they hid). The manifest is
  renamed into place before the merge, so a merge without its manifest is not finished and is
  ignored, and a merge with one hides its covered files at once.

A reader lists a folder once per query, so the rows it sees are those of the live files of that
one listing: never a row twice, never one missing. Hidden files are deleted ``GRACE_SECONDS``
after the file hiding them was written, far longer than any query. Listings are cached per folder
and trusted while its mtime is unchanged and over ``SETTLE_SECONDS`` old (a coarse filesystem
clock could hide a change made in the same tick). The listings of a whole dataset are kept on disk
too (``catalog/listing-<dataset>.json``), so a new process (a CLI command) starts from them and
lists again only the folders whose mtime moved: one ``stat`` per run instead of a listing.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import orjson

from .schema import FORMAT

__all__ = [
    "GRACE_SECONDS",
    "MERGE_RE",
    "SEGMENT_RE",
    "Listing",
    "current",
    "dataset_files",
    "dataset_listing",
    "list_folder",
    "partitions",
    "touch",
]

# ``_<created_ms>`` is absent from files of the first releases
SEGMENT_RE = re.compile(r"^(?P<proc>.+?)_(?P<a>\d+)_(?P<b>\d+)(?:_(?P<c>\d+))?(?P<v>\.v\d+)?\.parquet$")
MERGE_RE = re.compile(r"^merge-(?P<c>\d+)-(?P<nonce>[0-9a-f]+)(?P<v>\.v\d+)?\.parquet$")
GRACE_SECONDS = 120.0
SETTLE_SECONDS = 2.0
SCHEMA_PARTITION = "__schema__"


class Listing(NamedTuple):
    """One folder at one moment: the live data files (sorted), and each hidden file with the time
    (seconds) the file hiding it was written. A tuple: 10,000 of them load from disk at once."""

    live: tuple[str, ...]
    hidden: dict[str, float]
    merges: tuple[str, ...]  # live merge files (their summaries sit beside them)


def _read_covers(path: Path) -> list[str] | None:
    try:
        return [n for n in path.read_text().splitlines() if n]
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    except OSError:
        return None


def resolve(folder: Path, names: list[str], covers_of: Callable[[str], list[str] | None] | None = None) -> Listing:
    """The live files among ``names`` (one listing of ``folder``); ``covers_of(manifest_name)`` reads a
    manifest where the folder is not local (object storage)."""
    present = set(names)
    hidden: dict[str, float] = {}
    merges: list[str] = []
    data = [n for n in names if _is_data(n)]
    found: list[tuple[float, str, frozenset[str]]] = []  # finished merges: (created, name, what they cover)
    for name in names:
        m = MERGE_RE.match(name)
        if m is None:
            continue
        manifest = name[: -len(".parquet")] + ".covers"
        if manifest not in present:
            continue  # not finished (or its manifest is gone with it): ignore it
        if len(data) == 1:
            found.append((int(m["c"]) / 1000, name, frozenset()))  # nothing else to hide: no need to read it
            continue
        covers = _read_covers(folder / manifest) if covers_of is None else covers_of(manifest)
        if covers is not None:
            found.append((int(m["c"]) / 1000, name, frozenset(c for c in covers if c != name)))
    # Newest first, a merge counts only if no merge taken before covers it or any file it covers: two
    # merges of the same files (made at once where the folder's lock does not reach, as across two
    # mounts of one network filesystem) never both count; what the one left out covers stays live.
    taken: dict[str, float] = {}  # file -> when the merge that took it was made
    for created, name, covers in sorted(found, reverse=True):
        clash = [taken[c] for c in covers if c in taken]
        if name in taken or clash:
            hidden[name] = min(taken.get(name, created), *clash) if clash else taken[name]
            continue
        merges.append(name)
        for c in covers:
            taken[c] = created
    for c, created in taken.items():
        if c in present:
            hidden[c] = min(hidden.get(c, created), created)
    groups: dict[str, list[tuple[int, int, float, str]]] = {}
    for name in names:
        m = SEGMENT_RE.match(name)
        if m is not None and name not in hidden:
            groups.setdefault(m["proc"], []).append((int(m["a"]), int(m["b"]), int(m["c"] or 0) / 1000, name))
    for segs in groups.values():
        if len(segs) < 2:
            continue
        for a, b, _, name in segs:
            for ga, gb, gc, _ in segs:
                if ga <= a and gb >= b and (ga, gb) != (a, b):
                    hidden[name] = min(hidden.get(name, gc), gc)
                    break
    live = sorted(n for n in names if n not in hidden and (MERGE_RE.match(n) is None or n in merges) and _is_data(n))
    return Listing(tuple(live), hidden, tuple(m for m in merges if m not in hidden))


def current(name: str) -> bool:
    """Whether a data file has this release's columns (its name says so: ``schema.FORMAT``)."""
    return name.endswith(FORMAT + ".parquet")


def _is_data(name: str) -> bool:
    return name.endswith(".parquet") and (SEGMENT_RE.match(name) is not None or MERGE_RE.match(name) is not None)


_cache: dict[str, tuple[int, float, Listing]] = {}  # folder -> (mtime_ns, when listed, listing)
_cache_lock = threading.Lock()
_relisted = 0  # folders listed (not served from the cache) so far in this process


def list_folder(folder: Path | str) -> Listing:
    """The live files of one partition folder now (cached while the folder is unchanged and settled)."""
    key = folder if isinstance(folder, str) else str(folder)
    try:
        st = os.stat(key)
    except (FileNotFoundError, NotADirectoryError):
        return Listing((), {}, ())
    now = time.time()
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == st.st_mtime_ns and hit[1] - st.st_mtime_ns / 1e9 > SETTLE_SECONDS:
        return hit[2]
    try:
        names = os.listdir(key)
    except (FileNotFoundError, NotADirectoryError):
        return Listing((), {}, ())
    listing = resolve(Path(key), names)
    global _relisted
    with _cache_lock:
        _relisted += 1
        if len(_cache) > 200_000:
            _cache.clear()
        _cache[key] = (st.st_mtime_ns, now, listing)
    return listing


def partitions(root: Path, key: str) -> list[str]:
    """The partition values under ``root`` (``<key>=<value>`` folders), the schema partition excluded."""
    prefix = f"{key}="
    skip = prefix + SCHEMA_PARTITION
    try:
        names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    n = len(prefix)
    return [name[n:] for name in names if name.startswith(prefix) and name != skip]


def dataset_files(root: Path, key: str, values: list[str] | None = None) -> list[str]:
    """Every live file of a dataset (or of the partitions ``values``), as POSIX paths."""
    out: list[str] = []
    for value in partitions(root, key) if values is None else values:
        folder = root / f"{key}={value}"
        out += [(folder / n).as_posix() for n in list_folder(folder).live]
    return out


_full: dict[str, tuple[int, float, list[tuple[str, Listing]]]] = {}  # root -> (mtime_ns, when, listings)
FULL_MAX_AGE = 10.0  # seconds a whole-dataset listing is reused at most (a change made by hand shows by then)


def touch(folder: Path) -> None:
    """Mark the dataset of a partition folder changed (after a file was placed in it), so readers
    that keep a whole-dataset listing list it again; a no-op where the root cannot be touched."""
    try:
        os.utime(folder.parent)
    except OSError:
        pass


def dataset_listing(root: Path, key: str) -> list[tuple[str, Listing]]:
    """Every partition of a dataset with its listing. Reused while the dataset root is unchanged
    (writers touch it after placing a file), settled, and the listing under ``FULL_MAX_AGE`` old;
    else every partition folder is checked (one stat each, listed again when changed)."""
    rkey = root.as_posix()
    now = time.time()
    try:
        st = os.stat(rkey)
    except (FileNotFoundError, NotADirectoryError):
        return []
    with _cache_lock:
        hit = _full.get(rkey)
    if (
        hit is not None
        and hit[0] == st.st_mtime_ns
        and hit[1] - st.st_mtime_ns / 1e9 > SETTLE_SECONDS
        and now - hit[1] < FULL_MAX_AGE
    ):
        return hit[2]
    saved: dict[str, list[object]] = {}
    if rkey not in _seeded:
        _seeded.add(rkey)
        saved, whole = _load(root, key)
        if whole is not None and _trusted(whole, st.st_mtime_ns, now):
            return _take_whole(rkey, key, saved, st.st_mtime_ns, whole[1])
    before = _relisted
    out = _check_all(rkey, key, partitions(root, key), saved)
    with _cache_lock:
        _full[rkey] = (st.st_mtime_ns, now, out)
    stale = now - _whole_saved.get(rkey, 0.0) > FULL_MAX_AGE / 2  # so that the next process may take it whole
    if (_relisted != before or stale) and now - _saved.get(rkey, 0.0) >= SAVE_EVERY:
        _saved[rkey] = now
        _save(root, key, out, (st.st_mtime_ns, now))
    return out


def _trusted(whole: list[object], root_mtime_ns: int, now: float) -> bool:
    """Whether a saved whole-dataset listing holds as this process's first: checked under
    ``FULL_MAX_AGE`` ago, settled, and the dataset root unchanged since (the rule a process applies
    to its own listings, so a change by hand inside a folder shows as soon)."""
    mtime, checked = whole
    return mtime == root_mtime_ns and checked - root_mtime_ns / 1e9 > SETTLE_SECONDS and now - checked < FULL_MAX_AGE  # type: ignore[operator]


def _take_whole(
    rkey: str, key: str, saved: dict[str, list[object]], mtime_ns: int, checked: float
) -> list[tuple[str, Listing]]:
    out: list[tuple[str, Listing]] = []
    with _cache_lock:
        for value, e in saved.items():
            lst = Listing(tuple(e[2]), e[3], tuple(e[4]))  # type: ignore[arg-type, index, misc]
            _cache.setdefault(f"{rkey}/{key}={value}", (e[0], e[1], lst))  # type: ignore[arg-type, index]
            out.append((value, lst))
        _full[rkey] = (mtime_ns, checked, out)  # aged from the check, not from now
    return out


def _check_all(rkey: str, key: str, values: list[str], saved: dict[str, list[object]]) -> list[tuple[str, Listing]]:
    """``list_folder`` of each partition, with the unchanged ones (the most, in a big store) checked
    in one tight loop: a stat each, against the cache (read without its lock: a dict read is atomic)
    or, for a folder this process has not seen, the listing a process saved (``saved``)."""
    out: list[tuple[str, Listing]] = []
    seeded: dict[str, tuple[int, float, Listing]] = {}
    stat, get, settle = os.stat, _cache.get, SETTLE_SECONDS
    for value in values:
        folder = f"{rkey}/{key}={value}"
        hit = get(folder)
        entry = saved.get(value) if hit is None else None
        if hit is not None or entry is not None:
            try:
                mtime = stat(folder).st_mtime_ns
            except OSError:
                mtime = -1
            if hit is not None:
                if hit[0] == mtime and hit[1] - mtime / 1e9 > settle:
                    out.append((value, hit[2]))
                    continue
            elif entry[0] == mtime and entry[1] - mtime / 1e9 > settle:  # type: ignore[index, operator]
                lst = Listing(tuple(entry[2]), entry[3], tuple(entry[4]))  # type: ignore[arg-type, index, misc]
                seeded[folder] = (mtime, entry[1], lst)  # type: ignore[assignment, index]
                out.append((value, lst))
                continue
        out.append((value, list_folder(folder)))
    if seeded:
        with _cache_lock:
            for folder, hit in seeded.items():
                _cache.setdefault(folder, hit)
    return out


_seeded: set[str] = set()  # dataset roots whose saved listings this process loaded
_whole_saved: dict[str, float] = {}  # dataset root -> when the whole listing on disk was checked
_saved: dict[str, float] = {}  # dataset root -> when this process last saved its listings
SAVE_EVERY = 5.0  # seconds between two saves of one dataset's listings by one process


def _disk(root: Path) -> Path:
    return root.parent / "catalog" / f"listing-{root.name}.json"


def _load(root: Path, key: str) -> tuple[dict[str, list[object]], list[object] | None]:
    """The saved listings of a dataset, by partition value (each is still checked against its folder's
    mtime before it is used), and ``[root mtime_ns, when checked]`` when they were the whole dataset;
    nothing when none, torn, or of another layout."""
    try:
        saved = orjson.loads(_disk(root).read_bytes())
        if not isinstance(saved, dict) or saved.get("version") != 1 or saved.get("key") != key:
            return {}, None
        folders = saved["folders"]
        if not (isinstance(folders, dict) and all(_entry_ok(e) for e in folders.values())):
            return {}, None
        whole = saved.get("whole")
        ok = type(whole) is list and len(whole) == 2 and type(whole[0]) is int and type(whole[1]) is float
        if ok:
            _whole_saved[root.as_posix()] = whole[1]
        return folders, whole if ok else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # orjson's error is a ValueError
        return {}, None  # none yet, damaged or of another release: list the folders


def _entry_ok(e: object) -> bool:
    """A saved folder: ``[mtime_ns, when, live, hidden, merges]`` with those types."""
    return (
        type(e) is list
        and len(e) == 5
        and type(e[0]) is int
        and type(e[1]) is float
        and type(e[2]) is list
        and type(e[3]) is dict
        and type(e[4]) is list
    )


def _save(root: Path, key: str, out: list[tuple[str, Listing]], whole: tuple[int, float]) -> None:
    """Keep this dataset's folder listings for the next process (a cache: no fsync; a torn file is ignored),
    with ``whole`` (root mtime, when checked) if every folder's listing is among them."""
    base = root.as_posix()
    folders: dict[str, list[object]] = {}
    with _cache_lock:
        for value, _ in out:
            hit = _cache.get(f"{base}/{key}={value}")
            if hit is not None and hit[1] - hit[0] / 1e9 > SETTLE_SECONDS:  # only listings a reader may trust
                folders[value] = [hit[0], hit[1], list(hit[2].live), hit[2].hidden, list(hit[2].merges)]
    path = _disk(root)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(exist_ok=True)
        data: dict[str, object] = {"version": 1, "key": key, "folders": folders}
        if len(folders) == len(out):
            data["whole"] = list(whole)
        tmp.write_bytes(orjson.dumps(data))
        os.replace(tmp, path)
        if "whole" in data:
            _whole_saved[root.as_posix()] = whole[1]
    except OSError:  # a read-only store: every process lists for itself
        try:
            tmp.unlink()
        except OSError:
            pass


def forget_all() -> None:
    """Drop every cached listing (a file listed is gone: changed by hand, say), so the next query lists."""
    with _cache_lock:
        _cache.clear()
        _full.clear()


def forget(folder: Path) -> None:
    """Drop a folder's cached listing (after this process changed it)."""
    with _cache_lock:
        _cache.pop(str(folder), None)
        _full.pop(folder.parent.as_posix(), None)
