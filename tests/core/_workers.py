"""Functions run in child processes by the multi-process tests (importable by spawn)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import crucible_telemetry as ct


def write_experiment(home: str, name: str, n: int, out: str) -> None:
    """Start an experiment in a fresh process, emit ``n`` events, stop, report its id."""
    hub = ct.Telemetry(home, flush_interval=0.05)
    exp = hub.start_experiment(name, tags=[name])
    for i in range(n):
        hub.emit("proc.work.done", {"i": i, "global_step": i}, {"writer": name})
        if i % 500 == 0:
            time.sleep(0.001)
    hub.stop_experiment(exp.id)
    hub.close()
    Path(out).write_text(exp.id)


def write_into(home: str, exp_id: str, n: int, rank: int) -> None:
    """Join an existing experiment as another rank and emit ``n`` events."""
    os.environ["RANK"] = str(rank)
    hub = ct.Telemetry(home, flush_interval=0.05)
    hub.join_experiment(exp_id)
    for i in range(n):
        hub.emit("proc.work.done", {"i": i})
    hub.close()


def emit_forever(home: str, ready: str) -> None:
    """Emit steadily with a 0.2 s flush interval until killed (the SIGKILL test)."""
    hub = ct.Telemetry(home, flush_interval=0.2)
    exp = hub.start_experiment("killed")
    Path(ready).write_text(exp.id)
    i = 0
    while True:
        hub.emit("loop.tick", {"i": i, "t_ns": time.time_ns()})
        i += 1
        time.sleep(0.0005)
