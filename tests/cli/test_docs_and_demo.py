"""The README section's Python example runs as-is, and the CLI demo makes its plot and report."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from tests._readme import section

ROOT = Path(__file__).resolve().parents[2]
DOC_TEXT = section("The `crucible` command")

pytestmark = pytest.mark.slow


def test_cli_readme_python_example_runs(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC_TEXT, re.S)
    assert len(blocks) == 1
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"treatment-s0 lower latency than control-s0, p < 0\.001, d = -\d", proc.stdout), proc.stdout
    # the lr sweep: a rank correlation with its CI, and two single runs compared without a test
    assert re.search(r"val_loss\.min falls as lr rises: Spearman rho = -0\.\d\d \[95% CI ", proc.stdout), proc.stdout
    assert "one run per group: no test possible, difference = " in proc.stdout


def test_readme_lists_every_command() -> None:
    text = DOC_TEXT
    for cmd in ("runs", "show", "metrics", "compare", "sql", "export", "plot", "report", "prune", "serve"):
        assert f"`crucible {cmd}" in text


def test_demo_cli_runs_through_the_real_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("demo_cli", ROOT / "examples" / "demo_cli.py")
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    result = demo.main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "$ crucible runs" in out and "chat-control-s0" in out
    assert result["metric"] == "latency" and result["significant"]
    assert result["verdict"].startswith("treatment lower latency than control")
    assert f"report:  {result['report'].resolve()}" in out
    assert mpimg.imread(result["plot"]).shape[:2] == (450, 800)
    html = result["report"].read_text()
    assert "chat-treatment-s2" in html and "data:image/png;base64," in html
