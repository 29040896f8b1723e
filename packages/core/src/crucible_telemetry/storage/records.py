"""Experiment records: one JSON file per experiment in ``<home>/experiments``, written atomically."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import orjson

from ..experiment import Experiment

__all__ = ["read_record", "write_record"]


def write_record(folder: Path, exp: Experiment) -> None:
    """Write an experiment's JSON atomically (tmp + rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{exp.id}.json"
    tmp = folder / f".{exp.id}.{os.getpid()}.{secrets.token_hex(3)}.tmp"
    tmp.write_bytes(orjson.dumps(exp.to_json(), default=repr, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2))
    os.replace(tmp, path)


def read_record(folder: Path, experiment_id: str) -> Experiment | None:
    """Load ``experiments/<id>.json`` or None."""
    try:
        return Experiment.from_json(orjson.loads((folder / f"{experiment_id}.json").read_bytes()))
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, ValueError):
        return None
