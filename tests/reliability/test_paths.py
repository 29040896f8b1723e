"""Issue 12, case 7: every id that names a folder follows one rule, at every public entry."""

from __future__ import annotations

from pathlib import Path

import duckdb
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


@pytest.mark.parametrize("key", ["metadata.", "measurements.", "metadata.a..b"])
def test_a_where_key_that_names_nothing_is_a_clear_error(tmp_path: Path, key: str) -> None:
    hub = ct.Telemetry(tmp_path / "h")
    try:
        exp = hub.start_experiment("w", bind=False)
        with pytest.raises(ct.InvalidArgumentError, match="names no key"):
            hub.store.query(exp.id, where={key: 1})
    finally:
        hub.close()


def test_metadata_keys_are_never_read_as_json_path_syntax(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "h")
    try:
        exp = hub.start_experiment("w", bind=False)
        hub.emit("a.b", {"v": 1}, {"experiment_id": exp.id, 'we"ird': "q", "$x[0]": "y", "a": {"b": 2}})
        hub.emit("a.b", {"v": 2}, {"experiment_id": exp.id, "x": "other"})
        for where in ({'metadata.we"ird': "q"}, {"metadata.$x[0]": "y"}, {"metadata.a.b": "2"}):
            assert [r["measurements"]["v"] for r in hub.store.query(exp.id, where=where)] == [1.0], where
    finally:
        hub.close()


def test_read_only_sql_cannot_write_or_read_files_outside_the_store(tmp_path: Path) -> None:
    hub = ct.Telemetry(tmp_path / "h")
    try:
        exp = hub.start_experiment("w", bind=False)
        hub.emit("a.b", {"v": 1}, {"experiment_id": exp.id})
        outside = tmp_path / "leak.csv"
        con = hub.connect()
        assert con.execute("SELECT count(*) FROM events").fetchone() == (1,)  # the store reads
        for sql in (
            f"COPY (SELECT 1) TO '{outside}'",
            f"SELECT * FROM read_csv('{tmp_path / 'h' / 'experiments' / (exp.id + '.json')}')",
            "SET enable_external_access = true",
            f"ATTACH '{tmp_path / 'x.db'}'",
        ):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        assert not outside.exists()
        writable = hub.connect(read_only=False)
        writable.execute(f"COPY (SELECT 1 AS one) TO '{outside}'")  # asked for: a connection of your own
        assert outside.read_text().strip().splitlines() == ["one", "1"]
    finally:
        hub.close()


def test_crucible_sql_refuses_statements_that_write_files(tmp_path: Path) -> None:
    import subprocess
    import sys

    home = tmp_path / "h"
    hub = ct.Telemetry(home)
    hub.start_experiment("w", bind=False)
    hub.close()
    target = home / "events" / "experiment_id=x" / "evil_1_1_1.v2.parquet"  # even inside the store
    for sql in (f"COPY (SELECT 1) TO '{target}'", f"EXPORT DATABASE '{tmp_path / 'dump'}'"):
        p = subprocess.run(
            [sys.executable, "-m", "crucible_telemetry.cli", "--home", str(home), "sql", sql],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert p.returncode == 1 and "crucible sql only reads" in p.stderr, p.stderr
    assert not target.exists() and not (tmp_path / "dump").exists()
