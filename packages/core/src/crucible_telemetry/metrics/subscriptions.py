"""Live updates: ``subscribe(callback)`` and an async iterator (the Phoenix PubSub counterpart).

Updates are published by the registry's background thread after each drain (every ``tick``
seconds), never on the recording call. A callback that raises is unsubscribed and logged once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .registry import Metrics

__all__ = ["MetricStream", "Subscription", "publish"]

log = logging.getLogger("crucible_telemetry")


class Subscription:
    """A callback receiving one dict per recorded point (``name, kind, value, tags, run_id, step, epoch, timestamp``).

    ``name`` (a metric name, a list of names, or None for all) filters what it receives;
    ``close()`` (or ``with``) unsubscribes.
    """

    def __init__(self, metrics: Metrics, callback: Callable[[dict[str, Any]], Any], name: Any = None) -> None:
        self.metrics = metrics
        self.callback = callback
        self.names = None if name is None else frozenset([name] if isinstance(name, str) else name)
        self.delivered = 0
        self.active = True

    def deliver(self, updates: list[dict[str, Any]]) -> None:
        """Call the callback for each update."""
        for u in updates:
            self.callback(u)
            self.delivered += 1

    def close(self) -> None:
        """Stop receiving updates."""
        self.active = False
        self.metrics.remove_subscriber(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MetricStream(Subscription):
    """``async for update in metrics.stream():``: updates delivered into the running event loop.

    Holds at most ``maxsize`` undelivered updates; older ones are dropped and counted in ``dropped``.
    """

    def __init__(self, metrics: Metrics, name: Any = None, maxsize: int = 100_000) -> None:
        super().__init__(metrics, self._noop, name)
        self._queue: deque[dict[str, Any]] = deque(maxlen=maxsize)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.dropped = 0
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    @staticmethod
    def _noop(update: dict[str, Any]) -> None:
        return None

    def deliver(self, updates: list[dict[str, Any]]) -> None:
        """Queue updates and wake the consumer (called from the registry thread)."""
        with self._lock:
            room = (self._queue.maxlen or 0) - len(self._queue)
            if len(updates) > room:
                self.dropped += len(updates) - room
            self._queue.extend(updates)
        self.delivered += len(updates)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def __aiter__(self) -> MetricStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        while True:
            with self._lock:
                if self._queue:
                    return self._queue.popleft()
            if not self.active:
                raise StopAsyncIteration
            loop = asyncio.get_running_loop()
            self._loop = loop
            self._waiter = loop.create_future()
            with self._lock:
                ready = bool(self._queue)
            if not ready:
                await self._waiter
            self._waiter = None

    async def aclose(self) -> None:
        """Unsubscribe; a pending ``__anext__`` ends the iteration."""
        self.close()
        self._wake()

    async def __aenter__(self) -> MetricStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def publish(m: Metrics, cols: tuple[np.ndarray, ...]) -> None:
    """Hand freshly drained points to the subscribers (registry thread)."""
    subs = m.subscribers()
    if not subs:
        return
    sid, val, ts, step, epoch = cols
    names = m.series_names(sid)
    wanted = set()
    for s in subs:
        if s.names is None:
            wanted = set(names)
            break
        wanted |= s.names
    kind_of = {nm: m.kind_of(nm) for nm in wanted}
    updates: list[dict[str, Any]] = []
    for i, nm in enumerate(names):
        if nm not in wanted:
            continue
        s_i = int(sid[i])
        updates.append(
            {
                "name": nm,
                "kind": kind_of[nm],
                "value": float(val[i]),
                "tags": dict(m.series_tags(s_i)),
                "run_id": m.series_run(s_i),
                "step": int(step[i]) if step[i] >= 0 else None,
                "epoch": int(epoch[i]) if epoch[i] >= 0 else None,
                "timestamp": datetime.fromtimestamp(float(ts[i]), UTC),
            }
        )
    if not updates:
        return
    for s in subs:
        mine = updates if s.names is None else [u for u in updates if u["name"] in s.names]
        if not mine:
            continue
        try:
            s.deliver(mine)
        except Exception as exc:
            s.close()
            log.error("crucible_telemetry: metrics subscriber %r raised and was unsubscribed: %r", s.callback, exc)
