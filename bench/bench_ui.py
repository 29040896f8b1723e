"""Dashboard benchmark: the runs API, first paint, a 1,000-row table, and a 1M-point curve.

Run with ``python bench/bench_ui.py`` (needs Debian's ``chromium`` and ``chromium-driver`` for the
page figures). The store is generated here: ``CRUCIBLE_BENCH_UI_RUNS`` runs (default 1,000) and one
run of 1,000,000 loss points; ``CRUCIBLE_BENCH_DIR`` keeps it between runs (``<dir>/ui-store``), and
``CRUCIBLE_BENCH_UI_HOME`` points at an existing store instead (e.g. the 10,000-run store of
``bench_store.py``). Each figure is printed beside its target; these machines are shared and noisy.
"""

from __future__ import annotations

import gzip
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from _bench import report

RUNS = int(os.environ.get("CRUCIBLE_BENCH_UI_RUNS", "1000"))
POINTS = 1_000_000


def build(home: Path) -> str:
    """``RUNS`` small runs and one of ``POINTS`` points; returns the big run's id."""
    import crucible_telemetry as ct

    marker = home / "big-run-id"
    if marker.exists():
        return marker.read_text().strip()
    hub = ct.Telemetry(home)
    for i in range(RUNS):
        exp = hub.start_experiment(f"run{i}", condition=f"c{i % 4}", params={"lr": 10 ** -(i % 5), "seed": i % 3})
        for step in range(20):
            hub.emit("crucible_train.batch.stop", {"loss": 1.0 / (step + 1 + i % 7), "global_step": step}, {})
        hub.stop_experiment(exp.id)
    big = hub.start_experiment("big", condition="big", params={"lr": 0.1, "seed": 0})
    for step in range(POINTS):
        hub.emit(
            "crucible_train.batch.stop",
            {"loss": 1.0 / (1 + step * 1e-4) + (step % 997) * 1e-5, "global_step": step},
            {},
        )
    hub.stop_experiment(big.id)
    hub.close()
    marker.write_text(big.id)
    return big.id


def fetch(url: str) -> tuple[float, int]:
    """Seconds and gzipped bytes of one GET."""
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        body = r.read()
        gz = r.headers.get("Content-Encoding") == "gzip"
    return time.perf_counter() - t0, len(body if gz else gzip.compress(body))


def median(fn: Any, n: int = 5) -> float:
    fn()
    return statistics.median(fn() for _ in range(n))


def main() -> None:
    """Build or reuse the store, start ``crucible ui``, print each figure beside its target."""
    given = os.environ.get("CRUCIBLE_BENCH_UI_HOME")
    keep = os.environ.get("CRUCIBLE_BENCH_DIR")
    tmp = tempfile.mkdtemp(prefix="bench-ui-")
    home = Path(given) if given else (Path(keep) / "ui-store" if keep else Path(tmp) / "store")
    big = None if given else build(home)
    cmd = [sys.executable, "-m", "crucible_telemetry.cli", "ui", "--home", str(home)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = re.search(r"http://\S+/", proc.stdout.readline()).group(0)  # type: ignore[union-attr]
        runs_s = median(lambda: fetch(url + "api/runs")[0])
        report("GET /api/runs (warm, median)", f"{runs_s * 1000:.0f} ms", "<= 500 ms", runs_s <= 0.5)
        if big:
            s, size = fetch(url + f"api/series?run={big}&name=loss&max_points=2800")
            report("1M-point series, max_points 2800: time", f"{s * 1000:.0f} ms", "<= 1000 ms", s <= 1.0)
            report("1M-point series: payload gzipped", f"{size / 1024:.1f} KB", "<= 100 KB", size <= 100 * 1024)
        _page(url, big, Path(tmp))
    finally:
        proc.terminate()
        proc.wait(20)


def _page(url: str, big: str | None, tmp: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        from tests.cli._browser import Browser
    except (ImportError, RuntimeError) as exc:
        print(f"page figures skipped: {exc}")
        return
    with Browser(tmp / "profile") as b:
        b.open(url)
        deadline = time.monotonic() + 60
        while not b.run("return window.__ct && window.__ct.ready") and time.monotonic() < deadline:
            time.sleep(0.05)
        fcp = b.run(
            "const p = performance.getEntriesByName('first-contentful-paint')[0]; return p ? p.startTime : null"
        )
        report(
            "runs page first contentful paint", f"{fcp or float('nan'):.0f} ms", "<= 1000 ms", bool(fcp and fcp <= 1000)
        )
        render = b.run("return window.__ct.renderMs")
        rows = b.run("return document.querySelectorAll('#runs tbody tr[data-id]').length")
        report(f"runs table render ({rows} rows)", f"{render:.0f} ms", "<= 1500 ms (1,000 rows)", render <= 1500)
        if big:
            b.run(
                "window.__ct.view = null; window.__ct.selected = new Set([arguments[0]]); location.hash = '#/charts'",
                big,
            )
            t0 = time.perf_counter()
            while not b.run("return window.__ct.view && window.__ct.chart") and time.perf_counter() - t0 < 60:
                time.sleep(0.02)
            drawn = time.perf_counter() - t0
            report("1M-point curve drawn (request to chart)", f"{drawn * 1000:.0f} ms", "<= 1000 ms", drawn <= 1.0)


if __name__ == "__main__":
    main()
