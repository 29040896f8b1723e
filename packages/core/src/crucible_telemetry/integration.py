"""The kit for framework plugins: which experiment a run records into, and how to own it safely.

Every trainer integration (Lightning, Hugging Face, one you write) answers the same questions:
which experiment do I record into, how do all ranks agree on it, how does a resumed run find
it again, who stops it, how does a failure stay out of the training loop, and what is a
scalar. This module answers each once, so every plugin behaves the same.

The experiment is chosen in this order (first match wins):

1. an explicit ``experiment_id`` given to the callback or logger;
2. ``$CRUCIBLE_EXPERIMENT_ID``;
3. the experiment a resumed checkpoint was recorded in;
4. the experiment live in the caller's context (used as it is, never stopped by the plugin);
5. a new experiment, started and stopped by the plugin.

The user's explicit choices come first; a resumed checkpoint continues one given run, so it
beats whatever experiment happens to be live around the call. See ``docs/plugins.md``.

(Over 400 lines: it is the one public module plugins import; if it grows further, the failure
guard and the checkpoint helpers move to private modules re-exported here.)
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ._hubs import default, hub_for
from .environment import distributed_identity
from .errors import InvalidArgumentError, UnknownExperimentError
from .experiment import Experiment, check_tags, new_experiment_id, validate_id
from .plugins import strict
from .values import to_scalar

if TYPE_CHECKING:
    from .hub import Telemetry

__all__ = [
    "CHECKPOINT_MARKER",
    "ENV_EXPERIMENT_ID",
    "ENV_HOME",
    "ENV_STRICT",
    "Choice",
    "Run",
    "check_system_metrics",
    "check_tags",
    "checkpoint_state",
    "choose_experiment",
    "default_run_name",
    "distributed_identity",
    "existing_hub",
    "guarded",
    "hub_for",
    "new_experiment_id",
    "open_run",
    "read_checkpoint_marker",
    "record_failure",
    "resumed_id",
    "run_guarded",
    "sampling_here",
    "strict",
    "to_scalar",
    "torch_broadcast",
    "validate_id",
    "write_checkpoint_marker",
]

log = logging.getLogger("crucible_telemetry.integration")

#: Every process (and every Trainer) with this set records into the experiment it names.
ENV_EXPERIMENT_ID = "CRUCIBLE_EXPERIMENT_ID"
#: The store folder of the default hub (else ``./.crucible``).
ENV_HOME = "CRUCIBLE_HOME"
#: ``1`` makes plugin and hook failures re-raise (the test suite sets it).
ENV_STRICT = "CRUCIBLE_STRICT"
#: The file a plugin writes into a checkpoint folder to name the experiment it belongs to.
CHECKPOINT_MARKER = "crucible_telemetry.json"

F = TypeVar("F", bound=Callable[..., Any])

# ----------------------------------------------------------------------- hubs


def existing_hub() -> Telemetry | None:
    """The default hub if one exists already; never creates one (nor a store folder)."""
    return default(create=False)


# --------------------------------------------------------- choosing the experiment


@dataclass(frozen=True)
class Choice:
    """The experiment a run records into, and why.

    ``source`` is ``explicit``, ``environment``, ``checkpoint``, ``live`` or ``new``; ``name`` is
    the live experiment's name when ``source == "live"``, else None.
    """

    experiment_id: str
    source: str
    name: str | None = None

    @property
    def live(self) -> bool:
        """The experiment was live in the caller's context: used, never stopped by the plugin."""
        return self.source == "live"


def _live(hub: Telemetry) -> Experiment | None:
    exp = hub.current_experiment()
    return exp if exp is not None and not exp.stopped else None


def _choose_here(hub: Telemetry, explicit_id: str | None, resumed: str | None, new_id: str | None = None) -> Choice:
    if explicit_id is not None:
        return Choice(validate_id("experiment_id", explicit_id), "explicit")
    env = os.environ.get(ENV_EXPERIMENT_ID) or None
    if env is not None:
        return Choice(validate_id(ENV_EXPERIMENT_ID, env), "environment")
    if resumed is not None:
        return Choice(validate_id("checkpoint experiment_id", resumed), "checkpoint")
    live = _live(hub)
    if live is not None:
        return Choice(live.id, "live", live.name)
    return Choice(new_id or new_experiment_id(), "new")


