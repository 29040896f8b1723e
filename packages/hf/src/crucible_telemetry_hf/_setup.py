"""Which experiment a Trainer run records into, through the kit (``crucible_telemetry.integration``).

The order is the kit's: an explicit ``experiment_id``, then ``$CRUCIBLE_EXPERIMENT_ID``, then the
experiment a resumed checkpoint was recorded in, then the experiment live in the caller's context
(used, never stopped), then a new one. Under torch.distributed rank 0 chooses and broadcasts, and
opens the experiment before the other ranks join it, so every rank records into one record.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from crucible_telemetry import Experiment, InvalidArgumentError, Telemetry
from crucible_telemetry.integration import (
    Run,
    choose_experiment,
    default_run_name,
    open_run,
    read_checkpoint_marker,
    torch_broadcast,
)

__all__ = ["find_in_stack", "open_outside_run", "open_trainer_run"]

FRAMEWORK = "transformers"


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
    params: dict[str, Any] | None = None,
    system_metrics: bool | float = False,
    unique_name: bool = True,
) -> Run:
    """Choose the experiment (rank 0 for all ranks) and open it: rank 0 first, then the others.

    ``unique_name``: ``name`` is a default: a new experiment gets the kit's unique form of it.
    """
    rank = _group_rank()
    choice = choose_experiment(
        hub,
        explicit_id=explicit_id,
        resumed_id=read_checkpoint_marker(resume_from),
        broadcast=torch_broadcast,
        rank=rank,
    )
    if unique_name and choice.source == "new" and rank == 0:
        name = default_run_name(hub, name)

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
            params=params,
            framework=FRAMEWORK,
            system_metrics=system_metrics,
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


@contextlib.contextmanager
def open_outside_run(
    owner: Any,
    hub: Telemetry,
    *,
    explicit_id: str | None,
    last_id: str | None,
    name: str,
    args: Any,
    model: Any,
) -> Iterator[Experiment]:
    """The experiment for results reported outside ``train()`` (``trainer.evaluate()``), open for one hook.

    The kit's order, where this callback's last ``train()`` stands for the resumed checkpoint:
    explicit id > ``$CRUCIBLE_EXPERIMENT_ID`` > the last ``train()``'s experiment (joined again,
    so ``train()`` then ``evaluate()`` keeps the final evaluation) > the live one (left running) >
    a new one (its params the arguments and model config). Each process records on its own (no
    collective: ``evaluate()`` may run on one rank only); what it opened is stopped after the hook.
    """
    from ._params import run_params

    choice = choose_experiment(hub, explicit_id=explicit_id, resumed_id=last_id)
    ending = "stopped"
    if choice.source == "checkpoint":  # the last train()'s: a failed one stays failed
        try:
            ending = "failed" if hub.get_experiment(choice.experiment_id).status == "failed" else "stopped"
        except Exception:
            pass
    if choice.source == "new":
        name = default_run_name(hub, name)
        owner._last_id = choice.experiment_id
    run = open_run(
        hub,
        choice,
        name=name,
        metadata={"framework": FRAMEWORK, "model_name": type(model).__name__ if model is not None else None},
        params=run_params(args, model) if choice.source == "new" else None,
        framework=FRAMEWORK,
        bind=False,
    )
    try:
        yield run.experiment
    finally:
        run.close(ending)
