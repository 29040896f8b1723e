"""Read the README by section, so each part's tests run the examples they document."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def section(title: str) -> str:
    """The text under ``## title`` up to the next ``## `` heading."""
    text = README.read_text()
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m is not None, f"README has no section {title!r}"
    return m.group(1)


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a piece of Markdown."""
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def run_example(title: str, cwd: Path, timeout: int = 240) -> list[str]:
    """Run the one ```python block of a README section as a script in ``cwd``; its stdout lines."""
    import subprocess
    import sys

    blocks = python_blocks(section(title))
    assert len(blocks) == 1, f"{title!r} should hold exactly one example"
    script = cwd / "example.py"
    script.write_text(blocks[0])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "CRUCIBLE_STRICT": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()


def import_example(name: str) -> Any:
    """Import ``examples/<name>.py`` (a demo section) as a module."""
    import importlib.util

    path = README.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
