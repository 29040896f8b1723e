"""``crucible ui`` over a store a real Lightning run is writing: the run and its curve appear and grow
while it trains, without a restart, and end with every stored point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import crucible_telemetry as ct

ROOT = Path(__file__).resolve().parents[2]
_TRAIN = """
import sys, time
sys.path.insert(0, sys.argv[2])
from tests.lightning import tiny
import lightning.pytorch as pl
from crucible_telemetry_lightning import CrucibleCallback

class Slow(pl.Callback):
    def on_train_batch_end(self, *args, **kwargs):
        time.sleep(0.3)  # a step a user can watch

model = tiny.module_class("lightning.pytorch")()
train, val = tiny.loaders()
trainer = tiny.trainer("lightning.pytorch", sys.argv[1], max_epochs=6, callbacks=[CrucibleCallback(), Slow()])
trainer.fit(model, train, val)
"""


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def test_the_dashboard_shows_a_lightning_run_growing_live(tmp_path: Path) -> None:
    home = tmp_path / "store"
    ct.Telemetry(home).close()  # an empty store for the server to open
    env = {**os.environ, "CRUCIBLE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    ui = subprocess.Popen(
        [sys.executable, "-m", "crucible_telemetry.cli", "ui", "--home", str(home), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert ui.stdout is not None
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", ui.stdout.readline())
        assert m, ui.stderr.read() if ui.stderr else ""
        url = m.group(1)
        train = subprocess.Popen([sys.executable, "-c", _TRAIN, str(tmp_path / "pl"), str(ROOT)], env=env)
        counts: list[int] = []
        run_id, name = None, None
        deadline = time.monotonic() + 120
        while train.poll() is None and time.monotonic() < deadline:
            if run_id is None:
                runs = _get(url + "api/runs")
                if runs["runs"]:
                    run_id = runs["runs"][0]["id"]
            if run_id is not None and name is None:
                name = (
                    "loss" if "loss" in _get(url + "api/runs")["metrics"] else None
                )  # train_loss, by its standard name
            if run_id is not None and name is not None:
                s = _get(url + f"api/series?run={run_id}&name={name}")["series"][0]
                counts.append(len(s["x"]))
            time.sleep(0.5)
        assert train.wait(120) == 0
        growing = sorted(set(counts))
        assert len(growing) >= 3, f"the curve did not grow while the run trained: {counts} {_get(url + 'api/runs')}"
        time.sleep(1.5)  # the last flush
        final = _get(url + f"api/series?run={run_id}&name={name}")["series"][0]
        stored = len(ct.history(run_id, name, hub=ct.Telemetry(home)))  # the same name, read from the store
        assert stored > 0
        assert len(final["x"]) == stored > counts[0]
    finally:
        ui.terminate()
        ui.wait(20)
