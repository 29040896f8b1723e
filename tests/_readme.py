"""Read the README by section, so each part's tests run the examples they document."""

from __future__ import annotations

import re
from pathlib import Path

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
