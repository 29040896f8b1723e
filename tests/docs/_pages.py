"""Reading docs/plugins.md and docs/architecture.md: sections, bullet lists, code blocks, mentions."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CORE = ROOT / "packages" / "core" / "src" / "crucible_telemetry"


def page(name: str) -> str:
    """The text of ``docs/<name>``."""
    return (DOCS / name).read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The body under the heading ``heading`` (any level), up to the next heading of that level or above."""
    m = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, re.M)
    assert m is not None, f"no heading {heading!r}"
    level = len(m.group(1))
    rest = text[m.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def code_blocks(text: str, lang: str = "python") -> list[str]:
    """The fenced ``lang`` blocks of ``text``, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.M | re.S)


def public_modules() -> list[str]:
    """The modules listed under "Public modules" in docs/plugins.md (the first backticked word of each bullet)."""
    body = section(page("plugins.md"), "Public modules")
    mods = re.findall(r"^- `([\w.]+)`", body, re.M)
    assert mods, "docs/plugins.md lists no public modules"
    return mods


def mentioned(text: str, name: str) -> bool:
    """``name`` is a heading's word or is in code: `name`, `name(...)`, `name.attr`, `name[...]`."""
    n = re.escape(name)
    return bool(re.search(rf"^#+ .*(?<![\w.]){n}(?![\w])", text, re.M) or re.search(rf"`{n}[`(.\[ ]", text))
