"""Alerts in the recording process: a handler that only queues, a thread that evaluates.

The handler attached to the rules' events runs on the caller's thread and does one clock read
and one ``deque.append`` (the training loop pays nothing more); a daemon thread wakes at each
grid instant ``k * interval``, folds the queued events into the evaluator, evaluates, and hands
the transitions to the notifiers and to the store as ``crucible_alert.<state>`` events.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..errors import InvalidArgumentError
from ..storage.writer import identity
from .evaluator import Evaluator
from .notify import LogNotifier
from .rules import Rule
from .state import Transition

__all__ = ["ALERT_PREFIX", "DRAIN_S", "MAX_CATCH_UP", "Engine", "record_transitions"]

log = logging.getLogger("crucible_telemetry.alerts")

#: Every transition is recorded as ``crucible_alert.<state>`` (pending, firing, resolved, inactive).
ALERT_PREFIX = "crucible_alert"
#: Grid instants evaluated at most in one go after a stall (a suspended laptop); older ones are skipped.
MAX_CATCH_UP = 1000
#: Seconds between two drains of the queue into the series (memory stays at this much of events).
DRAIN_S = 0.25

_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _ts(d: datetime | None) -> float | None:
    return None if d is None else d.timestamp()


def record_transitions(hub: Any, transitions: Sequence[Transition], source: str) -> None:
    """Emit each transition into its experiment as ``crucible_alert.<state>`` (never raises)."""
    for t in transitions:
        try:
            m: dict[str, Any] = {}
            if t.value is not None:
                m["value"] = t.value
            if t.active_since is not None:
                m["active_for_s"] = t.at - t.active_since
            md = {
                "experiment_id": t.experiment_id,
                "rule": t.rule,
                "state": t.state,
                "previous": t.previous,
                "labels": dict(t.labels),
                "at": datetime.fromtimestamp(t.at, UTC).isoformat(),
                "summary": t.summary,
                "source": source,
            }
            hub.emit(f"{ALERT_PREFIX}.{t.state}", m, md)
        except Exception as exc:
            log.debug("crucible_telemetry: alert %s not recorded: %r", t.rule, exc)


class Engine:
    """Evaluates alert rules in this process (see the module docstring).

    Args:
        rules: ``Rule`` values (``alerts.nonfinite``, ``threshold``, ``absent``, ``load``).
        hub: whose events are watched (default: the default hub).
        interval: seconds between evaluations (the grid; ``crucible watch`` must use the same).
        notifiers: objects with ``send(transitions)`` such as ``Webhook``; a ``LogNotifier`` is
            added unless ``log=False``.
        record: record transitions as ``crucible_alert.<state>`` events.
        clock: UNIX seconds now (inject a fake one in tests, with ``start=False`` and ``run_pending``).
        start: start the evaluation thread now.
        inbox_limit: events queued between two drains (every ``DRAIN_S``) at most; beyond, dropped
            and counted in ``dropped``. A forked child (a DataLoader worker) queues nothing: the
            thread did not survive the fork, and its events reach the parent's store anyway.
    """

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        *,
        hub: Any = None,
        interval: float = 10.0,
        notifiers: Iterable[Any] = (),
        log: bool = True,
        record: bool = True,
        clock: Callable[[], float] = time.time,
        start: bool = True,
        inbox_limit: int = 200_000,
    ) -> None:
        if not callable(clock):
            raise InvalidArgumentError("clock", "expected a function returning UNIX seconds")
        self.evaluator = Evaluator((), interval)
        self.interval = self.evaluator.interval
        if hub is None:
            from .._hubs import default

            hub = default()
        self.hub = hub
        self.clock = clock
        self.notifiers: list[Any] = [LogNotifier()] if log else []
        for n in notifiers:
            self.add_notifier(n)
        self.record = record
        self.inbox_limit = int(inbox_limit)
        self.transitions: deque[Transition] = deque(maxlen=10_000)  # the latest, oldest first
        self.dropped = 0  # events not queued (inbox full)
        self.skipped = 0  # grid instants skipped after a stall
        self.errors: deque[BaseException] = deque(maxlen=16)
        self._inbox: deque[tuple[Any, ...]] = deque()
        self._known: dict[str, Any] = {}  # experiment id -> Experiment
        self._started = float(clock())
        self._last_k = math.floor(self._started / self.interval)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hid = f"crucible_alerts.{id(self):x}"
        self._names: dict[tuple[str, ...], str] = {}
        self._ident = dict(zip(("host", "pid", "rank", "local_rank", "node"), identity()[:5]))
        self._forked = False
        _ENGINES.add(self)
        self.add(*rules)
        if start:
            self.start()

    # ----------------------------------------------------------------- rules

    def add(self, *rules: Rule) -> Engine:
        """Add rules (attached at once; evaluated from the next grid instant)."""
        with self._lock:
            for r in rules:
                self.evaluator.add(r)
            self._attach()
        return self

    def add_notifier(self, notifier: Any) -> Engine:
        """Add an object with ``send(transitions)`` (a ``Webhook``)."""
        if not callable(getattr(notifier, "send", None)):
            raise InvalidArgumentError("notifier", f"expected an object with send(transitions), got {notifier!r}")
        self.notifiers.append(notifier)
        return self

    def watch(self, experiment: Any) -> Engine:
        """Evaluate ``experiment`` (an ``Experiment`` or id) even before it emits (absence rules)."""
        exp = self.hub.get_experiment(getattr(experiment, "id", experiment))
        self._known[exp.id] = exp
        return self

    @property
    def rules(self) -> list[Rule]:
        """The rules evaluated."""
        return list(self.evaluator.rules)

    def _attach(self) -> None:
        events = self.evaluator.events
        self.hub.detach(self._hid)
        if events:
            self._names = {tuple(e.split(".")): e for e in events}
            self.hub.attach(self._hid, events, self._handler())

    def _handler(self) -> Callable[[tuple[str, ...], Any, Any], None]:
        """The hot path, with everything it reads bound: a clock read and an append, nothing more."""
        inbox, append, clock, current, engine = (
            self._inbox,
            self._inbox.append,
            self.clock,
            self.hub.current_experiment,
            self,
        )

        def on_event(parts: tuple[str, ...], m: Any, md: Any) -> None:
            if len(inbox) >= engine.inbox_limit:
                if not engine._forked:
                    engine.dropped += 1
                return
            exp = md.get("experiment_id") if type(md) is dict else None
            if exp is None:
                exp = current()  # resolved on this thread (the context's experiment); its id is read later
                if exp is None or exp.state:  # none, or paused: the hub drops the event, so do we
                    return
            append((clock(), parts, exp, m, md))

        return on_event

    # ------------------------------------------------------------ evaluation

    def _live(self, at: float) -> dict[str, float]:
        cur = self.hub.current_experiment()
        if cur is not None:
            self._known.setdefault(cur.id, cur)
        live: dict[str, float] = {}
        ended = []
        for exp_id, exp in list(self._known.items()):
            start, stop = _ts(exp.started_at), _ts(getattr(exp, "stopped_at", None))
            if stop is not None and stop <= at:
                ended.append(exp_id)
            elif start is not None and start <= at and exp.status != "paused":  # stopped after `at` counts
                live[exp_id] = max(start, self._started)
        if ended:
            self.evaluator.forget(ended)
            for e in ended:
                self._known.pop(e, None)
        return live

    def _drain(self, at: float) -> None:
        inbox, observe = self._inbox, self.evaluator.observe
        ident = self._ident
        names = self._names
        while inbox and inbox[0][0] <= at:
            t, parts, exp, m, md = inbox.popleft()
            exp_id = exp if type(exp) is str else exp.id
            event = names.get(parts) or ".".join(parts)
            if exp_id not in self._known:
                try:
                    self._known[exp_id] = self.hub.get_experiment(exp_id)
                except Exception:
                    continue
            observe(t, event, exp_id, m, md if type(md) is dict else None, ident)

    def run_pending(self, now: float | None = None) -> list[Transition]:
        """Evaluate every grid instant up to ``now`` (default ``clock()``) not yet evaluated; never raises."""
        out: list[Transition] = []
        with self._lock:
            try:
                now = float(self.clock() if now is None else now)
                last = math.floor(now / self.interval)
                first = self._last_k + 1
                if last - first + 1 > MAX_CATCH_UP:
                    self.skipped += last - first + 1 - MAX_CATCH_UP
                    first = last - MAX_CATCH_UP + 1
                for k in range(first, last + 1):
                    at = k * self.interval
                    self._drain(at)
                    out.extend(self.evaluator.evaluate(at, self._live(at)))
                self._last_k = max(self._last_k, last)
                self._drain(now)  # what came before the next instant: folded in now, so the queue stays short
            except Exception as exc:
                self.errors.append(exc)
        if out:
            self._publish(out)
        return out

    def _publish(self, transitions: list[Transition]) -> None:
        if self.record and not getattr(self.hub, "closed", False):  # first: a transition seen is a row buffered
            record_transitions(self.hub, transitions, "process")
        self.transitions.extend(transitions)
        for n in self.notifiers:
            try:
                n.send(transitions)
            except Exception as exc:
                self.errors.append(exc)

    def active(self) -> list[dict[str, Any]]:
        """Alerts now pending or firing."""
        with self._lock:
            return self.evaluator.active()

    # ---------------------------------------------------------------- thread

    @property
    def running(self) -> bool:
        """Whether the evaluation thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Engine:
        """Start the evaluation thread (a no-op when running)."""
        if not self.running:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="crucible-alerts", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        stop, interval = self._stop, self.interval
        while True:
            try:
                now = float(self.clock())
                wait = min((math.floor(now / interval) + 1) * interval - now, DRAIN_S)
            except Exception as exc:
                self.errors.append(exc)
                wait = DRAIN_S
            if stop.wait(max(0.0, wait) + 0.001):
                return
            self.run_pending()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop evaluating: detach the handler, end the thread, let the webhooks deliver (never raises)."""
        try:
            self._stop.set()
            self.hub.detach(self._hid)
            t = self._thread
            if t is not None and t is not threading.current_thread():
                t.join(timeout)
            for n in self.notifiers:
                close = getattr(n, "close", None)
                if callable(close):
                    close(timeout)
        except Exception as exc:
            self.errors.append(exc)


def _after_fork_in_child() -> None:
    for e in list(_ENGINES):
        e._forked, e.inbox_limit = True, 0  # the handler returns at once: no thread here to drain
        e._inbox.clear()
        e._thread = None


os.register_at_fork(after_in_child=_after_fork_in_child)
