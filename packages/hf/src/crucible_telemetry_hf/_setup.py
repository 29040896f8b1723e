"""Which experiment a Trainer run records into, through the kit (``crucible_telemetry.integration``).

The order is the kit's: an explicit ``experiment_id``, then ``$CRUCIBLE_EXPERIMENT_ID``, then the
experiment a resumed checkpoint was recorded in, then the experiment live in the caller's context
(used, never stopped), then a new one. Under torch.distributed rank 0 chooses and broadcasts, and
opens the experiment before the other ranks join it, so every rank records into one record.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterable
from typing import Any

from crucible_telemetry import InvalidArgumentError, Telemetry
from crucible_telemetry.integration import (
    Run,
    choose_experiment,
    open_run,
    read_checkpoint_marker,
    torch_broadcast,
)

__all__ = ["find_in_stack", "open_trainer_run"]


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


def _group_rank() -> int:
    """This process's rank in the torch.distributed group of more than one process, else 0."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return 0
    return int(dist.get_rank())


def open_trainer_run(
    hub: Telemetry,
    *,
    explicit_id: str | None,
    resume_from: str | None,
    name: str,
    metadata: dict[str, Any],
    tags: Iterable[str],
    hypothesis: str | None,
    condition: str | None,
) -> Run:
    """Choose the experiment (rank 0 for all ranks) and open it: rank 0 first, then the others."""
    rank = _group_rank()
    choice = choose_experiment(
        hub,
        explicit_id=explicit_id,
        resumed_id=read_checkpoint_marker(resume_from),
        broadcast=torch_broadcast,
        rank=rank,
    )

    def _open(leader: bool) -> Run:
        return open_run(
            hub,
            choice,
            name=name,
            hypothesis=hypothesis,
            condition=condition,
            tags=tags,
            metadata=metadata,
            leader=leader,
        )

    if rank == 0:
        opened = False
        try:
            run = _open(True)
            opened = True
        finally:
            torch_broadcast(opened)  # the other ranks wait here until the record exists (or never will)
        return run
    if not torch_broadcast(None):
        raise InvalidArgumentError("experiment", "rank 0 could not open the experiment")
    return _open(False)
