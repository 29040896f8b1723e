"""System metrics: a sampler thread that records the machine beside the run.

``crucible_telemetry.system.start(hub=None, interval=10.0)`` starts one sampler per process
(a second ``start`` replaces the first) and returns its ``Sampler``; ``stop()`` ends it. Every
``interval`` seconds (``$CRUCIBLE_SYSTEM_METRICS_INTERVAL`` overrides the default) it emits
``crucible_system.sample`` events into the hub's live experiment (or ``experiment=``):

* one row with ``metadata.device = 'host'`` and the measurements ``cpu_percent`` (whole machine,
  0-100), ``process_cpu_percent`` (this process, 100 per busy core), ``process_rss_bytes``,
  ``memory_used_bytes``, ``memory_total_bytes``, ``memory_percent``, ``disk_read_bytes_per_s``,
  ``disk_write_bytes_per_s``, ``net_recv_bytes_per_s``, ``net_sent_bytes_per_s`` (rates over
  the last interval; loopback and partitions are not counted);
* one row per visible NVIDIA GPU (``metadata.device = 'gpu'``) with ``gpu_index``,
  ``gpu_utilization_percent``, ``gpu_memory_utilization_percent``, ``gpu_memory_used_bytes``,
  ``gpu_memory_total_bytes``, ``gpu_temperature_c``, ``gpu_power_watts``.

Every row carries the ``host``, ``pid``, ``rank``, ``local_rank`` and ``node`` columns of any
event, so one SQL joins it with training steps, e.g. the GPU load at each step::

    SELECT b.global_step, s.measurements['gpu_utilization_percent'] AS util
    FROM (SELECT * FROM events WHERE event = 'crucible_train.batch.stop') b
    ASOF JOIN (SELECT * FROM events WHERE event = 'crucible_system.sample'
               AND measurements['gpu_index'] = 0) s
    ON b.host = s.host AND b.rank IS NOT DISTINCT FROM s.rank AND b.ts >= s.ts

Host figures come from psutil when it is installed, else from ``/proc`` (Linux); GPU figures
from NVML (``pip install nvidia-ml-py``). Neither is a dependency: without them there are
simply fewer rows. ``$CRUCIBLE_SYSTEM_METRICS=0`` (or ``false``/``off``/``no``) turns the
sampler off: ``start`` then returns a ``Sampler`` that never runs. The sampler never raises
into the caller and never blocks it (readings happen in its daemon thread; failures are kept in
``Sampler.errors``). After ``fork`` the child has no sampler (threads do not survive a fork):
call ``start()`` in the child for its own. ``ct.start_experiment(..., system_metrics=True)`` (or
an interval in seconds) starts one for that experiment, and stopping the experiment stops it.
Its cost: ``python bench/bench_system.py``.
"""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from .sampler import SAMPLE, Sampler

__all__ = ["ENV_INTERVAL", "ENV_SWITCH", "SAMPLE", "Sampler", "current", "enabled", "start", "stop"]

#: Set to ``0``/``false``/``off``/``no`` to turn system metrics off.
ENV_SWITCH = "CRUCIBLE_SYSTEM_METRICS"
#: Seconds between samples when ``start`` is not given an interval.
ENV_INTERVAL = "CRUCIBLE_SYSTEM_METRICS_INTERVAL"

_lock = threading.Lock()
_sampler: Sampler | None = None


def enabled() -> bool:
    """Whether ``$CRUCIBLE_SYSTEM_METRICS`` leaves system metrics on (the default)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def _interval(interval: float | None) -> float:
    if interval is not None:
        return float(interval)
    try:
        return float(os.environ.get(ENV_INTERVAL, "10"))
    except ValueError:
        return 10.0


def start(hub: Any = None, interval: float | None = None, **options: Any) -> Sampler:
    """Start this process's sampler (replacing a running one) and return it; never raises.

    ``hub``: where samples go (None: the default hub at each sample). ``interval``: seconds
    (default 10, or ``$CRUCIBLE_SYSTEM_METRICS_INTERVAL``). ``options``: ``experiment``,
    ``gpus`` (False: no NVML), as ``Sampler`` takes them.
    """
    global _sampler
    try:
        s = Sampler(hub, _interval(interval), **options)
    except Exception:
        s = Sampler(hub)
    with _lock:
        prev, _sampler = _sampler, s
    if prev is not None:
        prev.stop()
    if enabled():
        try:
            s.start()
        except Exception as exc:  # a thread that cannot start (interpreter shutting down)
            s.errors.append(exc)
    return s


def stop() -> None:
    """Stop this process's sampler, if any (never raises)."""
    global _sampler
    with _lock:
        s, _sampler = _sampler, None
    if s is not None:
        try:
            s.stop()
        except Exception:
            pass


def current() -> Sampler | None:
    """This process's sampler, running or not (None in a forked child or before ``start``)."""
    return _sampler


def _after_fork_in_child() -> None:
    global _sampler
    s, _sampler = _sampler, None
    if s is not None:
        s._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(stop)  # registered after the hub's close, so it runs before it
