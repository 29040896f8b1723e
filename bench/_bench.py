"""What the benchmark scripts share: a figure beside its target, and timings robust to a noisy machine."""

from __future__ import annotations

import statistics
import time
from typing import Any

__all__ = ["interleaved", "report", "timed"]


def report(name: str, value: str, target: str, ok: bool) -> None:
    """One figure, its target, and whether it met it."""
    print(f"{name:<58} {value:>20}   target {target}  {'OK' if ok else 'MISSED'}", flush=True)


def timed(fn: Any, repeats: int = 7) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def interleaved(fns: dict[str, Any], repeats: int = 21) -> dict[str, float]:
    """Median seconds of each of ``fns``, run in turn ``repeats`` times after one warm-up each, so a
    moment of load on a shared machine falls on all of them alike (their ratios are what to read)."""
    for fn in fns.values():
        fn()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in out.items()}
