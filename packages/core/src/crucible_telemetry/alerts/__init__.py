"""Alerts: rules over the recorded events, evaluated in the recording process and by ``crucible watch``.

Declare rules in Python or in a TOML/JSON file (``load``)::

    import crucible_telemetry as ct
    from crucible_telemetry import alerts

    ct.alerts.add(
        alerts.nonfinite("loss_nan", "loss"),                      # NaN/inf loss in batch.stop
        alerts.threshold("llm_p95_slow", "duration", ">", 2e9,    # p95 latency over 5 minutes > 2 s
                         event="req_llm.request.stop", agg="p95", window="5m", for_="1m"),
        alerts.threshold("gpu_idle", "gpu_utilization_percent", "<", 10, event="crucible_system.sample",
                         agg="mean", window="10m", where={"device": "gpu"}, by=("host", "gpu_index")),
        alerts.absent("stalled", "crucible_train.batch.stop", window="10m"),
    )
    ct.alerts.webhook("https://hooks.slack.com/services/...", format="slack")

States follow Prometheus: inactive -> pending (the condition holds, for less than ``for_``) ->
firing -> resolved (once it stopped holding for ``keep_firing_for``); an evaluation without
data neither fires nor resolves. Evaluations happen every ``interval`` seconds (default 10) at
the instants ``k * interval``; each transition is logged, posted to the webhooks (off the
training thread, with a timeout and retries, never raising) and recorded as a
``crucible_alert.<state>`` event with the rule, labels, value and experiment, so SQL sees it.

The module functions act on one engine per process, on the default hub; build ``Engine`` for
another hub, or ``StoreWatcher`` to evaluate over a store (what ``crucible watch`` runs).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterable
from typing import Any

from .engine import ALERT_PREFIX, Engine
from .evaluator import Evaluator
from .files import load, load_file
from .notify import FORMATS, LogNotifier, Webhook
from .rules import Rule, absent, nonfinite, parse_duration, threshold
from .state import FIRING, INACTIVE, PENDING, RESOLVED, Transition
from .watcher import StoreWatcher

__all__ = [
    "ALERT_PREFIX",
    "FIRING",
    "FORMATS",
    "INACTIVE",
    "PENDING",
    "RESOLVED",
    "Engine",
    "Evaluator",
    "LogNotifier",
    "Rule",
    "StoreWatcher",
    "Transition",
    "Webhook",
    "absent",
    "add",
    "engine",
    "load",
    "load_file",
    "nonfinite",
    "parse_duration",
    "start",
    "stop",
    "threshold",
    "webhook",
]

_lock = threading.Lock()
_engine: Engine | None = None


def _usable(e: Engine | None) -> bool:
    if e is None or not e.running or getattr(e.hub, "closed", False):
        return False
    from .._hubs import default

    return e.hub is default(create=False)


def start(
    rules: Iterable[Rule] = (), *, interval: float = 10.0, webhooks: Iterable[Any] = (), **options: Any
) -> Engine:
    """Start this process's engine on the default hub (replacing a running one) and return it.

    ``webhooks``: URLs (JSON payloads) or ``Webhook`` objects. ``options``: as ``Engine`` takes them.
    """
    global _engine
    hooks = [Webhook(w) if isinstance(w, str) else w for w in webhooks]
    new = Engine(rules, interval=interval, notifiers=hooks, **options)
    with _lock:
        old, _engine = _engine, new
    if old is not None:
        old.stop()
    return new


def engine() -> Engine:
    """This process's engine on the default hub, started with the defaults on first use.

    A new default hub (``ct.set_default``, ``ct.configure``) gets a new engine: add its rules again.
    """
    global _engine
    with _lock:
        e = _engine
        if _usable(e):
            assert e is not None
            return e
    return start()


def add(*rules: Rule) -> Engine:
    """Add rules to this process's engine (``ct.alerts.add(alerts.nonfinite("loss_nan"))``)."""
    return engine().add(*rules)


def webhook(url: str, format: str = "json", **options: Any) -> Webhook:
    """Post this process's alerts to ``url`` (``alertmanager``, ``slack``, ``discord`` or ``json``)."""
    hook = Webhook(url, format, **options)
    engine().add_notifier(hook)
    return hook


def stop() -> None:
    """Stop this process's engine, if any."""
    global _engine
    with _lock:
        e, _engine = _engine, None
    if e is not None:
        e.stop()


atexit.register(stop)  # the webhooks get a moment to deliver what fired last
