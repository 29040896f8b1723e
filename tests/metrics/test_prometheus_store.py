"""Prometheus text rebuilt from the store (``export_store``, what ``crucible serve`` shows): the same
samples as the recording process's registry, valid for promtool, and served across processes."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import crucible_telemetry as ct
from crucible_telemetry import metrics
from crucible_telemetry.metrics import prometheus

RECORD = """
metrics.increment("requests_total", 3, tags={"model": "llama-3.1", "status": "ok"})
metrics.increment("requests_total", tags={"model": "qwen", "status": "error"})
metrics.increment("requests_total", 2, tags={"model": "llama-3.1", "status": "ok"})
for v in (0.003, 0.2, 0.3, 3.0, float("nan")):
    metrics.histogram("request_latency_seconds", v, tags={"model": "llama-3.1"})
metrics.histogram("ttft_ms", 120.0)
for v in (5, 9, 7):
    metrics.gauge("queue_depth", v, tags={"queue": "main"})
"""


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_store_exposition_equals_the_registrys_and_passes_promtool(hub: ct.Telemetry) -> None:
    ct.start_experiment("prom-store")
    exec(RECORD, {"metrics": metrics})
    hub.flush()
    from_store = prometheus.export_store(hub=hub)
    assert _samples(from_store) == _samples(prometheus.export(hub=hub))
    got = _samples(from_store)
    assert got[("requests_total", (("model", "llama-3.1"), ("status", "ok")))] == 5.0
    assert got[("request_latency_seconds_count", (("model", "llama-3.1"),))] == 4  # NaN excluded
    assert got[("request_latency_seconds_bucket", (("le", "0.25"), ("model", "llama-3.1")))] == 2
    assert got[("queue_depth", (("queue", "main"),))] == 7.0  # the newest value
    assert list(_samples(prometheus.export_store("ttft_ms", hub=hub))) == [
        ("ttft_ms_bucket", (("le", le),)) for le in ("1.0", "2.5", "5.0", "10.0", "25.0", "50.0", "100.0")
    ] + [
        ("ttft_ms_bucket", (("le", le),)) for le in ("250.0", "500.0", "1000.0", "2500.0", "5000.0", "10000.0", "+Inf")
    ] + [("ttft_ms_sum", ()), ("ttft_ms_count", ())]
    assert shutil.which("promtool"), "promtool missing: apt-get install prometheus (the nox tests session does)"
    linted = "".join(
        prometheus.export_store(n, hub=hub) for n in ("requests_total", "request_latency_seconds", "queue_depth")
    )
    assert len(_samples(linted)) == len(got) - 16  # all but ttft_ms, whose name promtool's lint rejects (a unit suffix)
    res = subprocess.run(["promtool", "check", "metrics"], input=linted, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_crucible_serve_shows_what_other_processes_recorded(tmp_path: Path) -> None:
    home = tmp_path / "store"
    script = (
        "import crucible_telemetry as ct\nfrom crucible_telemetry import metrics\n"
        f"hub = ct.configure({str(home)!r})\nct.start_experiment('recorder')\n" + RECORD + "hub.close()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CRUCIBLE_HOME"}
    for _ in range(2):  # two recording processes, gone before the server starts: their counts add up
        subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, check=True, timeout=120)
    exe = shutil.which("crucible", path=str(Path(sys.executable).parent)) or shutil.which("crucible")
    assert exe is not None
    proc = subprocess.Popen(
        [exe, "serve", "--home", str(home), "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"serving (http://127\.0\.0\.1:\d+/metrics)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        with urllib.request.urlopen(m.group(1), timeout=30) as resp:
            text = resp.read().decode()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    got: dict[Any, float] = _samples(text)
    assert got[("requests_total", (("model", "llama-3.1"), ("status", "ok")))] == 10.0
    assert got[("requests_total", (("model", "qwen"), ("status", "error")))] == 2.0
    assert got[("request_latency_seconds_count", (("model", "llama-3.1"),))] == 8
    assert math.isclose(got[("request_latency_seconds_sum", (("model", "llama-3.1"),))], 2 * 3.503)
    assert got[("queue_depth", (("queue", "main"),))] == 7.0
