"""The registry of standard events: name, category, description, enriched fields.

The standard definitions are data here; the built-in plugin registers them through the
``register_events`` hook, as any plugin registers its own. An event that no one registered
is still collected, with category ``custom``. The registry never imports the plugin
machinery: the plugin manager hands it a loader (``set_loader``) that queries call first.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .names import normalize

__all__ = [
    "BATCH_STOP",
    "BUILTIN_EVENTS",
    "CHECKPOINT_SAVED",
    "EPOCH_START",
    "EPOCH_STOP",
    "LLM_EXCEPTION",
    "LLM_START",
    "LLM_STOP",
    "STANDARD_EVENTS",
    "TRAINING_EXCEPTION",
    "TRAINING_START",
    "TRAINING_STOP",
    "VALIDATION_STOP",
    "EventInfo",
    "deployment_events",
    "event_info",
    "events_by_category",
    "framework_events",
    "llm_events",
    "register_event",
    "set_loader",
    "standard_events",
    "training_events",
]

#: Fields every stored event carries, whatever its name.
BASE_FIELDS = ("experiment_id", "ts", "mono_ns", "seq", "host", "pid", "rank", "local_rank", "node", "tags")

# Names the built-in plugins emit: one spelling, here, for every trainer and client.
TRAINING_START = ("crucible_train", "training", "start")
TRAINING_STOP = ("crucible_train", "training", "stop")
TRAINING_EXCEPTION = ("crucible_train", "training", "exception")
EPOCH_START = ("crucible_train", "epoch", "start")
EPOCH_STOP = ("crucible_train", "epoch", "stop")
BATCH_STOP = ("crucible_train", "batch", "stop")
VALIDATION_STOP = ("crucible_train", "validation", "stop")
CHECKPOINT_SAVED = ("crucible_train", "checkpoint", "saved")
LLM_START = ("req_llm", "request", "start")
LLM_STOP = ("req_llm", "request", "stop")
LLM_EXCEPTION = ("req_llm", "request", "exception")

_TRAIN = ("epoch", "global_step", "batch")
_LLM = (
    "model",
    "response_model",
    "provider",
    "operation",
    "duration",
    "ttft_ns",
    "http_status",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "cost_usd",
    "finish_reason",
)


@dataclass(frozen=True)
class EventInfo:
    """What the registry knows of one event."""

    name: tuple[str, ...]
    category: str
    description: str
    enriched_fields: tuple[str, ...] = field(default=BASE_FIELDS)

    @property
    def dotted(self) -> str:
        """The event name as a dotted string."""
        return ".".join(self.name)


def _ev(name: str, category: str, description: str, extra: tuple[str, ...] = ()) -> EventInfo:
    return EventInfo(tuple(name.split(".")), category, description, BASE_FIELDS + extra)


#: The events of the seed tables.
STANDARD_EVENTS: tuple[EventInfo, ...] = (
    _ev("req_llm.request.start", "llm", "An LLM request begins.", ("model", "provider", "operation")),
    _ev("req_llm.request.stop", "llm", "An LLM request completed; latency, tokens and cost.", _LLM),
    _ev("req_llm.request.exception", "llm", "An LLM request failed.", (*_LLM, "kind", "reason")),
    _ev("crucible_train.training.start", "training", "A training run begins.", ("model_name", "parameters")),
    _ev("crucible_train.training.stop", "training", "A training run ends.", ("duration", *_TRAIN)),
    _ev("crucible_train.epoch.start", "training", "An epoch begins.", ("epoch",)),
    _ev(
        "crucible_train.epoch.stop",
        "training",
        "An epoch ends; loss, accuracy, learning rate.",
        ("duration", "loss", "accuracy", "learning_rate", *_TRAIN),
    ),
    _ev(
        "crucible_train.batch.stop",
        "training",
        "An optimizer or batch step ends; loss, grad norm, throughput.",
        ("duration", "loss", "gradient_norm", "learning_rate", "samples_per_second", "tokens_per_second", *_TRAIN),
    ),
    _ev("crucible_train.checkpoint.saved", "training", "A checkpoint was written.", ("checkpoint_path", *_TRAIN)),
    _ev("crucible_deployment.inference.start", "deployment", "A model inference request begins.", ("model",)),
    _ev(
        "crucible_deployment.inference.stop",
        "deployment",
        "A model inference request completed.",
        ("duration", "model"),
    ),
    _ev(
        "crucible_deployment.inference.exception",
        "deployment",
        "A model inference request failed.",
        ("duration", "kind", "reason"),
    ),
    _ev("crucible_framework.pipeline.start", "framework", "A pipeline begins.", ("pipeline",)),
    _ev("crucible_framework.pipeline.stop", "framework", "A pipeline ends.", ("pipeline", "duration")),
    _ev("crucible_framework.stage.start", "framework", "A pipeline stage begins.", ("stage",)),
    _ev("crucible_framework.stage.stop", "framework", "A pipeline stage ends.", ("stage", "duration")),
    _ev("ensemble.prediction.start", "ensemble", "An ensemble prediction begins.", ("models",)),
    _ev("ensemble.prediction.stop", "ensemble", "An ensemble prediction ends.", ("duration", "models")),
    _ev("ensemble.vote.completed", "ensemble", "The ensemble's vote is decided.", ("strategy", "agreement")),
    _ev("hedging.request.start", "hedging", "A hedged request begins.", ("delay",)),
    _ev("hedging.request.duplicated", "hedging", "A hedged request sent its duplicate.", ("delay",)),
    _ev("hedging.request.stop", "hedging", "A hedged request ends.", ("duration", "winner")),
    _ev("causal_trace.event.created", "causal_trace", "A causal-trace event was recorded.", ("trace_id",)),
    _ev("altar.tool.start", "tool", "A tool call begins.", ("tool",)),
    _ev("altar.tool.stop", "tool", "A tool call ends.", ("tool", "duration")),
)

# Beyond the seed table: emitted by every training plugin alike, so defined once here.
BUILTIN_EVENTS: tuple[EventInfo, ...] = (
    _ev(
        "crucible_train.validation.stop",
        "training",
        "A validation run ended; its metrics as val_<name>.",
        ("duration", "epoch", "global_step"),
    ),
    _ev(
        "crucible_train.training.exception",
        "training",
        "A training run failed; kind, reason and stacktrace of the exception.",
        ("duration", "epoch", "global_step", "kind", "reason", "stacktrace"),
    ),
    _ev(
        "crucible_system.sample",
        "system",
        "Machine load: CPU, memory, disk and network rates; one row per GPU.",
        ("device", "gpu_index", "cpu_percent", "process_rss_bytes", "gpu_utilization_percent"),
    ),
    *(
        _ev(
            f"crucible_alert.{state}",
            "alert",
            f"An alert rule's alert became {state}; rule, labels, value and the evaluation time.",
            ("rule", "state", "previous", "labels", "value", "active_for_s", "at", "summary", "source"),
        )
        for state in ("pending", "firing", "resolved", "inactive")
    ),
)

_LOCK = threading.Lock()
_REGISTRY: dict[str, EventInfo] = {}
_STANDARD_NAMES = frozenset(e.dotted for e in STANDARD_EVENTS)
_loader: Callable[[], None] = lambda: None  # noqa: E731  (replaced by the plugin manager)


def set_loader(fn: Callable[[], None]) -> None:
    """Called by the plugin manager: ``fn()`` loads the plugins before the first query."""
    global _loader
    _loader = fn


def register_event(
    name: object, category: str, description: str = "", enriched_fields: tuple[str, ...] = ()
) -> EventInfo:
    """Add (or replace) an event definition; the plugin hook calls this."""
    dotted, parts = normalize(name)
    info = EventInfo(
        parts, category, description, BASE_FIELDS + tuple(f for f in enriched_fields if f not in BASE_FIELDS)
    )
    with _LOCK:
        _REGISTRY[dotted] = info
    return info


def _all() -> list[EventInfo]:
    _loader()
    return list(_REGISTRY.values())


def standard_events() -> list[EventInfo]:
    """Every standard event of the seed tables (plugin events excluded)."""
    return [e for e in _all() if e.dotted in _STANDARD_NAMES]


def _category(cat: str) -> list[EventInfo]:
    return [e for e in _all() if e.category == cat]


def training_events() -> list[EventInfo]:
    """Events of category ``training``."""
    return _category("training")


def deployment_events() -> list[EventInfo]:
    """Events of category ``deployment``."""
    return _category("deployment")


def framework_events() -> list[EventInfo]:
    """Events of category ``framework``."""
    return _category("framework")


def llm_events() -> list[EventInfo]:
    """Events of category ``llm``."""
    return _category("llm")


def events_by_category() -> dict[str, list[EventInfo]]:
    """All registered events (standard and plugin) grouped by category."""
    out: dict[str, list[EventInfo]] = {}
    for e in _all():
        out.setdefault(e.category, []).append(e)
    return out


def event_info(name: object) -> EventInfo:
    """The definition of ``name``; an unregistered event gets category ``custom``."""
    dotted, parts = normalize(name)
    info = _REGISTRY.get(dotted)
    if info is None:
        _loader()
        info = _REGISTRY.get(dotted)
    return info or EventInfo(parts, "custom", "An event no registry defines.", BASE_FIELDS)


def category_of(dotted: str) -> str:
    """Category of a dotted name without loading plugins (the writer thread's fast path)."""
    info = _REGISTRY.get(dotted)
    return info.category if info is not None else "custom"
