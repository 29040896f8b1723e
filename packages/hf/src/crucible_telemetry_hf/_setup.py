"""Which experiment a Trainer run records into, shared by every process of a distributed run.

Order: an explicit ``experiment_id``, then ``$CRUCIBLE_EXPERIMENT_ID``, then the experiment
live in the caller's context (reused, never stopped by us), then the experiment a resumed
checkpoint was recorded in, then a new one. Under torch.distributed, rank 0 decides and
broadcasts the id, so every rank records into one experiment record.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any

from crucible_telemetry import Experiment, Telemetry, UnknownExperimentError
from crucible_telemetry.experiment import RUNNING, STOPPED

__all__ = ["MARKER", "find_in_stack", "read_marker", "resolve_experiment", "write_marker"]

log = logging.getLogger("crucible_telemetry.hf")

MARKER = "crucible_telemetry.json"
ENV_ID = "CRUCIBLE_EXPERIMENT_ID"


def find_in_stack(local: str, accept: Any, depth: int = 12) -> Any:
    """The first value of the local variable ``local`` up the caller's stack that ``accept`` takes."""
    frame = inspect.currentframe()
    try:
        f = frame.f_back if frame is not None else None
        for _ in range(depth):
            if f is None:
                return None
            value = f.f_locals.get(local)
            if value is not None and accept(value):
                return value
            f = f.f_back
        return None
    finally:
        del frame


def write_marker(checkpoint: str, experiment_id: str) -> None:
    """Record the experiment id in a checkpoint folder, so a resumed run appends to it."""
    path = Path(checkpoint)
    if path.is_dir():
        (path / MARKER).write_text(json.dumps({"experiment_id": experiment_id}), encoding="utf-8")


def read_marker(checkpoint: str | None) -> str | None:
    """The experiment id recorded in a checkpoint folder, if any."""
    if not checkpoint:
        return None
    try:
        data = json.loads((Path(checkpoint) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    exp_id = data.get("experiment_id") if isinstance(data, dict) else None
    return exp_id if isinstance(exp_id, str) else None


def _dist() -> Any:
    """``torch.distributed`` when a process group of more than one process is up, else None."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a transformers Trainer requirement
        return None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def _live(exp: Experiment | None) -> bool:
    return exp is not None and exp.status != "stopped"


def _open(hub: Telemetry, exp_id: str | None, name: str, metadata: dict[str, Any], tags: tuple[str, ...],
          hypothesis: str | None, condition: str | None) -> Experiment:
    """Join ``exp_id`` if its record exists, else start it (or a new experiment)."""
    if exp_id is not None:
        try:
            exp = hub.join_experiment(exp_id)
        except UnknownExperimentError:
            pass
        else:
            if exp.state == STOPPED:  # stopped earlier in this process (a notebook resuming): reopen it
                exp.state, exp.stopped_at = RUNNING, None
            return exp
    return hub.start_experiment(name, hypothesis, condition, tags, metadata, experiment_id=exp_id)


def resolve_experiment(hub: Telemetry, *, explicit_id: str | None, resume_from: str | None, zero: bool,
                       name: str, metadata: dict[str, Any], tags: tuple[str, ...], hypothesis: str | None,
                       condition: str | None) -> tuple[Experiment, bool]:
    """The experiment to record into and whether this callback owns it (stops it at the end)."""
    current = hub.current_experiment()
    wanted = explicit_id or os.environ.get(ENV_ID) or None
    dist = _dist()
    if dist is None:
        if wanted is None and current is not None and _live(current):
            return current, False
        wanted = wanted or read_marker(resume_from)
        return _open(hub, wanted, name, metadata, tags, hypothesis, condition), True
    # Distributed: rank 0 decides, every rank takes part in one broadcast, whatever happens.
    chosen: list[Any] = [None]
    exp: Experiment | None = None
    owned = True
    if zero:
        try:
            if wanted is None and current is not None and _live(current):
                exp, owned = current, False
            else:
                exp = _open(hub, wanted or read_marker(resume_from), name, metadata, tags, hypothesis, condition)
            chosen[0] = exp.id
        finally:
            dist.broadcast_object_list(chosen, src=0)
        assert exp is not None
        return exp, owned
    dist.broadcast_object_list(chosen, src=0)
    exp_id = chosen[0]
    if exp_id is not None and current is not None and current.id == exp_id and _live(current):
        return current, False
    return _open(hub, exp_id, name, metadata, tags, hypothesis, condition), True
