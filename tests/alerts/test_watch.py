"""The recording process and ``crucible watch`` over the store find the same transitions for the same data."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry import alerts

pytestmark = pytest.mark.slow  # real subprocesses

I = 0.1  # noqa: E741  (the evaluation interval of these tests, in seconds)
LLM = "req_llm.request.stop"
SAMPLE = "crucible_system.sample"

RULES_TOML = f"""
interval = {I}

[[rule]]
name = "loss_nan"
kind = "nonfinite"

[[rule]]
name = "loss_high"
kind = "threshold"
measurement = "loss"
agg = "mean"
window = 0.3
op = ">"
value = 5
for = 0.2
keep_firing_for = 0.1

[[rule]]
name = "stalled"
kind = "absent"
window = 0.35

[[rule]]
name = "llm_slow"
kind = "threshold"
event = "{LLM}"
measurement = "duration"
agg = "p95"
window = 0.3
op = ">"
value = 2e9

[[rule]]
name = "gpu_idle"
kind = "threshold"
event = "{SAMPLE}"
measurement = "gpu_utilization_percent"
agg = "mean"
window = 0.3
op = "<"
value = 10
where = {{ device = "gpu" }}
by = ["gpu_index"]
labels = {{ severity = "warn" }}
"""


def _crucible(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crucible_telemetry.cli", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _keys(rows: list[dict]) -> list[tuple]:
    return sorted((r["rule"], r["previous"], r["state"], r["experiment_id"], json.dumps(r["labels"]), r["at"])
                  for r in rows)  # fmt: skip


def _slot(k: int) -> None:
    """Sleep until 30% into grid slot ``k`` (events stay far from the instants they are judged at)."""
    time.sleep(max(0.0, (k + 0.3) * I - time.time()))


def test_the_same_events_give_the_same_transitions_in_process_and_from_the_store(
    hub: ct.Telemetry, tmp_path: Path
) -> None:
    rules_file = tmp_path / "alerts.toml"
    rules_file.write_text(RULES_TOML)
    rules, interval = alerts.load_file(rules_file)
    eng = alerts.Engine(rules, hub=hub, interval=interval, log=False)  # the real evaluation thread
    k0 = math.floor(time.time() / I) + 1
    _slot(k0)
    exp = hub.start_experiment("same-data")

    def step(loss: float, n: int = 3) -> None:
        for _ in range(n):
            hub.emit("crucible_train.batch.stop", {"loss": loss})

    def gpus(util1: float) -> None:
        hub.emit(SAMPLE, {"cpu_percent": 20.0}, {"device": "host"})
        for gpu, util in ((0, 60.0), (1, util1)):
            hub.emit(SAMPLE, {"gpu_index": float(gpu), "gpu_utilization_percent": util}, {"device": "gpu"})

    plan = {}
    for s in range(0, 4):
        plan[s] = lambda: (step(1.0), [hub.emit(LLM, {"duration": 1e8}) for _ in range(2)], gpus(50.0))
    for s in range(4, 8):
        plan[s] = lambda: (step(10.0), gpus(2.0))
    plan[12] = lambda: step(math.nan, 1)
    for s in (13, 14):
        plan[s] = lambda: (step(1.0), [hub.emit(LLM, {"duration": 5e9}) for _ in range(3)])
    for s in (15, 16):
        plan[s] = lambda: [hub.emit(LLM, {"duration": 1e8}) for _ in range(10)]
    for s in range(1, 18):  # slots 8-11: a stall
        _slot(k0 + s)
        if s in plan:
            plan[s]()
    _slot(k0 + 18)
    hub.stop_experiment(exp.id)
    _slot(k0 + 20)
    deadline = time.monotonic() + 30
    while eng._last_k < k0 + 20:  # a loaded machine may run the thread late: its answer does not change
        assert time.monotonic() < deadline
        time.sleep(0.02)
    eng.stop()
    from crucible_telemetry.alerts.notify import payload

    here = _keys(payload("json", [t for t in eng.transitions if t.experiment_id == exp.id])["alerts"])
    assert {k[0] for k in here} == {"loss_nan", "loss_high", "stalled", "llm_slow", "gpu_idle"}, here
    hub.flush()

    watcher = alerts.StoreWatcher(hub, rules, interval=interval)
    there = _keys(payload("json", watcher.advance())["alerts"])
    assert there == here

    r = _crucible("watch", "--rules", str(rules_file), "--once", "--format", "json", home=hub.home)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    cli = [t for t in out["transitions"] if t["experiment_id"] == exp.id]
    assert _keys(cli) == here
    gpu = [t for t in cli if t["rule"] == "gpu_idle"]
    assert gpu and all(t["labels"] == {"severity": "warn", "gpu_index": "1"} for t in gpu)


CHILD = """
import sys, time
import crucible_telemetry as ct
hub = ct.Telemetry(sys.argv[1], flush_interval=0.1)
exp = hub.start_experiment("stalls")
for step in range(5):
    hub.emit("crucible_train.batch.stop", {"loss": 1.0, "global_step": step})
