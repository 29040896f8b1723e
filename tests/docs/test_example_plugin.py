"""The complete example plugin of docs/plugins.md runs as written, and behaves as the page says."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import crucible_telemetry as ct
from crucible_telemetry.plugins import get_plugin_manager, register_plugin, set_strict, strict
from tests._requires import requires_plugin

from ._pages import code_blocks, page, section


def _example() -> tuple[str, str]:
    """The plugin module and the loop that uses it, in the page's order."""
    blocks = code_blocks(section(page("plugins.md"), "A complete example: a plain PyTorch loop"))
    assert len(blocks) == 2, "the example is the plugin module, then a loop using it"
    return blocks[0], blocks[1]


def _load(tmp_path: Path) -> ModuleType:
    path = tmp_path / "crucible_telemetry_loop.py"
    path.write_text(_example()[0])
    spec = importlib.util.spec_from_file_location("crucible_telemetry_loop_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(hub: ct.Telemetry, exp_id: str) -> list[tuple[str, int]]:
    hub.flush()
    return (
        hub.connect()
        .execute("SELECT event, count(*) FROM events WHERE experiment_id = ? GROUP BY event ORDER BY event", [exp_id])
        .fetchall()
    )


@requires_plugin("torch")
def test_the_example_loop_runs_as_written(tmp_path: Path) -> None:
    plugin, loop = _example()
    (tmp_path / "crucible_telemetry_loop.py").write_text(plugin)
    (tmp_path / "loop.py").write_text(loop)
    home = tmp_path / "home"
    env = {**os.environ, "CRUCIBLE_HOME": str(home), "CRUCIBLE_STRICT": "1", "PYTHONPATH": str(tmp_path)}
    env.pop("CRUCIBLE_EXPERIMENT_ID", None)
    out = subprocess.run(
        [sys.executable, "loop.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["(10, True)", "stopped"]
    with ct.Telemetry(home) as hub:
        [exp] = hub.list_experiments()
        assert exp.name == "linear-sgd" and exp.tags == ("docs",) and exp.status == "stopped"
        assert _rows(hub, exp.id) == [
            ("crucible_loop.value.skipped", 1),  # "phase" once, not once per step
            ("crucible_train.batch.stop", 11),
            ("crucible_train.training.start", 2),
            ("crucible_train.training.stop", 2),
        ]


def test_the_example_plugin_without_torch(hub: ct.Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its hook registers its event; numpy values are scalars; resuming continues one experiment."""
    monkeypatch.delenv("CRUCIBLE_EXPERIMENT_ID", raising=False)
    loop = _load(tmp_path)
    register_plugin(loop, name="docs-example-loop")
    try:
        assert ct.event_info(loop.SKIPPED).category == "training"
    finally:
        get_plugin_manager().unregister(name="docs-example-loop")
    rec = loop.LoopRecorder("np-loop")
    rec.start()
    assert rec.run.owned and rec.run.source == "new" and ct.current_experiment() is rec.run.experiment
    for step in range(1, 4):
        rec.step(step, loss=np.float32(1.0 / step), accuracy=np.array(0.5), flag=True, note="text", vec=[1, 2])
    rec.stop()
    assert rec.run.closed and rec.run.experiment.stopped and ct.current_experiment() is not rec.run.experiment
    state = rec.state_dict()
    assert state == {"experiment_id": rec.run.id, "live": False}
    again = loop.LoopRecorder("np-loop", resume=state)
    again.start()
    assert again.run.id == rec.run.id and again.run.source == "checkpoint"
    again.stop()
    rows = (
        hub.connect()
        .execute(
            "SELECT global_step, measurements['loss'], measurements['accuracy'], measurements['flag'] FROM events "
            "WHERE experiment_id = ? AND event = 'crucible_train.batch.stop' ORDER BY seq",
            [rec.run.id],
        )
        .fetchall()
    )
    assert [r[0] for r in rows] == [1, 2, 3]
    assert rows[1][1] == pytest.approx(0.5) and rows[0][2:] == (0.5, 1.0)
    skipped = dict(_rows(hub, rec.run.id))["crucible_loop.value.skipped"]
    assert skipped == 2  # "note" and "vec", once each


def test_the_example_plugin_guards_its_failures(hub: ct.Telemetry, tmp_path: Path) -> None:
    """A telemetry failure re-raises in strict mode, and is kept on ``errors`` otherwise."""
    loop = _load(tmp_path)

    class Broken:
        def numel(self) -> int:
            raise RuntimeError("device lost")

    rec = loop.LoopRecorder("guarded")
    rec.start()
    was = strict()
    try:
        set_strict(True)
        with pytest.raises(RuntimeError, match="device lost"):
            rec.step(1, loss=Broken())
        set_strict(False)
        assert rec.step(2, loss=Broken()) is None
    finally:
        set_strict(was)
    assert [str(e) for e in rec.errors] == ["device lost", "device lost"]
    rec.stop()
    assert rec.run.experiment.stopped
