"""Experiment records: one JSON file per experiment in ``<home>/experiments``, written atomically."""

from __future__ import annotations

from pathlib import Path

import orjson

from ..experiment import Experiment
from .durable import write_bytes

__all__ = ["read_record", "write_record"]


def write_record(folder: Path, exp: Experiment) -> None:
    """Write an experiment's JSON so that a crash or power loss leaves the old or the new one, never half
    (``durable.write_bytes``: records are few and small, the cost is one sync per start, pause, resume
    and stop)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps(exp.to_json(), default=repr, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2)
    write_bytes(folder / f"{exp.id}.json", data)


def read_record(folder: Path, experiment_id: str) -> Experiment | None:
    """Load ``experiments/<id>.json`` or None."""
    try:
        return Experiment.from_json(orjson.loads((folder / f"{experiment_id}.json").read_bytes()))
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError):
        return None  # missing or damaged (a record that is not an object): no experiment
