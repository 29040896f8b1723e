"""The event registry and the pluggy wiring."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import crucible_telemetry as ct
from crucible_telemetry import events, plugins
from crucible_telemetry.plugins import hookimpl, hookspecs
from tests._requires import requires_plugin

SEED = [
    "req_llm.request.start",
    "req_llm.request.stop",
    "req_llm.request.exception",
    "crucible_train.training.start",
    "crucible_train.training.stop",
    "crucible_train.epoch.start",
    "crucible_train.epoch.stop",
    "crucible_train.batch.stop",
    "crucible_train.checkpoint.saved",
    "crucible_deployment.inference.start",
    "crucible_deployment.inference.stop",
    "crucible_deployment.inference.exception",
    "crucible_framework.pipeline.start",
    "crucible_framework.pipeline.stop",
    "crucible_framework.stage.start",
    "crucible_framework.stage.stop",
    "ensemble.prediction.start",
    "ensemble.prediction.stop",
    "ensemble.vote.completed",
    "hedging.request.start",
    "hedging.request.duplicated",
    "hedging.request.stop",
    "causal_trace.event.created",
    "altar.tool.start",
    "altar.tool.stop",
]


def test_standard_events_hold_every_seed_event() -> None:
    names = {e.dotted for e in events.standard_events()}
    assert names == set(SEED)
    assert {e.dotted for e in events.training_events()} >= {n for n in SEED if n.startswith("crucible_train")}
    assert {e.dotted for e in events.llm_events()} >= {n for n in SEED if n.startswith("req_llm")}
    assert {e.dotted for e in events.deployment_events()} == {n for n in SEED if n.startswith("crucible_deployment")}
    assert {e.dotted for e in events.framework_events()} == {n for n in SEED if n.startswith("crucible_framework")}
    cats = events.events_by_category()
    assert set(cats) >= {"llm", "training", "deployment", "framework", "ensemble", "hedging"}


def test_event_info_enriched_fields_and_custom_category() -> None:
    info = ct.event_info(("crucible_train", "batch", "stop"))
    assert info.category == "training"
    assert info.description
    for f in ("experiment_id", "ts", "mono_ns", "seq", "host", "pid", "rank", "node", "global_step", "loss"):
        assert f in info.enriched_fields
    assert ct.event_info("nobody.defines.this").category == "custom"
    with pytest.raises(ct.InvalidArgumentError):
        ct.event_info(3)


class _GoodPlugin:
    @hookimpl
    def register_events(self, register: Callable[..., Any]) -> None:
        register(("thirdparty", "thing", "done"), "thirdparty", "A third-party event.", ("widgets",))


class _BadPlugin:
    @hookimpl
    def register_events(self, register: Callable[..., Any]) -> None:
        raise RuntimeError("plugin bug")


def test_plugin_events_register_and_a_failing_plugin_does_not_stop_others(caplog: pytest.LogCaptureFixture) -> None:
    pm = plugins.get_plugin_manager()
    plugins.set_strict(False)
    try:
        with caplog.at_level(logging.WARNING, logger="crucible_telemetry"):
            plugins.register_plugin(_BadPlugin(), name="bad-plugin")
            plugins.register_plugin(_GoodPlugin(), name="good-plugin")  # historic: no refresh needed
        info = ct.event_info("thirdparty.thing.done")
        assert info.category == "thirdparty"
        assert "widgets" in info.enriched_fields
        assert any("bad-plugin" in r.getMessage() for r in caplog.records)
        plugins.set_strict(True)
        with pytest.raises(RuntimeError, match="plugin bug"):
            plugins.refresh()
    finally:
        pm.unregister(name="bad-plugin")
        pm.unregister(name="good-plugin")
        plugins.set_strict(True)


@requires_plugin("crucible-telemetry-lightning", "crucible-telemetry-hf", "crucible-telemetry-llm")
def test_installed_plugins_are_loaded_from_entry_points() -> None:
    names = {name for name, _ in plugins.get_plugin_manager().list_name_plugin()}
    assert {"lightning", "hf", "llm", "crucible_telemetry.builtin"} <= names
    assert {"jsonl", "duckdb"} <= set(plugins.ADAPTERS)


def test_every_hook_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    hooks = [n for n in dir(hookspecs) if n.startswith("register_")]
    assert hooks, "no hooks found"
    missing = [h for h in hooks if not re.search(rf"\b{h}\b", readme)]
    assert missing == [], f"hooks missing from README: {missing}"


def test_loading_plugins_imports_no_framework() -> None:
    import subprocess
    import sys

    code = (
        "import sys, crucible_telemetry as ct; ct.event_info('a.b'); "
        "print(sorted(m for m in ('torch', 'transformers', 'lightning', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
