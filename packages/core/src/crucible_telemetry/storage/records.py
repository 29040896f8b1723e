"""Experiment records: one JSON file per experiment in ``<home>/experiments``, written atomically."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import orjson

from ..experiment import Experiment

__all__ = ["read_record", "write_record"]


def write_record(folder: Path, exp: Experiment) -> None:
    """Write an experiment's JSON so that a crash or power loss leaves the old or the new one, never half.

    Temporary name, fsync, rename, fsync of the folder (records are few and small: the cost is one
    sync per start, pause, resume and stop).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{exp.id}.json"
    tmp = folder / f".{exp.id}.{os.getpid()}.{secrets.token_hex(3)}.tmp"
    data = orjson.dumps(exp.to_json(), default=repr, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform without directory descriptors (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_record(folder: Path, experiment_id: str) -> Experiment | None:
    """Load ``experiments/<id>.json`` or None."""
    try:
        return Experiment.from_json(orjson.loads((folder / f"{experiment_id}.json").read_bytes()))
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError):
        return None  # missing or damaged (a record that is not an object): no experiment
