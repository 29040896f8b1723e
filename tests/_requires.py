"""Skips for the core-only session: ``nox -s tests_core`` sets ``CRUCIBLE_CORE_ONLY=1``.

A test of the core's folders that needs a plugin or a framework is marked
``@requires_plugin("torch")``. It is skipped only in that session; everywhere else (``nox -s tests``)
it runs, and fails loudly if what it needs is missing.
"""

from __future__ import annotations

import os

import pytest

CORE_ONLY = os.environ.get("CRUCIBLE_CORE_ONLY", "") not in ("", "0")


def requires_plugin(*needs: str) -> pytest.MarkDecorator:
    """Skip under ``CRUCIBLE_CORE_ONLY=1``: the test needs ``needs`` (plugins or frameworks)."""
    return pytest.mark.skipif(CORE_ONLY, reason=f"needs {', '.join(needs)}: the core-only session has none")
