"""crucible-telemetry: research-grade telemetry for ML training and LLM calls, queryable in SQL.

Module functions act on a default hub (``$CRUCIBLE_HOME`` or ``./.crucible``), created on
first use; build ``Telemetry(home=...)`` for an explicit one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from . import events
from ._hubs import configure, default, set_default
from .bus import Handler
from .errors import (
    CrucibleError,
    ExportExistsError,
    InvalidArgumentError,
    InvalidWindowError,
    UnknownExperimentError,
)
from .events import EventInfo, event_info
from .experiment import Experiment
from .hub import Telemetry
from .sketch import RELATIVE_ACCURACY
from .span import Span
from .storage.metrics_store import DuckDBMetrics, JSONLMetrics, MetricsStore
from .storage.windows import Last, LastN, Range

__version__ = "0.1.0"

__all__ = [
    "RELATIVE_ACCURACY",
    "CrucibleError",
    "DuckDBMetrics",
    "EventInfo",
    "Experiment",
    "ExportExistsError",
    "Handler",
    "InvalidArgumentError",
    "InvalidWindowError",
    "JSONLMetrics",
    "Last",
    "LastN",
    "MetricsStore",
    "Range",
    "Span",
    "Telemetry",
    "UnknownExperimentError",
    "__version__",
    "attach",
    "calculate_metrics",
    "configure",
    "connect",
    "connect_remote",
    "current_experiment",
    "default",
    "detach",
    "emit",
    "event_info",
    "events",
    "experiment",
    "export",
    "flush",
    "get_experiment",
    "history",
    "is_paused",
    "join_experiment",
    "list_experiments",
    "list_handlers",
    "log_params",
    "pause_experiment",
    "publish",
    "push",
    "resume_experiment",
    "runs",
    "set_default",
    "span",
    "start_experiment",
    "stop_experiment",
    "store",
    "streaming",
    "unrecorded",
    "update_experiment",
]


def emit(name: Any, measurements: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
    """Record one event on the default hub (the hot path); never raises, even without a store."""
    try:
        hub = default()
    except CrucibleError as exc:  # the default home cannot be created: counted, warned about once
        _no_store(exc)
        return
    hub.emit(name, measurements, metadata)


#: Events ``ct.emit`` could not record because the default store cannot be created.
unrecorded = {"no_store": 0}


def _no_store(exc: Exception) -> None:
    unrecorded["no_store"] += 1
    if unrecorded["no_store"] == 1:
        import logging

        logging.getLogger("crucible_telemetry").warning(
            "crucible_telemetry: events are not recorded: %s (set CRUCIBLE_HOME or ct.configure(home=...))", exc
        )


def span(prefix: Any, metadata: dict[str, Any] | None = None) -> Span:
    """``with ct.span(("my_app", "step"), {...}):`` emits start, then stop (duration ns) or exception."""
    return default().span(prefix, metadata)


def attach(handler_id: str, event_names: Iterable[Any] | Any, fn: Any, config: Any = None) -> None:
    """Call ``fn(name, measurements, metadata)`` for each of ``event_names``."""
    default().attach(handler_id, event_names, fn, config)


def detach(handler_id: str) -> bool:
    """Detach a handler; returns whether it was attached."""
    return default().detach(handler_id)


def list_handlers(prefix: Any = None) -> list[Handler]:
    """Attached handlers whose events start with ``prefix``."""
    return default().list_handlers(prefix)


def start_experiment(
    name: str,
    hypothesis: str | None = None,
    condition: str | None = None,
    tags: Iterable[str] = (),
    metadata: dict[str, Any] | None = None,
    store: Any = None,
    **kw: Any,
) -> Experiment:
    """Start an experiment and bind it to the current context."""
    return default().start_experiment(name, hypothesis, condition, tags, metadata, store, **kw)


def experiment(
    name: str,
    hypothesis: str | None = None,
    condition: str | None = None,
    tags: Iterable[str] = (),
    metadata: dict[str, Any] | None = None,
    **kw: Any,
) -> Experiment:
    """``with ct.experiment("name", condition="treatment") as exp:`` starts, binds and stops."""
    return default().experiment(name, hypothesis, condition, tags, metadata, **kw)


def join_experiment(experiment_id: str) -> Experiment:
    """Record into an experiment that another process started."""
    return default().join_experiment(experiment_id)


def stop_experiment(experiment_id: str | Experiment, status: str = "stopped") -> Experiment:
    """Stop an experiment (``status="failed"`` when its code failed) and flush its events."""
    return default().stop_experiment(experiment_id, status=status)


def log_params(params: dict[str, Any], experiment_id: str | None = None) -> dict[str, Any]:
    """Add parameters to the current experiment (or ``experiment_id``); nested dicts become dotted keys."""
    return default().log_params(params, experiment_id=experiment_id)


def update_experiment(experiment_id: str, **changes: Any) -> Experiment:
    """Rename, note, tag (``add_tags``/``remove_tags``) or add ``params`` to an experiment after the fact."""
    return default().update_experiment(experiment_id, **changes)


def pause_experiment(experiment_id: str) -> None:
    """Drop (and count) the experiment's events until resumed."""
    default().pause_experiment(experiment_id)