def choose_experiment(
    hub: Telemetry,
    *,
    explicit_id: str | None = None,
    resumed_id: str | None = None,
    broadcast: Callable[[Any], Any] | None = None,
    rank: int = 0,
    new_id: str | None = None,
) -> Choice:
    """Pick the experiment by the documented order; with ``broadcast``, rank 0 picks for every rank.

    Args:
        hub: the hub the run records into.
        explicit_id: the id the user gave the plugin, if any.
        resumed_id: the id a resumed checkpoint names (``resumed_id(state)`` or
            ``read_checkpoint_marker(folder)``), if any.
        broadcast: a collective ``fn(obj) -> rank 0's obj`` called once on every rank (Lightning:
            ``lambda o: trainer.strategy.broadcast(o, src=0)``; plain torch: ``torch_broadcast``).
            Rank 0 always takes part, even when its own choice fails, so no rank waits forever.
        rank: this process's global rank.
        new_id: the id a new experiment gets (default a fresh ``new_experiment_id()``): a launcher
            that chose it in the parent process (``ddp_spawn``) so the parent knows it too.

    On a rank other than 0 a ``live`` choice stays ``live`` only when the same experiment is live
    in this process's context too; otherwise it is joined (``source`` becomes ``explicit``).
    """
    if broadcast is None:
        return _choose_here(hub, explicit_id, resumed_id, new_id)
    mine: Choice | None = None
    payload: Any = None
    if rank == 0:
        try:
            mine = _choose_here(hub, explicit_id, resumed_id, new_id)
            payload = (mine.experiment_id, mine.source, mine.name)
        finally:
            payload = broadcast(payload)
        assert mine is not None
        return mine
    payload = broadcast(payload)
    if not payload:
        raise InvalidArgumentError("broadcast", "rank 0 could not choose an experiment")
    exp_id, source, name = payload
    if source == "live":
        live = _live(hub)
        if live is None or live.id != exp_id:
            source = "explicit"
    return Choice(exp_id, source, name)


def torch_broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank through ``torch.distributed`` (``obj`` itself without a group)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ------------------------------------------------------------ owning the experiment


class Run:
    """One plugin's hold on an experiment: bound to the caller's context, stopped if owned.

    Built by ``open_run``; ``close()`` unbinds it and, when the plugin owns it, stops this
    process's share of it (flushing its events), ``close(status="failed")`` when the training it
    watched raised. A ``live`` experiment is never stopped; a system sampler the run started for
    it is.
    """

    def __init__(self, experiment: Experiment, owned: bool, bound: bool, source: str) -> None:
        self.experiment = experiment
        self.owned = owned
        self.source = source
        self._bound = bound
        self._sampler: Any = None  # started by open_run for a live experiment (an owned one stops its own)
        self.closed = False

    @property
    def id(self) -> str:
        """The experiment id."""
        return self.experiment.id

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint keeps so that ``resumed_id`` finds this experiment again."""
        return checkpoint_state(self)

    def close(self, status: str = "stopped") -> None:
        """Unbind, and stop the experiment here (with ``status``) if this run owns it; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        exp = self.experiment
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.stop()
        if self._bound:
            self._bound = False
            exp.unbind()
        if self.owned and not exp.stopped:
            exp.stop(status=status)
        elif exp.hub is not None:
            exp.hub.flush()


def open_run(
    hub: Telemetry,
    choice: Choice,
    *,
    name: str,
    hypothesis: str | None = None,
    condition: str | None = None,
    tags: Iterable[str] = (),
    metadata: Mapping[str, Any] | None = None,
    leader: bool = True,
    bind: bool = True,
    params: Mapping[str, Any] | None = None,
    framework: str | None = None,
    system_metrics: bool | float = False,
) -> Run:
    """Start, join or reuse the chosen experiment and bind it to this context.

    Args:
        hub: the hub to record into.
        choice: from ``choose_experiment``.
        name, hypothesis, condition, tags, metadata, framework: recorded when the experiment is new.
        leader: this process may create the experiment record (rank 0); other ranks only join
            one that exists (start them after the leader, behind a barrier).
        bind: make it the experiment of the caller's context, so ``ct.emit`` from user code
            during training lands in it too.
        params: hyper-parameters (nested mappings become dotted keys), added to the experiment's
            params by the leader whatever the source (a live or joined experiment included).
        system_metrics: sample the machine into the experiment from this process (True, or an
            interval in seconds; see ``sampling_here``) until the run closes or the experiment stops.

    Whatever the choice's source, an experiment already live in the caller's context is used as
    it is and never stopped by the plugin (``Run.owned`` is False).
    """
    live = _live(hub)
    flat = dict(params or {})
    if live is not None and live.id == choice.experiment_id:
        # the experiment live around the call (chosen as such, or named by an explicit id, the env or a
        # resumed checkpoint): its owner is the caller's ``with`` block, so the plugin never stops it
        run = Run(live, owned=False, bound=False, source="live")
        if leader and flat:
            live.log_params(flat)
        if system_metrics is not False and system_metrics is not None and not _sampled(live):
            from . import system

            run._sampler = system.start(hub=hub, interval=_interval(system_metrics), experiment=live)
        return run
    exp_id = choice.experiment_id
    exp: Experiment | None = None
    try:
        exp = hub.join_experiment(exp_id, bind=False)
    except UnknownExperimentError:
        if not leader:
            raise
    if exp is None:
        exp = hub.start_experiment(
            name,
            hypothesis,
            condition,
            check_tags(tags),
            dict(metadata or {}),
            experiment_id=exp_id,
            bind=False,
            params=flat,
            framework=framework,
            system_metrics=system_metrics or False,
        )
    else:
        if leader:
            exp.owner = True  # a resumed experiment is ours again: its record gets the final status
        if (leader and flat) or (system_metrics and not _sampled(exp)):
            # joins the record that exists (no second one), adds params, starts this process's sampler
            hub.start_experiment(
                name,
                experiment_id=exp_id,
                bind=False,
                params=flat if leader else None,
                system_metrics=(system_metrics or False) if not _sampled(exp) else False,
            )
    if bind:
        exp.bind()
    return Run(exp, owned=True, bound=bind, source=choice.source)


