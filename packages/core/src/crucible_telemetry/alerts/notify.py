"""Notifications: a log line per transition, and webhooks posted from their own thread.

A ``Webhook`` never blocks or raises into its caller: transitions are queued (bounded; the
excess is dropped and counted), posted with a timeout, retried with exponential backoff, and
counted in ``sent`` / ``failed``. Payload shapes: ``alertmanager`` (the ``/api/v2/alerts``
list), ``slack`` and ``discord`` (incoming webhooks), ``json`` (the transitions as they are).
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..errors import InvalidArgumentError
from .state import FIRING, RESOLVED, Transition

__all__ = ["FORMATS", "LogNotifier", "Webhook", "line", "payload"]

log = logging.getLogger("crucible_telemetry.alerts")

FORMATS = ("alertmanager", "slack", "discord", "json")
_ICON = {"firing": "🔥", "resolved": "✅", "pending": "⏳", "inactive": "·"}


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _value(v: float | None) -> str:
    if v is None:
        return ""
    return repr(v) if not math.isfinite(v) else f"{v:.6g}"


def line(t: Transition) -> str:
    """``FIRING loss_nan exp-... value=nan (severity=page): loss of ... is NaN or inf``."""
    labels = ", ".join(f"{k}={v}" for k, v in sorted(t.labels.items()))
    return (
        f"{t.state.upper()} {t.rule} {t.experiment_id} value={_value(t.value)}"
        + (f" ({labels})" if labels else "")
        + (f": {t.summary}" if t.summary else "")
    )


class LogNotifier:
    """One log line per transition on ``crucible_telemetry.alerts`` (WARNING when firing, else INFO)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def send(self, transitions: Sequence[Transition]) -> None:
        """Log each transition (never raises)."""
        for t in transitions:
            try:
                self.logger.log(logging.WARNING if t.state == FIRING else logging.INFO, "alert %s", line(t))
            except Exception:
                pass

    def close(self, timeout: float = 0.0) -> None:
        """Nothing to release."""


def payload(fmt: str, transitions: Sequence[Transition]) -> Any:
    """The JSON body of one post in format ``fmt`` (see the module docstring)."""
    if fmt == "alertmanager":
        return [
            {
                "labels": {"alertname": t.rule, "experiment_id": t.experiment_id, **t.labels},
                "annotations": {"summary": t.summary, "value": _value(t.value), "state": t.state},
                "startsAt": _iso(t.active_since if t.active_since is not None else t.at),
                **({"endsAt": _iso(t.at)} if t.state == RESOLVED else {}),
                "generatorURL": "",
            }
            for t in transitions
        ]
    text = "\n".join(f"{_ICON.get(t.state, '')} {line(t)}" for t in transitions)
    if fmt == "slack":
        return {"text": text}
    if fmt == "discord":
        return {"content": text[:2000], "username": "crucible"}
    return {
        "alerts": [
            {
                "rule": t.rule,
                "state": t.state,
                "previous": t.previous,
                "at": _iso(t.at),
                "experiment_id": t.experiment_id,
                "labels": t.labels,
                "value": _value(t.value),
                "active_since": _iso(t.active_since),
                "summary": t.summary,
            }
            for t in transitions
        ]
    }


class Webhook:
    """POST transitions to ``url`` off the caller's thread (see the module docstring).

    Args:
        url: the receiver (``http://`` or ``https://``).
        format: ``alertmanager``, ``slack``, ``discord`` or ``json``.
        states: transitions sent (default firing and resolved, as Alertmanager expects).
        timeout: seconds per attempt. retries: attempts after the first. backoff: first wait (doubles).
        queue_limit: posts waiting at most; beyond, new ones are dropped and counted in ``dropped``.
    """

    def __init__(
        self,
        url: str,
        format: str = "json",
        *,
        states: Sequence[str] = (FIRING, RESOLVED),
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        headers: dict[str, str] | None = None,
        queue_limit: int = 1000,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidArgumentError("url", f"expected an http:// or https:// URL, got {url!r}")
        if format not in FORMATS:
            raise InvalidArgumentError("format", f"expected one of {', '.join(FORMATS)}, got {format!r}")
        for arg, val in (("timeout", timeout), ("backoff", backoff)):
            if isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0:
                raise InvalidArgumentError(arg, f"expected seconds >= 0, got {val!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InvalidArgumentError("retries", f"expected an integer >= 0, got {retries!r}")
        self.url, self.format, self.states = url, format, frozenset(states)
        self.timeout, self.retries, self.backoff = float(timeout), retries, float(backoff)
        self.headers = {"Content-Type": "application/json", "User-Agent": "crucible-telemetry", **(headers or {})}
        self.sent = 0  # posts delivered (2xx)
        self.failed = 0  # posts given up after every retry
        self.attempts = 0  # HTTP attempts, retries included
        self.dropped = 0  # posts refused because the queue was full
        self.errors: deque[BaseException] = deque(maxlen=16)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, int(queue_limit)))
        self._closed = threading.Event()
        self._idle = threading.Condition()
        self._busy = 0
        self._thread: threading.Thread | None = None
        self._tlock = threading.Lock()

    def send(self, transitions: Sequence[Transition]) -> None:
        """Queue one post of the transitions in ``states`` (never blocks, never raises)."""
        try:
            chosen = [t for t in transitions if t.state in self.states]
            if not chosen or self._closed.is_set():
                return
            body = json.dumps(payload(self.format, chosen), default=str).encode()
            with self._idle:
                self._busy += 1
            try:
                self._queue.put_nowait(body)
            except queue.Full:
                self.dropped += 1
                self._done()
                return
            with self._tlock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="crucible-alert-webhook", daemon=True)
                    self._thread.start()
        except Exception as exc:
            self.errors.append(exc)

    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                body = self._queue.get(timeout=1.0)
            except queue.Empty:
                with self._tlock:  # idle: end the thread (send starts another)
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            try:
                self._post(body)
            finally:
                self._done()

    def _post(self, body: bytes) -> None:
        wait = self.backoff
        for attempt in range(self.retries + 1):
            self.attempts += 1
            try:
                req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    resp.read()
                self.sent += 1
                return
            except Exception as exc:  # refused, timed out, 4xx/5xx: retried, then counted
                self.errors.append(exc)
            if attempt < self.retries and self._closed.wait(wait):
                break
            wait *= 2
        self.failed += 1
        log.warning("crucible_telemetry: alert webhook %s failed after %d attempt(s)", self.url, self.retries + 1)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued post is delivered or given up; returns whether it got there in time."""
        end = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Deliver what is queued for at most ``timeout`` seconds, then stop the thread."""
        self.flush(timeout)
        self._closed.set()
