"""The README section's example runs as-is, the demo returns what it recorded, the bench runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import crucible_telemetry as ct
from tests._readme import import_example, run_example

ROOT = Path(__file__).resolve().parents[2]


def test_readme_example_runs_standalone(tmp_path: Path) -> None:
    lines = run_example("LLM calls", tmp_path, timeout=120)
    assert "fake server" in lines[0]
    summary = ast.literal_eval(lines[1])
    assert summary["success_rate"] == 1.0 and summary["cost_usd"] > 0 and summary["tokens"] > 0
    assert summary["ttft_p50_ms"] >= 20
    rows = ast.literal_eval(lines[2])
    assert [r[0] for r in rows] == ["chat", "chat", "chat", "embeddings"]
    assert all(r[1] > 0 and r[2] > 0 for r in rows)
    assert (tmp_path / ".crucible" / "experiments").is_dir()


def test_demo_section(hub: ct.Telemetry, capsys: pytest.CaptureFixture[str]) -> None:
    demo_llm = import_example("demo_llm")
    result = demo_llm.run(hub)
    out = capsys.readouterr().out
    assert result["requests"] == 15 and result["success_rate"] == pytest.approx(14 / 15)
    assert result["streams"] == 4 and result["ttft_p50_ms"] >= 40  # delay 10 ms + first token 30 ms
    assert result["latency_p50_ms"] >= 10 and result["retries"] == 3
    assert result["prompt_tokens"] > 0 and result["completion_tokens"] > 0
    assert result["cost_usd"] > 0 and result["cost_per_1m_requests"] > 0
    assert hub.get_experiment(result["experiment_id"]).name == "llm-demo"
    assert "TTFT" in out and "cost" in out and "InternalServerError" in out


@pytest.mark.slow
def test_bench_runs_and_prints_targets() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_llm.py"), "--pairs", "60"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("target <= 1.05") == 3 and "target <= 50" in proc.stdout
    assert "every instrumented call recorded" in proc.stdout
