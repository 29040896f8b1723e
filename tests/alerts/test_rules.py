"""Rules, their files and the state machine, driven by explicit times (no clock, no store)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from crucible_telemetry import alerts
from crucible_telemetry.alerts import Evaluator
from crucible_telemetry.errors import InvalidArgumentError

EXP = "exp-20260101T000000-00000000"
T0 = 1_700_000_000.0  # a multiple of every interval used here
STEP = "crucible_train.batch.stop"


def _run(ev: Evaluator, feed: dict[float, list[dict]], until: float, live_from: float = T0) -> list[tuple]:
    """Evaluate every grid instant in (T0, until], feeding ``feed[t]`` (events at time t) first."""
    out = []
    k = int(T0 / ev.interval)
    times = sorted(feed)
    while (k + 1) * ev.interval <= until:
        k += 1
        at = k * ev.interval
        while times and times[0] <= at:
            t = times.pop(0)
            for m in feed[t]:
                ev.observe(t, m.pop("_event", STEP), EXP, m, m.pop("_md", None))
        out += [(tr.rule, tr.previous, tr.state, at - T0) for tr in ev.evaluate(at, {EXP: live_from})]
    return out


def test_durations_and_argument_errors_name_the_argument() -> None:
    assert alerts.parse_duration("window", "1h30m") == 5400
    assert alerts.parse_duration("window", "250ms") == 0.25
    assert alerts.parse_duration("window", 7) == 7.0
    for bad in ("5 minutes", "-1s", True, "", "m5"):
        with pytest.raises(InvalidArgumentError, match="window"):
            alerts.parse_duration("window", bad)
    with pytest.raises(InvalidArgumentError, match="op:"):
        alerts.threshold("x", "loss", "=>", 1)
    with pytest.raises(InvalidArgumentError, match="agg:"):
        alerts.threshold("x", "loss", ">", 1, agg="median", window=5)
    with pytest.raises(InvalidArgumentError, match="window:"):
        alerts.threshold("x", "loss", ">", 1, agg="mean")
    with pytest.raises(InvalidArgumentError, match="value:"):
        alerts.threshold("x", "loss", ">", math.nan)
    with pytest.raises(InvalidArgumentError, match="for_:"):
        alerts.nonfinite("x", for_="soon")
    with pytest.raises(InvalidArgumentError, match="name:"):
        alerts.absent(" ")
    with pytest.raises(InvalidArgumentError, match="rule:"):
        Evaluator([alerts.nonfinite("x"), alerts.nonfinite("x")])
    assert alerts.threshold("p", "duration", ">", 2e9, agg="p99.9", window="5m").quantile == pytest.approx(0.999)


def test_nonfinite_fires_on_nan_and_resolves_on_a_finite_value() -> None:
    ev = Evaluator([alerts.nonfinite("nan")], interval=1)
    got = _run(ev, {T0 + 0.5: [{"loss": 1.0}], T0 + 1.5: [{"loss": math.inf}], T0 + 4.5: [{"loss": 0.5}]}, T0 + 6)
    assert got == [("nan", "inactive", "firing", 2.0), ("nan", "firing", "resolved", 5.0)]


def test_for_holds_pending_and_a_false_condition_before_it_goes_back_to_inactive() -> None:
    ev = Evaluator([alerts.threshold("hi", "loss", ">", 5, for_=3)], interval=1)
    feed = {T0 + 0.5: [{"loss": 9.0}], T0 + 1.5: [{"loss": 1.0}], T0 + 2.5: [{"loss": 9.0}]}
    got = _run(ev, feed, T0 + 7)
    assert got == [
        ("hi", "inactive", "pending", 1.0),
        ("hi", "pending", "inactive", 2.0),
        ("hi", "inactive", "pending", 3.0),
        ("hi", "pending", "firing", 6.0),  # 3 s after it became pending: the last value still holds
    ]


def test_keep_firing_for_delays_the_resolution() -> None:
    ev = Evaluator([alerts.threshold("hi", "loss", ">", 5, keep_firing_for=2)], interval=1)
    feed = {T0 + 0.5: [{"loss": 9.0}], T0 + 1.5: [{"loss": 1.0}], T0 + 2.5: [{"loss": 1.0}]}
    assert _run(ev, feed, T0 + 5) == [("hi", "inactive", "firing", 1.0), ("hi", "firing", "resolved", 3.0)]


def test_no_data_neither_fires_nor_resolves() -> None:
    rule = alerts.threshold("slow", "duration", ">", 100, event="req_llm.request.stop", agg="mean", window=2, for_=2)
    ev = Evaluator([rule], interval=1)
    ev_ = "req_llm.request.stop"
    feed = {T0 + 0.5: [{"duration": 500.0, "_event": ev_}]}
    # pending at 1; the window is empty from 3 on, so no data: it stays pending and never fires
    assert _run(ev, feed, T0 + 10) == [("slow", "inactive", "pending", 1.0)]
    assert [a["state"] for a in ev.active()] == ["pending"]
    # data again, still above: it fires (active since 1); then a low value resolves it
    feed = {T0 + 10.5: [{"duration": 900.0, "_event": ev_}], T0 + 13.5: [{"duration": 1.0, "_event": ev_}]}
    got = []
    for k in range(11, 17):
        at = T0 + k
        for t in [t for t in sorted(feed) if t <= at]:
            for m in feed.pop(t):
                ev.observe(t, m.pop("_event"), EXP, m)
        got += [(tr.previous, tr.state, at - T0) for tr in ev.evaluate(at, {EXP: T0})]
    assert got == [("pending", "firing", 11.0), ("firing", "resolved", 14.0)]  # the window (12, 14] holds 1.0 only


def test_windowed_percentile_and_mean_over_the_window_only() -> None:
    rng = np.random.default_rng(0)
    values = rng.lognormal(20, 0.5, 400)
    p95 = alerts.threshold("p95", "duration", ">", 1.0, event="req_llm.request.stop", agg="p95", window=60)
    mean = alerts.threshold("mean", "duration", ">", 1.0, event="req_llm.request.stop", agg="mean", window=60)
    ev = Evaluator([p95, mean], interval=10)
    for i, v in enumerate(values):  # 400 values over 200 s: the last 60 s hold the last 120
        ev.observe(T0 + i * 0.5, "req_llm.request.stop", EXP, {"duration": float(v)})
    at = T0 + 199.5
    ev.evaluate(at, {EXP: T0})
    got = {a["rule"]: a["value"] for a in ev.active()}
    recent = values[-120:]
    assert got["p95"] == pytest.approx(float(np.quantile(recent, 0.95)), rel=0.03)
    assert got["mean"] == pytest.approx(float(recent.mean()), rel=0.02)  # the old edge is exact to window/60


def test_by_splits_alerts_and_where_filters_rows() -> None:
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
        labels={"severity": "warn"},
    )
    ev = Evaluator([rule], interval=60)
    ident = {"host": "node1"}
    for s in range(0, 1300, 10):
        t = T0 + s
        ev.observe(t, "crucible_system.sample", EXP, {"cpu_percent": 1.0}, {"device": "host"}, ident)
        for gpu, util in ((0, 3.0), (1, 95.0)):
            m = {"gpu_index": float(gpu), "gpu_utilization_percent": util}
            ev.observe(t, "crucible_system.sample", EXP, m, {"device": "gpu", "gpu_index": gpu}, ident)
    firing = []
    for k in range(1, 22):
        firing += [t for t in ev.evaluate(T0 + 60 * k, {EXP: T0}) if t.state == "firing"]
    assert len(firing) == 1
    assert firing[0].labels == {"severity": "warn", "host": "node1", "gpu_index": "0"}
    assert firing[0].at - T0 == 660  # pending at 60, firing 10 minutes later


def test_absence_counts_from_the_start_while_live_only() -> None:
    ev = Evaluator([alerts.absent("stalled", window=5)], interval=1)
    got = _run(ev, {T0 + 2.5: [{"loss": 1.0}], T0 + 3.5: [{"loss": 1.0}]}, T0 + 12)
    assert got == [("stalled", "inactive", "firing", 9.0)]  # last step at 3.5, 5 s without one at 8.5
    # not live: nothing is evaluated (the experiment ended), so nothing changes
    assert ev.evaluate(T0 + 13, {}) == []


def test_rule_files_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "alerts.toml"
    toml.write_text(
        """
