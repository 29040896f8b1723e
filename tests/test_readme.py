"""README examples run as written (an example no test runs will rot).

The plugin sections' examples run in their own test folders (tests/lightning, tests/llm,
tests/metrics, tests/cli), which also check what they print; the rest run here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._readme import README, python_blocks, section
from tests._requires import requires_plugin

HERE = ["Quick start", "MetricsStore port", "Hugging Face Trainer"]
ELSEWHERE = [
    "Other engines: Spark, Polars, Delta Lake",
    "Lightning",
    "LLM calls",
    "Counters, gauges and histograms",
    "Alerts",
    "Runs, params and summaries",
    "Importing runs from other tools",
    "The `crucible` command",
]


def test_every_readme_example_is_run_by_some_test() -> None:
    counted = sum(len(python_blocks(section(t))) for t in HERE + ELSEWHERE)
    assert counted == len(python_blocks(README.read_text()))


@pytest.mark.slow
@pytest.mark.parametrize(
    "title",
    [
        pytest.param(t, marks=requires_plugin("crucible-telemetry-hf", "torch")) if t == "Hugging Face Trainer" else t
        for t in HERE
    ],
)
def test_readme_example_runs(title: str, tmp_path: Path) -> None:
    env = {**os.environ, "CRUCIBLE_HOME": str(tmp_path / ".crucible"), "HF_HUB_OFFLINE": "1", "CRUCIBLE_STRICT": "1"}
    for block in python_blocks(section(title)):
        out = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert out.returncode == 0, f"README example under {title!r} failed:\n--- stderr ---\n{out.stderr[-3000:]}"
        assert out.stdout.strip(), "the example printed nothing"
        assert (tmp_path / ".crucible" / "experiments").is_dir() or title == "MetricsStore port"
