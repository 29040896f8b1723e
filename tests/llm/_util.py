"""Helpers shared by the llm tests."""

from __future__ import annotations

from typing import Any

import crucible_telemetry as ct

API_KEY = "sk-crucible-test-Zq8wXv3Lm5Np7Rt9"


def events(exp_id: str, name: str | None = None) -> list[dict[str, Any]]:
    """Stored events of an experiment (flushed first), oldest first; ``name`` filters by suffix."""
    ct.flush()
    rows = sorted(ct.store.get_all(exp_id), key=lambda r: r["seq"])
    return [r for r in rows if name is None or r["event"].endswith(name)]


def llm_events(exp_id: str) -> list[dict[str, Any]]:
    """Only the req_llm.request.* events."""
    return [r for r in events(exp_id) if r["event"].startswith("req_llm.request.")]


MESSAGES = [{"role": "user", "content": "Say hello to the loopback server"}]
