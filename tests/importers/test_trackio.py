"""A real Trackio project imported: the points equal what Trackio's own reader returns; a damaged database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry import importers

from .._requires import requires_plugin

pytestmark = pytest.mark.slow  # a subprocess

# Trackio reads $TRACKIO_DIR when it is imported: a child process writes the project and reads it back.
_CHILD = """
import json, trackio
from trackio.sqlite_storage import SQLiteStorage
for name, lr in (("tk-a", 0.1), ("tk-b", 0.01)):
    trackio.init(project="proj", name=name, config={"lr": lr, "opt": {"name": "adam"}}, auto_log_gpu=False)
    for i in range(6):
        trackio.log({"loss": lr / (i + 1), "acc": i / 6})
    trackio.log({"val/loss": 0.3, "bad": float("nan")}, step=10)
    trackio.finish()
out = {}
for name in ("tk-a", "tk-b"):
    out[name] = [{k: (None if v != v else v) if isinstance(v, float) else str(v) if not isinstance(v, (int, str)) else v
                  for k, v in row.items()} for row in SQLiteStorage.get_logs("proj", name)]
print(json.dumps(out))
"""


def _project(home: Path) -> dict[str, list[dict]]:
    env = {**os.environ, "TRACKIO_DIR": str(home), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@requires_plugin("trackio")
def test_a_trackio_project_imports_each_run_with_what_trackio_reads_back(
    hub: ct.Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = _project(tmp_path / "trackio")
    (tmp_path / "trackio" / "junk.db").write_bytes(b"this is not sqlite" * 100)
    res = importers.trackio(tmp_path / "trackio", hub=hub)
    assert len(res.imported) == 2
    assert [p for p, _ in res.problems] == [str((tmp_path / "trackio" / "junk.db").resolve())]
    with hub.connect() as con:
        for eid in res.imported:
            exp = hub.get_experiment(eid)
            assert exp.params == {"lr": 0.1 if exp.name == "tk-a" else 0.01, "opt.name": "adam"}
            got = con.execute(
                "SELECT metric, value, step FROM metrics WHERE run_id = ? AND NOT starts_with(metric, 'system/')",
                [eid],
            ).fetchall()
            expected = [
                (k, v, row["step"])
                for row in logs[exp.name]
                for k, v in row.items()
                if k not in ("step", "timestamp") and isinstance(v, (int, float))
            ]
            nan = [(m, s) for m, v, s in got if v != v]
            assert sorted((m, v, s) for m, v, s in got if v == v) == sorted(expected)
            assert nan == [("bad", 10)]  # Trackio's "NaN" comes back as a NaN
    assert importers.trackio(tmp_path / "trackio" / "proj.db", hub=hub).existing == res.imported
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    assert importers.trackio("proj", hub=hub).existing == res.imported  # a project name, as Trackio knows it


def test_an_unknown_project_names_the_argument(
    hub: ct.Telemetry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path))
    with pytest.raises(ct.InvalidArgumentError, match="project"):
        importers.trackio("no-such-project", hub=hub)
