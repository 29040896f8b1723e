"""Issue 12, case 7: every id that names a folder follows one rule, at every public entry."""

from __future__ import annotations

from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry.errors import InvalidArgumentError
from crucible_telemetry.integration import validate_id


@pytest.mark.parametrize("bad", ["x\n", "../x", "a/b", "", ".hidden", "x\r", "a" * 201, 5, None])
def test_validate_id_refuses_what_could_name_another_folder(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        validate_id("experiment_id", bad)


def test_validate_id_keeps_the_ids_it_always_took() -> None:
    for good in ["exp-20260101T000000-abcd1234", "run_1", "a.b:c+d@e", "A" * 200]:
        assert validate_id("experiment_id", good) == good


def test_a_trailing_newline_cannot_start_an_experiment(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "h", flush_interval=3600)
    try:
        with pytest.raises(InvalidArgumentError):
            hub.start_experiment("nl", experiment_id="x\n")
        assert not list((tmp_path / "h" / "experiments").iterdir())
    finally:
        hub.close()


def test_record_metric_refuses_a_run_id_that_climbs_out_of_the_home(tmp_path: Path) -> None:
    home = tmp_path / "deep" / "er" / "h"
    hub = ct.Telemetry(home, flush_interval=3600)
    try:
        for bad in ["../../../../x", "x\n", "a/b"]:
            with pytest.raises(InvalidArgumentError):
                hub.record_metric(bad, "loss", 1.0)
        hub.record_metric("run-ok", "loss", 1.0, step=1)
        hub.flush()
        folders = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("run_id=*"))
        assert "deep/er/h/metrics/run_id=run-ok" in folders
        assert all(f.startswith("deep/er/h/metrics/") for f in folders), folders  # none outside
        con = hub.connect()
        assert con.execute("SELECT count(*) FROM metrics").fetchone() == (1,)
    finally:
        hub.close()
