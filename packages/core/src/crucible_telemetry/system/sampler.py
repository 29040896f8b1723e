"""The sampler thread: every ``interval`` seconds, one host row and one row per GPU."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from typing import Any

from .gpu import GpuReader
from .host import Counters, default_reader, rates

__all__ = ["SAMPLE", "Sampler"]

log = logging.getLogger("crucible_telemetry.system")

#: The event every sample is recorded as (registered by the built-in plugin).
SAMPLE = "crucible_system.sample"


class Sampler:
    """A daemon thread recording ``crucible_system.sample`` events into ``hub`` (None: the default hub).

    Never raises into the caller and never blocks it: the readers are opened in the thread, a
    failed reading is kept in ``errors`` and the next one is tried. ``experiment``: where the
    rows go (default: the hub's live experiment, as ``emit`` does without a bound one).
    """

    def __init__(
        self,
        hub: Any = None,
        interval: float = 10.0,
        *,
        experiment: Any = None,
        gpus: bool = True,
        reader: Any = "auto",
    ) -> None:
        self.hub, self.interval, self.experiment = hub, max(float(interval), 0.01), experiment
        self.gpus, self._reader_choice = gpus, reader
        self.samples = 0  # host rows emitted
        self.gpu_count = 0  # GPUs seen by the last sample
        self.backend: str | None = None  # "psutil", "proc", or None when nothing can be read
        self.errors: deque[BaseException] = deque(maxlen=16)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    @property
    def running(self) -> bool:
        """Whether the thread is alive in this process (False in a forked child)."""
        return self._pid == os.getpid() and self._thread is not None and self._thread.is_alive()

    def start(self) -> Sampler:
        """Start the thread (again after ``stop``); a no-op when already running."""
        if self.running:
            return self
        self._pid, self._stop = os.getpid(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="crucible-system-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the thread to end and wait for it at most ``timeout`` seconds (never raises)."""
        self._stop.set()
        t = self._thread
        if t is not None and self._pid == os.getpid() and t is not threading.current_thread():
            t.join(timeout)

    def _after_fork(self) -> None:
        """In a forked child: the thread did not survive, so the sampler is simply stopped."""
        self._stop = threading.Event()
        self._stop.set()
        self._thread = None

    def _run(self) -> None:
        stop = self._stop
        reader = gpu = None
        try:
            reader = default_reader() if self._reader_choice == "auto" else self._reader_choice
            self.backend = getattr(reader, "name", None)
            gpu = GpuReader() if self.gpus else None
            last = reader.read() if reader is not None else None
            while not stop.wait(self.interval):
                last = self._sample(reader, gpu, last)
        except BaseException as exc:  # the thread ends quietly; nothing reaches the user
            self.errors.append(exc)
            log.debug("crucible_telemetry: system sampler stopped: %r", exc)
        finally:
            if gpu is not None:
                gpu.close()

    def _sample(self, reader: Any, gpu: GpuReader | None, last: Counters | None) -> Counters | None:
        hub = self.hub if self.hub is not None else _default_hub()
        if hub is None or hub.closed:
            return last
        md = {"experiment_id": self.experiment.id} if self.experiment is not None else None
        if reader is not None:
            try:
                now = reader.read()
                if last is not None:
                    hub.emit(SAMPLE, rates(last, now), dict(md or {}, device="host"))
                    self.samples += 1
                last = now
            except Exception as exc:
                self.errors.append(exc)
        if gpu is not None:
            try:
                rows = gpu.read()
                self.gpu_count = len(rows)
                for index, m in rows:
                    hub.emit(SAMPLE, m, dict(md or {}, device="gpu", gpu_index=index))
            except Exception as exc:
                self.errors.append(exc)
        return last


def _default_hub() -> Any:
    from .._hubs import default

    return default(create=False)