hub.flush()
print(exp.id, flush=True)
time.sleep(600)  # a writer that hangs, and is then killed
"""


def test_crucible_watch_reports_a_stalled_writer_from_the_store(tmp_path: Path) -> None:
    home = tmp_path / "store"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    child = subprocess.Popen([sys.executable, str(script), str(home)], stdout=subprocess.PIPE, text=True)
    try:
        exp_id = child.stdout.readline().strip()  # type: ignore[union-attr]
        assert exp_id.startswith("exp-")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    rules = tmp_path / "stall.json"
    rules.write_text(json.dumps({"interval": 0.25, "rules": [{"name": "stalled", "kind": "absent", "window": 0.5}]}))
    time.sleep(1.0)  # the absence window passes with no step: the run stays 'running', its writer is gone
    # --record also writes the transitions into the experiment, so SQL sees them
    r = _crucible("watch", "--rules", str(rules), "--once", "--record", "--format", "json", home=home)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [(a["rule"], a["state"], a["experiment_id"]) for a in out["active"]] == [("stalled", "firing", exp_id)]
    assert out["active"][0]["value"] >= 0.5
    with ct.Telemetry(home) as reader:
        con = reader.connect()
        rows = con.execute("SELECT experiment_id, event, metadata->>'$.source' FROM events WHERE category = 'alert'")
        assert rows.fetchall() == [(exp_id, "crucible_alert.firing", "watch")]
        con.close()


def test_watch_needs_a_store_and_sound_rules(tmp_path: Path) -> None:
    r = _crucible("watch", "--once", home=tmp_path / "nothing")
    assert r.returncode == 1 and "no crucible store" in r.stderr
    home = tmp_path / "s"
    with ct.Telemetry(home) as h:
        h.start_experiment("x")
        h.emit("crucible_train.batch.stop", {"loss": math.nan})
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "x"\nkind = "sometimes"\n')
    r = _crucible("watch", "--once", "--rules", str(bad), home=home)
    assert r.returncode == 1 and "kind must be one of" in r.stderr
    r = _crucible("watch", "--once", "--interval", "0.2", home=home)  # the default rule: a NaN/inf loss
    assert r.returncode == 0, r.stderr
    assert "transitions" in r.stdout and "active alerts" in r.stdout and "loss_nonfinite" in r.stdout


def test_crucible_watch_follows_the_store_and_stops_on_sigint(hub: ct.Telemetry, tmp_path: Path) -> None:
    rules = tmp_path / "nan.toml"
    rules.write_text('interval = 0.2\n\n[[rule]]\nname = "loss_nan"\nkind = "nonfinite"\n')
    exp = hub.start_experiment("followed")
    hub.emit("crucible_train.batch.stop", {"loss": 1.0})
    hub.flush()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crucible_telemetry.cli", "watch", "--rules", str(rules), "--home", str(hub.home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(f"watching {hub.home} every 0.2s with 1 rule(s)")
        hub.emit("crucible_train.batch.stop", {"loss": math.nan})  # while it watches
        hub.flush()
        line = proc.stdout.readline()
        assert f"FIRING loss_nan {exp.id} value=nan" in line, (line, proc.stderr.read() if proc.poll() else "")
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
