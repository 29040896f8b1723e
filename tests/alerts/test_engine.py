"""The in-process engine on a real hub, driven by a fake clock (no evaluation thread)."""

from __future__ import annotations

import json
import math
import os
import time

import pytest

import crucible_telemetry as ct
from crucible_telemetry import alerts
from crucible_telemetry.events import event_info

STEP = "crucible_train.batch.stop"


class Clock:
    """A fake UNIX clock, started at a grid instant near now (experiments carry real start times)."""

    def __init__(self, interval: float) -> None:
        self.t = (math.floor(time.time() / interval) + 1) * interval

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def _alert_rows(hub: ct.Telemetry) -> list[tuple]:
    hub.flush()
    con = hub.connect()
    try:
        return con.execute(
            "SELECT experiment_id, event, measurements, metadata FROM events WHERE category = 'alert' ORDER BY seq"
        ).fetchall()
    finally:
        con.close()


def test_the_handler_only_queues_and_the_thread_evaluates(hub: ct.Telemetry) -> None:
    clock = Clock(1.0)
    eng = alerts.Engine([alerts.nonfinite("loss_nan")], hub=hub, interval=1, clock=clock, start=False, log=False)
    exp = hub.start_experiment("queue")
    for i in range(50):
        hub.emit(STEP, {"loss": math.nan if i == 49 else 1.0, "global_step": i})
    assert len(eng._inbox) == 50 and eng.transitions == deque_empty()  # nothing evaluated on the caller's thread
    clock.advance(0.5)
    assert eng.run_pending() == [] and not eng._inbox  # folded into the series, not yet evaluated
    clock.advance(0.5)
    [t] = eng.run_pending()
    assert (t.rule, t.state, t.experiment_id, t.at) == ("loss_nan", "firing", exp.id, clock.t)
    assert math.isnan(t.value)
    [(exp_id, event, m, md)] = _alert_rows(hub)
    md = json.loads(md)
    assert (exp_id, event, md["rule"], md["state"], md["previous"], md["source"]) == (
        exp.id,
        "crucible_alert.firing",
        "loss_nan",
        "firing",
        "inactive",
        "process",
    )
    assert math.isnan(m["value"])
    assert event_info("crucible_alert.firing").category == "alert"
    eng.stop()
    assert not hub.list_handlers(STEP)


def deque_empty():
    from collections import deque

    return deque(maxlen=10_000)


def test_llm_p95_over_five_minutes_with_for_and_keep_firing_for(hub: ct.Telemetry) -> None:
    clock = Clock(10.0)
    rule = alerts.threshold(
        "llm_p95_slow",
        "duration",
        ">",
        2e9,
        event="req_llm.request.stop",
        agg="p95",
        window="5m",
        for_="1m",
        keep_firing_for="30s",
    )
    eng = alerts.Engine([rule], hub=hub, interval=10, clock=clock, start=False, log=False)
    exp = hub.start_experiment("llm")
    states = []

    def minute(latency_ns: float) -> None:
        for _ in range(6):
            for _ in range(5):
                hub.emit("req_llm.request.stop", {"duration": latency_ns}, {"model": "m"})
            clock.advance(10)
            states.extend((t.state, round(t.at - start)) for t in eng.run_pending())

    start = clock.t
    for _ in range(5):
        minute(0.5e9)  # five calm minutes
    for _ in range(3):
        minute(5e9)  # slow: p95 of the last 5 minutes passes 2 s once > 5% of its calls are slow
    for _ in range(6):
        minute(0.5e9)  # calm again: the slow calls leave the window
    assert [s for s, _ in states] == ["pending", "firing", "resolved"]
    (_, pending_at), (_, firing_at), (_, resolved_at) = states
    assert 300 < pending_at <= 320 and firing_at - pending_at == 60
    # the last slow calls (at 460 and 470) keep p95 above 2 s until 750; 30 s more of keep_firing_for
    assert resolved_at == 750 + 30
    assert [r[1] for r in _alert_rows(hub)] == ["crucible_alert.pending", "crucible_alert.firing",
                                                 "crucible_alert.resolved"]  # fmt: skip
    assert exp.id in {r[0] for r in _alert_rows(hub)}


