"""Issue 12: >= 10,000 random events; every good neighbour is stored and every event accounted for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crucible_telemetry as ct


class _BadRepr:
    def __repr__(self) -> str:
        raise ValueError("unrepresentable")


class _BadFloat(float):
    def __float__(self) -> float:
        raise TypeError("no float")


_ints = st.one_of(st.integers(-10, 10), st.integers(), st.sampled_from([2**63, -(2**63) - 1, 2**64, 2**2000]))
_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    _ints,
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
    st.builds(np.bool_, st.booleans()),
    st.builds(np.array, st.floats()),
    st.lists(st.integers(), max_size=3),
    st.just(_BadRepr()),
    st.just(complex(1, 2)),
)
_keys = st.one_of(st.text(max_size=6), st.integers(-3, 3), st.tuples(st.integers(0, 2)), st.just(None))
_row_keys = st.sampled_from(["global_step", "epoch", "batch", "duration", "loss"])
_dicts = st.dictionaries(st.one_of(_keys, _row_keys), _values, max_size=4)
_measurements = st.one_of(_dicts, st.none(), st.integers(), st.lists(st.floats(), max_size=2), st.text(max_size=3))
_metadata = st.one_of(
    st.none(),
    _dicts,
    st.dictionaries(st.just("experiment_id"), st.one_of(st.text(max_size=8), st.integers()), max_size=1),
    st.integers(),
    st.text(max_size=3),
    st.just(_BadRepr()),
)
_names = st.one_of(st.sampled_from(["fuzz.a", "fuzz.b.c", "fuzz_d"]), st.text(max_size=6), st.integers())
_event = st.tuples(_names, _measurements, _metadata)

PER_EXAMPLE = 100
EXAMPLES = 110


def test_fuzz_every_good_neighbour_stored_and_every_event_accounted(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    exp = hub.start_experiment("fuzz")
    state = {"random": 0, "good": 0, "emitted": 0}

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(st.lists(_event, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE + 20))
    def run(events: list[tuple[Any, Any, Any]]) -> None:
        for name, m, md in events:
            hub.emit("good.one", {"i": state["good"]})  # the neighbour before ...
            state["good"] += 1
            hub.emit(name, m, md)  # never raises
            state["random"] += 1
        hub.emit("good.one", {"i": state["good"]})  # ... and after
        state["good"] += 1
        state["emitted"] += 2 * len(events) + 1
        hub.flush()
        s = hub.stats()
        assert s["emitted"] == state["emitted"], s
        assert s["pending"] == 0
        # only the event's own faults: nothing that a cleaned row still fails to build
        assert not [r for r in s["rejected"] if r.startswith(("unbuildable", "internal"))], s
        assert s["stored"] + s["dropped_overflow"] + s["dropped_paused"] + s["rejected_total"] == s["emitted"], s

    try:
        run()
        assert state["random"] >= 10_000
        con = hub.connect()
        (good,) = con.execute(
            "SELECT count(DISTINCT measurements['i']) FROM events WHERE event = 'good.one' AND experiment_id = ?",
            [exp.id],
        ).fetchone()
        assert good == state["good"]
        (total,) = con.execute("SELECT count(*) FROM events").fetchone()
        assert total == hub.stats()["stored"]
        hub.stop_experiment(exp.id)
        assert hub.write_errors is not None  # stop did not raise
    finally:
        hub.close()