interval = "15s"

[[rule]]
name = "loss_nan"
kind = "nonfinite"
measurement = "loss"

[[rule]]
name = "llm_p95_slow"
kind = "threshold"
event = "req_llm.request.stop"
measurement = "duration"
agg = "p95"
window = "5m"
op = ">"
value = 2e9
for = "1m"
keep_firing_for = "30s"
labels = { severity = "page" }

[[rule]]
name = "stalled"
kind = "absent"
window = "10m"
"""
    )
    rules, interval = alerts.load_file(toml)
    assert interval == 15
    assert [r.kind for r in rules] == ["nonfinite", "threshold", "absent"]
    slow = rules[1]
    assert (slow.window, slow.for_, slow.keep_firing_for, slow.quantile) == (300, 60, 30, 0.95)
    assert dict(slow.labels) == {"severity": "page"}
    assert slow == alerts.threshold(
        "llm_p95_slow",
        "duration",
        ">",
        2e9,
        event="req_llm.request.stop",
        agg="p95",
        window="5m",
        for_="1m",
        keep_firing_for="30s",
        labels={"severity": "page"},
    )
    js = tmp_path / "alerts.json"
    js.write_text(json.dumps({"rules": [r.to_dict() for r in rules]}))
    assert alerts.load(js) == rules

    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "x"\nkind = "threshold"\nmeasurement = "loss"\nop = ">"\nvalue = 1\nwindoe = 3\n')
    with pytest.raises(InvalidArgumentError, match=r"bad\.toml: rule 1 \('x'\): unknown field\(s\) windoe"):
        alerts.load(bad)
    bad.write_text('[[rule]]\nname = "x"\nkind = "threshold"\nmeasurement = "loss"\nop = "~"\nvalue = 1\n')
    with pytest.raises(InvalidArgumentError, match="op:"):
        alerts.load(bad)
    bad.write_text("[[rule]\n")
    with pytest.raises(InvalidArgumentError, match="not valid"):
        alerts.load(bad)
    with pytest.raises(InvalidArgumentError, match="cannot read"):
        alerts.load(tmp_path / "missing.toml")