def test_gpu_idle_while_training_is_per_gpu(hub: ct.Telemetry) -> None:
    clock = Clock(60.0)
    rule = alerts.threshold(
        "gpu_idle",
        "gpu_utilization_percent",
        "<",
        10,
        event="crucible_system.sample",
        agg="mean",
        window="10m",
        for_="10m",
        where={"device": "gpu"},
        by=("host", "gpu_index"),
    )
    eng = alerts.Engine([rule], hub=hub, interval=60, clock=clock, start=False, log=False)
    hub.start_experiment("gpus")
    fired = []
    for _ in range(2 * 60 + 6):  # 21 minutes of samples every 10 s
        hub.emit("crucible_system.sample", {"cpu_percent": 50.0}, {"device": "host"})
        for gpu, util in ((0, 97.0), (1, 2.0)):
            m = {"gpu_index": float(gpu), "gpu_utilization_percent": util}
            hub.emit("crucible_system.sample", m, {"device": "gpu", "gpu_index": gpu})
        clock.advance(10)
        fired += [t for t in eng.run_pending() if t.state == "firing"]
    [t] = fired
    assert t.labels["gpu_index"] == "1" and t.labels["host"]


def test_a_stalled_writer_fires_the_absence_rule_and_a_new_step_resolves_it(hub: ct.Telemetry) -> None:
    clock = Clock(5.0)
    eng = alerts.Engine([alerts.absent("stalled", window="1m")], hub=hub, interval=5, clock=clock, start=False)
    hub.start_experiment("stall")
    seen = []
    for step in range(20):
        hub.emit(STEP, {"loss": 1.0, "global_step": step})
        clock.advance(2)
        seen += eng.run_pending()
    assert seen == []
    clock.advance(55)  # 57 s since the last step: not yet
    assert eng.run_pending() == []
    clock.advance(5)
    [t] = eng.run_pending()
    assert t.state == "firing" and t.value >= 60
    hub.emit(STEP, {"loss": 1.0, "global_step": 20})
    clock.advance(5)
    [t] = eng.run_pending()
    assert t.state == "resolved"


def test_paused_and_stopped_experiments_are_not_evaluated(hub: ct.Telemetry) -> None:
    clock = Clock(5.0)
    eng = alerts.Engine([alerts.absent("stalled", window=10)], hub=hub, interval=5, clock=clock, start=False)
    eng.add(alerts.nonfinite("loss_nan"))
    exp = hub.start_experiment("pause")
    hub.pause_experiment(exp.id)
    hub.emit(STEP, {"loss": math.nan})  # dropped by the hub while paused: not seen by the rules either
    clock.advance(60)
    assert eng.run_pending() == [] and not eng._inbox
    hub.resume_experiment(exp.id)
    hub.emit(STEP, {"global_step": 1})  # a step (so no absence), with no loss: the NaN was never recorded
    clock.advance(5)
    assert eng.run_pending() == []
    hub.stop_experiment(exp.id)
    clock.advance(60)
    assert eng.run_pending() == [] and not eng._known


def test_module_functions_run_one_engine_on_the_default_hub(hub: ct.Telemetry) -> None:
    try:
        e = ct.alerts.add(alerts.nonfinite("loss_nan"))
        assert ct.alerts.engine() is e and e.running and e.hub is hub
        ct.alerts.add(alerts.absent("stalled"))
        assert [r.name for r in e.rules] == ["loss_nan", "stalled"]
        with pytest.raises(ct.InvalidArgumentError, match="rule:"):
            ct.alerts.add(alerts.nonfinite("loss_nan"))
    finally:
        ct.alerts.stop()
    assert not e.running and not hub.list_handlers(STEP)


def test_a_forked_child_queues_nothing(hub: ct.Telemetry) -> None:
    """A DataLoader worker has no evaluation thread: its handler returns at once (its rows reach the store)."""
    eng = alerts.Engine([alerts.nonfinite("loss_nan")], hub=hub, interval=1, start=False, log=False)
    hub.start_experiment("fork")
    pid = os.fork()
    if pid == 0:  # the child
        code = 3
        try:
            for _ in range(100):
                hub.emit(STEP, {"loss": 1.0})
            code = 0 if (len(eng._inbox), eng.dropped, eng._forked) == (0, 0, True) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    hub.emit(STEP, {"loss": 1.0})
    assert len(eng._inbox) == 1  # the parent still queues