def _interval(system_metrics: bool | float) -> float | None:
    return None if system_metrics is True else float(system_metrics)


def _sampled(exp: Experiment) -> bool:
    """This process's system sampler is running for ``exp`` already."""
    from . import system

    s = system.current()
    return s is not None and s.running and getattr(s.experiment, "id", None) == exp.id


def check_system_metrics(argument: str, value: object) -> bool | float:
    """A plugin's ``system_metrics`` argument: True, False or an interval in seconds (> 0)."""
    if value is True or value is False:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise InvalidArgumentError(argument, f"expected True, False or an interval in seconds, got {value!r}")


def sampling_here(
    system_metrics: bool | float, *, every_rank: bool = False, local_rank: int | None = None
) -> bool | float:
    """What this process passes as ``open_run(system_metrics=...)``: the setting on one process per node.

    The machine is sampled by the node's local rank 0 (its figures are the node's: one sampler is
    enough), or by every rank with ``every_rank=True`` (each process's own CPU and memory).
    ``local_rank``: as the trainer knows it (default: from torch.distributed or the environment).
    """
    if system_metrics is False or system_metrics is None:
        return False
    if every_rank:
        return system_metrics
    if local_rank is None:
        _, local_rank, _, _ = distributed_identity()
    return system_metrics if not local_rank else False


def default_run_name(hub: Telemetry, base: str) -> str:
    """A readable name no experiment in the store has yet: ``base``, else ``base-2``, ``base-3`` ...

    Sweeps of one model then read ``TinyRegressor``, ``TinyRegressor-2`` ... in ``crucible runs``
    (rename them after the fact with ``update_experiment``). Two processes naming at the same
    instant may pick the same name; the ids stay unique.
    """
    base = base.strip() or "run"
    try:
        taken = {e.name for e in hub.list_experiments()}
    except Exception:
        return base
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


# ------------------------------------------------------------------ resuming


def checkpoint_state(run: Run | Experiment | str) -> dict[str, Any]:
    """The state a checkpoint keeps: ``{"experiment_id": ..., "live": ...}``."""
    if isinstance(run, Run):
        return {"experiment_id": run.id, "live": run.source == "live"}
    exp_id = run.id if isinstance(run, Experiment) else run
    return {"experiment_id": exp_id, "live": False}


def resumed_id(state: Mapping[str, Any] | None) -> str | None:
    """The experiment id in a checkpoint's state (``checkpoint_state``), or None."""
    if not isinstance(state, Mapping):
        return None
    exp_id = state.get("experiment_id")
    return exp_id if isinstance(exp_id, str) and exp_id else None


def write_checkpoint_marker(folder: str | os.PathLike[str], experiment_id: str) -> bool:
    """Name the experiment in a checkpoint folder (``CHECKPOINT_MARKER``); False if no such folder."""
    path = Path(folder)
    if not path.is_dir():
        return False
    (path / CHECKPOINT_MARKER).write_text(json.dumps({"experiment_id": experiment_id}), encoding="utf-8")
    return True


def read_checkpoint_marker(folder: str | os.PathLike[str] | None) -> str | None:
    """The experiment id a checkpoint folder names, if any."""
    if not folder:
        return None
    try:
        data = json.loads((Path(folder) / CHECKPOINT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return resumed_id(data if isinstance(data, dict) else None)


# ------------------------------------------------------------ the failure guard


def record_failure(owner: Any, hook: str, exc: Exception) -> None:
    """Keep ``exc`` on ``owner.errors`` and log it once per hook; re-raise it in strict mode."""
    errors = owner.__dict__.setdefault("errors", [])
    errors.append(exc)
    warned = owner.__dict__.setdefault("_warned_hooks", set())
    if hook not in warned:
        warned.add(hook)
        log.warning("crucible_telemetry: %s.%s failed (%r); training goes on", type(owner).__name__, hook, exc)
    if strict():
        raise exc


def run_guarded(owner: Any, hook: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``; a failure goes to ``record_failure`` and None is returned."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        record_failure(owner, hook, exc)
        return None


def guarded(fn: F) -> F:
    """Decorate a hook method: its failures go to ``record_failure`` under the method's name."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:
            record_failure(self, fn.__name__, exc)
            return None

    return wrapper  # type: ignore[return-value]
