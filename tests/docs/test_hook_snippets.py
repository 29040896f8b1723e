"""Every hook example in docs/plugins.md runs as written, registered as a real plugin."""

from __future__ import annotations

import json
import socket
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import crucible_telemetry as ct
from crucible_telemetry import plugins
from crucible_telemetry.cli import main
from crucible_telemetry.events import BATCH_STOP

from ._pages import code_blocks, page, section


@pytest.fixture
def snippet_plugin(request: pytest.FixtureRequest) -> Iterator[types.ModuleType]:
    """The python block under ``### <hook>`` as a plugin module, registered for the test."""
    hook = request.param
    (code,) = code_blocks(section(page("plugins.md"), hook))
    mod = types.ModuleType(f"docs_{hook}")
    mod.__dict__.update(hookimpl=plugins.hookimpl, ct=ct)
    exec(compile(code, f"docs/plugins.md ({hook})", "exec"), mod.__dict__)
    name = f"docs-snippet-{hook}"
    plugins.register_plugin(mod, name=name)
    try:
        yield mod
    finally:
        plugins.get_plugin_manager().unregister(name=name)


@pytest.mark.parametrize("snippet_plugin", ["register_events"], indirect=True)
def test_the_events_example(snippet_plugin: types.ModuleType) -> None:
    info = ct.event_info("my_loop.batch.skipped")
    assert (info.category, "key" in info.enriched_fields) == ("training", True)


@pytest.mark.parametrize("snippet_plugin", ["register_enrichers"], indirect=True)
def test_the_enrichers_example(snippet_plugin: types.ModuleType, hub: ct.Telemetry) -> None:
    try:
        with hub.experiment("enriched") as exp:
            hub.emit(BATCH_STOP, {"loss": 1.0})
            hub.emit("other.thing", {"v": 1.0})
        rows = {r["event"]: r["metadata"] for r in hub.store.get_all(exp.id)}
        assert rows == {"crucible_train.batch.stop": {"cluster": socket.getfqdn()}, "other.thing": {}}
    finally:
        plugins.ENRICHERS.pop("cluster", None)


@pytest.mark.parametrize("snippet_plugin", ["register_metrics_adapters"], indirect=True)
def test_the_adapter_example_checks_like_the_built_ins(snippet_plugin: types.ModuleType) -> None:
    try:
        ct.MetricsStore.record("memory", "run-doc", "loss", 0.5, step=2)
        assert ct.MetricsStore.read("memory", "run-doc") == [{"metric": "loss", "value": 0.5, "step": 2}]
        for bad, arg in ((dict(value="0.5"), "value"), (dict(step=1.5), "step"), (dict(metadata=3), "metadata")):
            kwargs: dict[str, Any] = {"value": 0.5, **bad}
            value = kwargs.pop("value")
            with pytest.raises(ct.InvalidArgumentError, match=arg):
                ct.MetricsStore.record("memory", "run-doc", "loss", value, **kwargs)
            with pytest.raises(ct.InvalidArgumentError, match=arg):  # the same refusal from a built-in
                ct.MetricsStore.record((ct.JSONLMetrics, {"path": "/dev/null"}), "run-doc", "loss", value, **kwargs)
    finally:
        plugins.ADAPTERS.pop("memory", None)


@pytest.mark.parametrize("snippet_plugin", ["register_exporters"], indirect=True)
def test_the_exporter_example(snippet_plugin: types.ModuleType, hub: ct.Telemetry, tmp_path: Path) -> None:
    try:
        with hub.experiment("export-me") as exp:
            for i in range(3):
                hub.emit("x.y", {"i": i})
        out = ct.export(exp.id, "ids", tmp_path / "ids.ndjson")
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert [d["event"] for d in lines] == ["x.y"] * 3 and len({d["seq"] for d in lines}) == 3
    finally:
        plugins.EXPORTERS.pop("ids", None)


@pytest.mark.parametrize("snippet_plugin", ["register_commands"], indirect=True)
def test_the_command_example(
    snippet_plugin: types.ModuleType, hub: ct.Telemetry, capsys: pytest.CaptureFixture[str]
) -> None:
    with hub.experiment("counted") as exp:
        for _ in range(4):
            hub.emit("x.y", {"v": 1.0})
    assert main(["count", exp.id, "--home", str(hub.home)]) == 0
    assert capsys.readouterr().out == "4\n"
