"""The README section's example runs as written; the demo's metrics part works on real runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import crucible_telemetry as ct
from crucible_telemetry import metrics
from tests._readme import import_example, section

ROOT = Path(__file__).resolve().parents[2]


def test_readme_section_example_runs(tmp_path: Path) -> None:
    text = section("Counters, gauges and histograms")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    env = {**os.environ, "CRUCIBLE_HOME": str(tmp_path / "home")}
    res = subprocess.run(
        [sys.executable, "-c", blocks[0]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "'llama-3.1/scifact': {'mean': 0.76" in res.stdout
    assert 'requests_total{model="qwen"} 1.0' in res.stdout
    assert "('eval', 'treatment', 'entailment_score', 2.2" in res.stdout
    assert "scrape http://127.0.0.1:" in res.stdout


def test_demo_metrics_run_on_real_runs(hub: ct.Telemetry, capsys: object) -> None:
    demo_metrics = import_example("demo_metrics")
    ids = demo_metrics._synthetic(hub)
    out = demo_metrics.run(hub, ids)
    assert sum(v["count"] for v in out["rollup"].values()) == 80
    assert sum(r["sum"] for r in out["time_series"]) == 80.0
    assert "# TYPE req_llm_request_stop_duration_seconds histogram" in out["prometheus"]
    # live events after the attach are counted too
    hub.emit(("req_llm", "request", "stop"), {"duration": 1_000_000}, {"model": "qwen"})
    assert metrics.registry(hub).query("req_llm_request_stop_total", aggregation="sum", window=None)[0]["sum"] == 81
