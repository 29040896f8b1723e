"""Issue 12, cases 1 and 8: one bad event is quarantined on its own, never the batch around it."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crucible_telemetry as ct

from .._requires import requires_plugin


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def _balanced(stats: dict[str, Any]) -> bool:
    return stats["emitted"] == (
        stats["stored"]
        + stats["pending"]
        + stats["dropped_overflow"]
        + stats["dropped_paused"]
        + stats["rejected_total"]
    )


def _good(hub: ct.Telemetry, exp_id: str) -> list[int]:
    con = hub.connect()
    rows = con.execute(
        "SELECT measurements['i'] FROM events WHERE experiment_id = ? AND event = 'good.one' "
        "ORDER BY measurements['i']",
        [exp_id],
    ).fetchall()
    return [int(r[0]) for r in rows]


# (measurements, metadata) of events that once cost their whole batch
POISON: list[tuple[Any, Any]] = [
    ({0: 1.0}, None),  # an int measurement key ({layer: grad_norm})
    ({"v": 1.0}, {"o": _BadRepr()}),  # metadata whose repr raises
    ({"global_step": 2**63}, None),  # a step beyond int64
    ({"v": 1.0}, {"epoch": 2**64, "global_step": -(2**70)}),
    ({"v": 2**2000}, None),  # an int beyond float64
    ([1.0, 2.0], None),  # measurements that are not a dict
    ({"v": 1.0}, 5),  # metadata that is not a dict
    ({"v": sys.float_info.max}, None),
    ({"v": 1.0}, {("a", 1): 2, "cyc": None}),  # a key orjson cannot encode
]


@pytest.mark.parametrize("poison", range(len(POISON)), ids=lambda i: repr(POISON[i][0])[:20])
def test_one_bad_event_never_costs_its_neighbours(tmp_path: Path, poison: int) -> None:
    m, md = POISON[poison]
    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    try:
        exp = hub.start_experiment("poison")
        for i in range(3000):
            hub.emit("good.one", {"i": i})
            if i == 1500:
                hub.emit("bad.one", m, md)  # never raises
        assert hub.flush() >= 3000
        assert _good(hub, exp.id) == list(range(3000))
        s = hub.stats()
        assert s["emitted"] == 3001 and s["pending"] == 0 and _balanced(s), s
        hub.store.get_all(exp.id)  # no query ...
        hub.stop_experiment(exp.id)  # ... nor stop raises for it
        assert hub.get_experiment(exp.id).status == "stopped"
    finally:
        hub.close()


def test_non_dict_metadata_and_measurements_are_rejected_by_reason(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    try:
        hub.start_experiment("reasons")
        hub.emit("bad.md", {"v": 1.0}, metadata=5)  # type: ignore[arg-type]
        hub.emit("bad.md", {"v": 1.0}, metadata="text")  # type: ignore[arg-type]
        hub.emit("bad.m", [1, 2])  # type: ignore[arg-type]
        hub.emit("good.one", {"i": 0})
        hub.flush()
        s = hub.stats()
        assert s["rejected"] == {"metadata_not_a_dict": 2, "measurements_not_a_dict": 1}
        assert s["stored"] == 1 and _balanced(s)
    finally:
        hub.close()


def test_numbers_keep_their_meaning(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    try:
        exp = hub.start_experiment("values")
        hub.emit("num.np", {"f32": np.float32(1.5), "i64": np.int64(7), "flag": np.bool_(True), "arr0": np.array(2.5)})
        hub.emit("num.step", {"v": 1.0}, {"global_step": 3.7, "epoch": 2})
        hub.emit("num.step", {"v": 2.0}, {"global_step": 2**63})
        hub.emit("num.keys", {0: 1.0, 1: 2.0})
        hub.flush()
        rows = {(r["event"], r["measurements"].get("v")): r for r in hub.store.get_all(exp.id)}
        np_row = rows[("num.np", None)]
        assert np_row["measurements"] == {"f32": 1.5, "i64": 7.0, "flag": 1.0, "arr0": 2.5}
        assert rows[("num.step", 1.0)]["global_step"] is None  # 3.7 is not a step: NULL, not 3
        assert rows[("num.step", 1.0)]["epoch"] == 2
        assert rows[("num.step", 2.0)]["global_step"] is None  # beyond int64: NULL, not an overflow
        assert rows[("num.keys", None)]["measurements"] == {"0": 1.0, "1": 2.0}
        assert hub.stats()["rejected_total"] == 0
    finally:
        hub.close()


@requires_plugin("torch")
def test_a_cpu_zero_d_tensor_is_a_number(tmp_path: Path) -> None:
    import torch

    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    try:
        exp = hub.start_experiment("tensor")
        hub.emit("t.loss", {"loss": torch.tensor(2.5), "ok": torch.tensor(True)})
        hub.flush()
        (row,) = hub.store.get_all(exp.id)
        assert row["measurements"] == {"loss": 2.5, "ok": 1.0}
    finally:
        hub.close()


def test_unknown_or_invalid_explicit_experiment_id_is_counted(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    try:
        hub.start_experiment("explicit")
        hub.emit("x.y", {"v": 1.0}, {"experiment_id": "no-such-exp"})
        hub.emit("x.y", {"v": 1.0}, {"experiment_id": "x\n"})
        hub.emit("x.y", {"v": 1.0}, {"experiment_id": "../../etc"})
        hub.emit("x.y", {"v": 1.0}, {"experiment_id": 5})
        hub.flush()
        s = hub.stats()
        assert s["rejected"] == {"unknown_experiment_id": 1, "invalid_experiment_id": 3}
        assert s["emitted"] == 4 and _balanced(s)
    finally:
        hub.close()


def test_events_outside_any_experiment_and_while_paused_are_accounted(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    try:
        hub.emit("early.one", {"v": 1.0})  # no experiment yet: handlers only
        exp = hub.start_experiment("acct")
        hub.pause_experiment(exp.id)
        hub.emit("paused.one", {"v": 1.0})
        hub.emit("paused.one", {"v": 1.0}, {"experiment_id": exp.id})
        hub.resume_experiment(exp.id)
        hub.emit("", {"v": 1.0})  # an invalid name
        hub.emit("good.one", {"i": 0})
        hub.flush()
        s = hub.stats()
        assert s["rejected"] == {"no_experiment": 1, "invalid_name": 1}
        assert (s["dropped_paused"], s["stored"], s["emitted"]) == (2, 1, 5) and _balanced(s)
    finally:
        hub.close()


def test_the_largest_floats_never_break_a_later_flush_or_the_live_stats(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    try:
        exp = hub.start_experiment("huge", bind=False)
        for v in (sys.float_info.max, -sys.float_info.max, 1e308, 5e-324, math.inf):
            hub.emit("h.v", {"v": v}, {"experiment_id": exp.id})
        hub.flush()
        hub.emit("h.v", {"v": 1.0}, {"experiment_id": exp.id})
        hub.flush()
        assert list(hub.write_errors) == []
        assert hub.stats()["stored"] == 6
        live = hub.streaming.get_metrics(exp.id)["events"]["h.v"]["measurements"]["v"]
        assert (live["count"], live["nonfinite"]) == (5, 1)
        assert live["max"] == sys.float_info.max and live["min"] == -sys.float_info.max
        assert live["mean"] == pytest.approx((1e308 + 5e-324 + 1.0) / 5)  # the two extremes cancel, exactly
        assert not math.isnan(live["std"])  # beyond floats it is inf, never NaN
    finally:
        hub.close()