def resume_experiment(experiment_id: str) -> None:
    """Record the experiment's events again."""
    default().resume_experiment(experiment_id)


def is_paused(experiment_id: str) -> bool:
    """Whether an experiment is paused."""
    return default().is_paused(experiment_id)


def get_experiment(experiment_id: str) -> Experiment:
    """A live or stored experiment by id."""
    return default().get_experiment(experiment_id)


def list_experiments() -> list[Experiment]:
    """Every experiment in the store, oldest first."""
    return default().list_experiments()


def current_experiment() -> Experiment | None:
    """The experiment this context's events go to."""
    return default().current_experiment()


def flush() -> int:
    """Write everything buffered now."""
    return default().flush()


def connect(read_only: bool = True) -> Any:
    """A DuckDB connection with the views ``experiments``, ``events``, ``metrics`` and ``runs``."""
    return default().connect(read_only=read_only)


def connect_remote(url: str, **storage_options: Any) -> Any:
    """A read-only DuckDB connection with the same views over a store pushed to ``url`` (``s3://...``)."""
    from .storage.remote import connect_remote as remote

    return remote(url, **storage_options)


def push(url: str, home: str | os.PathLike[str] | None = None, **storage_options: Any) -> Any:
    """Upload the live files and records of the store ``home`` (default: this hub's) to ``url``."""
    from .storage.remote import push as upload

    return upload(url, home if home is not None else default().home, **storage_options)


def publish(home: str | os.PathLike[str] | None = None) -> dict[str, int | None]:
    """Write the Delta Lake log over the live files of each dataset (for Spark, Polars, delta-rs); the
    version written per dataset, None where it was current. Default: this hub's store, flushed first."""
    from .storage.delta import publish as do_publish

    if home is None:
        default().flush()
    return do_publish(home if home is not None else default().home)


def calculate_metrics(exp_id: str) -> dict[str, Any]:
    """Latency, TTFT, cost, reliability, tokens and training summaries of an experiment."""
    from .analysis.summary import calculate_metrics as calc

    return calc(default(), exp_id)


def export(
    exp_id: Any,
    fmt: str = "parquet",
    path: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Any:
    """Write an experiment's events as csv, jsonl or parquet, streamed in batches (returns the path); or,
    with ``fmt="otlp", endpoint=URL``, send the LLM calls of one or more ids as OTLP spans (returns the counts)."""
    from .storage.export import export as do_export

    return do_export(default(), exp_id, fmt, path, overwrite, **options)


def runs(filter: Any = None, order_by: Any = None, *, hub: Telemetry | None = None) -> Any:
    """Every run as a row of a pandas DataFrame: id, name, status, ..., ``params.<key>``, ``metrics.<name>``
    (last), ``metrics.<name>.min`` and ``.max``; ``order_by="metrics.val_loss.min"`` ("-" for descending)."""
    from .analysis.runs import runs as frame

    return frame(filter, order_by, hub=hub)


def history(ids: Any, metrics: Any, x: str = "step", *, hub: Telemetry | None = None) -> Any:
    """The curves of ``metrics`` for runs ``ids`` as a long pandas DataFrame (``x``: step, epoch or time)."""
    from .analysis.runs import history as curves

    return curves(ids, metrics, x, hub=hub)


class _Proxy:
    """Attribute access forwarded to the default hub's ``store`` or ``streaming``."""

    __slots__ = ("_attr",)

    def __init__(self, attr: str) -> None:
        self._attr = attr

    def __getattr__(self, name: str) -> Any:
        return getattr(getattr(default(), self._attr), name)

    def __repr__(self) -> str:
        return f"<crucible_telemetry.{self._attr} of the default hub>"


store: Any = _Proxy("store")
streaming: Any = _Proxy("streaming")


def __getattr__(name: str) -> Any:
    # Heavier sub-packages load on first use: ct.analysis, ct.metrics, ct.ports.
    if name in (
        "alerts",
        "analysis",
        "metrics",
        "ports",
        "plugins",
        "hookspecs",
        "plots",
        "report",
        "integration",
        "importers",
    ):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
