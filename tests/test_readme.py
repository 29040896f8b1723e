"""Every ```python block of the README runs as written (an example no test runs will rot)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path) -> None:
    env = {**os.environ, "CRUCIBLE_HOME": str(tmp_path / ".crucible"), "HF_HUB_OFFLINE": "1", "CRUCIBLE_STRICT": "1"}
    out = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, f"README example {index} failed:\n{BLOCKS[index]}\n--- stderr ---\n{out.stderr[-3000:]}"
