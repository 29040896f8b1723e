"""The file lists the views read, made once per query when it binds (DuckDB calls ``ct_files``).

Each view's ``read_parquet`` takes ``ct_files(kind, txid_current())``: a Python function of this
module, so every query lists the store itself, once (all views of one query share one snapshot,
keyed by its transaction). ``events_of(ids)`` and ``metrics_of(ids)`` list only the partitions
of those runs, so their cost follows the question, not the store (``WHERE experiment_id = ?`` on
the plain view lists every partition; DuckDB then opens only the matching files). Damaged files
are left out (and set aside), so one bad file never fails a query.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from ..environment import HOSTNAME
from .catalog import catalog_for
from .listing import SCHEMA_PARTITION, current, dataset_listing, list_folder
from .schema import EVENTS_SCHEMA, FORMAT, METRICS_SCHEMA
from .summaries import empty_partial
from .views import sound_files

__all__ = ["KINDS", "install", "run_files"]

#: ``<dataset>`` lists files of this release's columns, ``<dataset>_legacy`` older ones (read by
#: name); ``_raw`` the files not summarised yet (a live run's segments).
_DATA_KINDS = [f"{d}{raw}{old}" for d in ("events", "metrics") for raw in ("", "_raw") for old in ("", "_legacy")]
KINDS = (*_DATA_KINDS, "summaries", "experiments")
_DATASETS = {"events": ("experiment_id", EVENTS_SCHEMA), "metrics": ("run_id", METRICS_SCHEMA)}
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+@-]{0,199}\Z")
_schema_lock = threading.Lock()


def _schema_file(home: Path, dataset: str) -> str:
    """The empty segment that gives a view its columns before any data (made where it can be)."""
    key, schema = _DATASETS[dataset]
    path = home / dataset / f"{key}={SCHEMA_PARTITION}" / f"schema_0_0_0{FORMAT}.parquet"
    if path.exists():
        return path.as_posix()
    with _schema_lock:
        for base in (home / dataset, catalog_for(home).folder() / dataset):
            p = base / f"{key}={SCHEMA_PARTITION}" / f"schema_0_0_0{FORMAT}.parquet"
            if p.exists():
                return p.as_posix()
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
                tmp = p.with_name(f"schema.{os.getpid()}.{threading.get_ident()}.tmp")
                pq.write_table(schema.empty_table(), tmp)
                os.replace(tmp, p)
                return p.as_posix()
            except OSError:
                continue
    raise OSError(f"cannot write a schema file for {home / dataset}")


def _empty_summaries(home: Path) -> str:
    p = catalog_for(home).folder() / "schema-summaries-2.parquet"  # 2: with the ``_single`` column
    if not p.exists():
        with _schema_lock:
            if not p.exists():
                tmp = p.with_name(f"schema-summaries-2.{os.getpid()}.{threading.get_ident()}.tmp")
                pq.write_table(empty_partial(with_single=True), tmp)
                os.replace(tmp, p)
    return p.as_posix()


def _empty_experiments(home: Path) -> str:
    from .catalog import EXPERIMENT_SCHEMA

    p = catalog_for(home).folder() / "schema-experiments.parquet"
    if not p.exists():
        with _schema_lock:
            if not p.exists():
                tmp = p.with_name(f"schema-experiments.{os.getpid()}.{threading.get_ident()}.tmp")
                pq.write_table(EXPERIMENT_SCHEMA.empty_table(), tmp)
                os.replace(tmp, p)
    return p.as_posix()


class _Binder:
    """One connection's snapshots: the lists of the query binding now."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._key: Any = None
        self._lists: dict[str, list[str]] = {}
        self._memo: dict[str, tuple[tuple[Any, ...], dict[str, list[str]], list[str]]] = {}
        self.creating = False  # while the views are created: their columns only, from the schema files

    def _schema_only(self, kind: str) -> list[str]:
        if kind == "experiments":
            return [_empty_experiments(self.home)]
        if kind == "summaries":
            return [_empty_summaries(self.home)]
        if kind == "raw_ids":
            return []
        return [_schema_file(self.home, kind.split("_")[0])]

    def files(self, kind: str, tx: int | None) -> list[str]:
        if self.creating:
            return self._schema_only(kind)
        key = (tx, "all")
        if key != self._key or tx is None:
            self._key, self._lists = key, {}
        if kind not in self._lists:
            self._fill(kind, None)
        return self._lists[kind]

    def files_of(self, kind: str, ids: list[str] | None, tx: int | None) -> list[str]:
        if self.creating:
            return self._schema_only(kind)
        wanted = sorted({i for i in ids or [] if isinstance(i, str) and _ID_RE.fullmatch(i)})
        key = (tx, "of", tuple(wanted))
        if key != self._key or tx is None:
            self._key, self._lists = key, {}
        if kind not in self._lists:
            self._fill(kind, wanted)
        return self._lists[kind]

    def _fill(self, kind: str, ids: list[str] | None) -> None:
        if kind == "experiments":
            self._lists[kind] = [catalog_for(self.home).experiments()]
            return
        data = kind.split("_")[0] in _DATASETS and "_raw" not in kind  # else a summaries kind
        memo_key = kind.split("_")[0] if data else "summaries"
        inputs: tuple[Any, ...] = ()
        if ids is None:  # the whole store: reuse the last lists while the listings are the same objects
            names = (memo_key,) if data else tuple(_DATASETS)
            inputs = tuple(dataset_listing(self.home / d, _DATASETS[d][0]) for d in names)
            hit = self._memo.get(memo_key)
            if hit is not None and all(a is b for a, b in zip(hit[0], inputs)) and all(map(os.path.exists, hit[2])):
                self._lists.update(hit[1])
                return
        before = dict(self._lists)
        if data:
            self._split(memo_key, "", sound_files(_live(self.home, memo_key, ids)))
        else:
            self._summaries(ids)
        if ids is None:
            made = {k: v for k, v in self._lists.items() if before.get(k) is not v}
            catalog_files = self._lists.get("summaries", [])[1:] if not data else []
            self._memo[memo_key] = (inputs, made, catalog_files)

    def _split(self, dataset: str, raw: str, files: list[str]) -> None:
        """Both lists of one dataset: this release's files and older ones, each led by the schema file."""
        schema = _schema_file(self.home, dataset)
        self._lists[f"{dataset}{raw}"] = [schema, *(f for f in files if current(f))]
        self._lists[f"{dataset}{raw}_legacy"] = [schema, *(f for f in files if not current(f))]

    def _summaries(self, ids: list[str] | None) -> None:
        merges: dict[str, str] = {}
        raw: dict[str, list[str]] = {"events": [], "metrics": []}
        for dataset, (key, _) in _DATASETS.items():
            root = self.home / dataset
            base = root.as_posix()
            for value, view in _listings(root, key, ids):
                folder = f"{base}/{key}={value}"
                if view.merges:
                    merged = set(view.merges)
                    raw[dataset] += [f"{folder}/{n}" for n in view.live if n not in merged]
                    for n in view.merges:
                        merges[f"{dataset}/{value}/{n}"] = f"{folder}/{n}"
                else:
                    raw[dataset] += [f"{folder}/{n}" for n in view.live]
        sums = [_empty_summaries(self.home)]
        bad: list[str] = []
        self._lists["raw_ids"] = sorted(
            {p.rsplit("/", 2)[1].split("=", 1)[1] for d in _DATASETS for p in raw[d]} | {k.split("/")[1] for k in bad}
        )
        if ids is None:
            path, bad = catalog_for(self.home).summaries(merges)
            sums.append(path)
        else:
            for k, p in merges.items():
                side = p[: -len(".parquet")] + ".summary"
                if os.path.exists(side):
                    sums.append(side)
                else:
                    bad.append(k)
        for k in bad:
            raw[k.split("/", 1)[0]].append(merges[k])
        self._lists["summaries"] = sums
        for dataset in _DATASETS:
            self._split(dataset, "_raw", sound_files(raw[dataset]))


