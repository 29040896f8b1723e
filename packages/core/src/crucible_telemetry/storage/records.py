"""Experiment records: one JSON file per experiment in ``<home>/experiments``, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from ..experiment import Experiment
from .durable import write_bytes

__all__ = ["MIRRORS", "read_record", "write_record"]

#: Records folder -> the mirror that sends it to a remote home (see ``remote.Mirror``).
MIRRORS: dict[str, Any] = {}


def write_record(folder: Path, exp: Experiment) -> None:
    """Write an experiment's JSON so that a crash or power loss leaves the old or the new one, never half
    (``durable.write_bytes``: records are few and small, the cost is one sync per start, pause, resume
    and stop)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(exp.to_json(), default=repr, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2)
    write_bytes(folder / f"{exp.id}.json", data)
    mirror = MIRRORS.get(str(folder))
    if mirror is not None:
        mirror.send([folder / f"{exp.id}.json"])


def read_record(folder: Path, experiment_id: str) -> Experiment | None:
    """Load ``experiments/<id>.json`` or None (from the remote home first, when the folder mirrors one)."""
    mirror = MIRRORS.get(str(folder))
    if mirror is not None:
        mirror.fetch(folder / f"{experiment_id}.json")
    try:
        return Experiment.from_json(orjson.loads((folder / f"{experiment_id}.json").read_bytes()))
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError):
        return None  # missing or damaged (a record that is not an object): no experiment
