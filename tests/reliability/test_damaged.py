"""Issue 12, case 4: one damaged file never hides the others."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import crucible_telemetry as ct


def _store_with_two(home: Path) -> tuple[ct.Telemetry, str, str]:
    hub = ct.Telemetry(home, flush_interval=3600)
    a = hub.start_experiment("a", bind=False)
    b = hub.start_experiment("b", bind=False)
    for i in range(100):
        hub.emit("d.x", {"i": i}, {"experiment_id": a.id})
        hub.emit("d.x", {"i": i}, {"experiment_id": b.id})
    hub.flush()
    return hub, a.id, b.id


@pytest.mark.parametrize("damage", ["zero", "truncated", "garbage"])
def test_a_damaged_segment_is_set_aside_with_a_warning(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "h"
    hub, a, b = _store_with_two(home)
    try:
        (seg,) = (home / "events" / f"experiment_id={b}").glob("*.parquet")
        data = seg.read_bytes()
        bad = seg.with_name("otherhost-1-2_0_5.parquet")  # another writer's segment, in b's folder
        bad.write_bytes({"zero": b"", "truncated": data[: len(data) // 2], "garbage": b"PAR1" + b"x" * 99}[damage])
        junk = home / "metrics" / "run_id=r1"
        junk.mkdir(parents=True)
        (junk / "w_0_0.parquet").write_bytes(b"not parquet at all")
        with caplog.at_level(logging.WARNING, logger="crucible_telemetry"):
            con = hub.connect()
            got = dict(con.execute("SELECT experiment_id, count(*) FROM events GROUP BY 1").fetchall())
        assert got == {a: 100, b: 100}  # the damaged file hid neither experiment
        assert con.execute("SELECT count(*) FROM metrics").fetchone() == (0,)
        assert len(hub.store.get_all(a)) == 100
        assert any(bad.name in r.getMessage() for r in caplog.records)
        assert not bad.exists() and bad.with_name(bad.name + ".damaged").exists()
    finally:
        hub.close()


def test_a_damaged_record_hides_only_its_experiment(tmp_path: Path) -> None:
    home = tmp_path / "h"
    hub, a, b = _store_with_two(home)
    try:
        (home / "experiments" / "exp-broken.json").write_bytes(b'{"experiment_id": "exp-bro')
        (home / "experiments" / "exp-empty.json").write_bytes(b"")
        con = hub.connect()
        names = {r[0] for r in con.execute("SELECT experiment_id FROM runs").fetchall()}
        assert {a, b} <= names
        assert {e.id for e in hub.list_experiments()} >= {a, b}
    finally:
        hub.close()


def test_records_are_replaced_whole_and_a_non_object_record_reads_as_missing(tmp_path: Path) -> None:
    home = tmp_path / "h"
    hub = ct.Telemetry(home, flush_interval=3600)
    try:
        exp = hub.start_experiment("rec", metadata={"big": "x" * 200_000})
        hub.pause_experiment(exp.id)
        hub.stop_experiment(exp.id)
        folder = home / "experiments"
        assert not list(folder.glob(".*.tmp"))  # every temporary name was renamed
        assert hub.get_experiment(exp.id).metadata["big"] == "x" * 200_000
        (folder / "exp-list.json").write_bytes(b"[1, 2]")
        with pytest.raises(ct.UnknownExperimentError):
            hub.get_experiment("exp-list")
    finally:
        hub.close()