def run_files(home: Path, dataset: str, exp_id: str) -> tuple[list[str], list[str]] | None:
    """The files one run's rows are in now, as ``events_of([id])`` reads them: this release's, led by
    the schema file, and older ones; None for an id that is not a partition name."""
    if not _ID_RE.fullmatch(exp_id):
        return None
    files = sound_files(_live(home, dataset, [exp_id]))
    schema = _schema_file(home, dataset)
    return [schema, *(f for f in files if current(f))], [f for f in files if not current(f)]


def _live(home: Path, dataset: str, ids: list[str] | None) -> list[str]:
    """The live files of the dataset's partitions ``ids`` (every partition for None), as paths."""
    key = _DATASETS[dataset][0]
    root = home / dataset
    base = root.as_posix()
    out: list[str] = []
    for value, view in _listings(root, key, ids):
        folder = f"{base}/{key}={value}"
        out += [f"{folder}/{n}" for n in view.live]
    return out


def _listings(root: Path, key: str, ids: list[str] | None) -> list[tuple[str, Any]]:
    if ids is None:
        return dataset_listing(root, key)
    base = root.as_posix()
    return [(value, list_folder(f"{base}/{key}={value}")) for value in ids]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _gone(host: str | None, pid: int | None) -> bool:
    """Whether the process that started a run is known to be gone (same host, no such pid)."""
    return bool(host == HOSTNAME and pid and pid > 0 and pid != os.getpid() and not _alive(int(pid)))


def install(con: duckdb.DuckDBPyConnection, home: Path) -> _Binder:
    """Register this store's file functions on ``con`` (``ct_files``, ``ct_files_of``, ``ct_gone``)."""
    from duckdb.sqltypes import BIGINT, BOOLEAN, UBIGINT, VARCHAR

    binder = _Binder(home)
    lst = duckdb.list_type(VARCHAR)
    for name in ("ct_files", "ct_files_of", "ct_gone"):
        try:
            con.remove_function(name)
        except Exception:
            pass
    con.create_function("ct_files", binder.files, [VARCHAR, UBIGINT], lst, side_effects=True)
    con.create_function("ct_files_of", binder.files_of, [VARCHAR, lst, UBIGINT], lst, side_effects=True)
    con.create_function("ct_gone", _gone, [VARCHAR, BIGINT], BOOLEAN, side_effects=True)
    return binder
