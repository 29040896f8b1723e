"""``Telemetry(home="s3://...")``: each node writes a local spool and sends every segment, merge and
record to the remote home as it is written; every reader (any node, the CLI) sees each row once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import crucible_telemetry as ct

ROOT = Path(__file__).resolve().parents[2]
_NODE = """
import sys
import crucible_telemetry as ct
hub = ct.Telemetry(sys.argv[1], flush_interval=3600)
exp = hub.join_experiment(sys.argv[2])
for b in range(3):
    for i in range(50):
        hub.emit("n.e", {"i": b * 50 + i, "loss": 1.0 / (i + 1)}, {"experiment_id": exp.id, "epoch": b})
    hub.flush()
hub.close()
"""


def test_two_nodes_write_one_remote_home_and_every_reader_sees_each_row_once(
    tmp_path: Path, s3: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{s3['bucket']}/live/one"
    monkeypatch.setenv("CRUCIBLE_SPOOL", str(tmp_path / "spool-lead"))
    lead = ct.Telemetry(url, flush_interval=3600)
    exp = lead.start_experiment("shared", bind=False)
    for i in range(20):
        lead.emit("n.e", {"i": 1000 + i}, {"experiment_id": exp.id})
    lead.flush()
    con = lead.connect()
    assert con.execute("SELECT count(*) FROM events").fetchone() == (20,)  # sent with the flush
    nodes = []
    for node in (0, 1):  # two more nodes, each with a spool of its own and a node rank
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CRUCIBLE_SPOOL": str(tmp_path / f"spool-{node}")}
        env.update({"NODE_RANK": str(node), "RANK": str(node), "WORLD_SIZE": "2"})
        nodes.append(subprocess.run([sys.executable, "-c", _NODE, url, exp.id], env=env, timeout=180))
    assert [p.returncode for p in nodes] == [0, 0]
    rows = con.execute("SELECT node, count(*), count(DISTINCT (pid, seq)) FROM events GROUP BY node ORDER BY node")
    assert rows.fetchall() == [(0, 150, 150), (1, 150, 150), (None, 20, 20)]
    lead.stop_experiment(exp.id)
    # the stopped record and the merges are there: a reader that never wrote sees the same
    reader = ct.connect_remote(url)
    assert reader.execute("SELECT name, status, events FROM runs").fetchall() == [("shared", "stopped", 320)]
    assert reader.execute("SELECT count(*), count(DISTINCT (pid, seq)) FROM events").fetchone() == (320, 320)
    assert lead.mirror.stats["failed"] == 0 and lead.mirror.stats["pending"] == 0
    assert len(lead.store.query(exp.id)) == 320
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CRUCIBLE_SPOOL": str(tmp_path / "spool-cli")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "crucible_telemetry.cli",
            "--home",
            url,
            "sql",
            "SELECT count(*) AS n FROM events",
            "--format",
            "csv",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert out.split() == ["n", "320"]
    lead.close()


def test_the_writer_of_a_merge_deletes_what_it_covers_after_the_grace_on_its_own_clock(
    tmp_path: Path, s3: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"s3://{s3['bucket']}/live/gc"
    monkeypatch.setenv("CRUCIBLE_SPOOL", str(tmp_path / "spool"))
    hub = ct.Telemetry(url, flush_interval=3600)
    exp = hub.start_experiment("gc", bind=False)
    for b in range(4):
        for i in range(10):
            hub.emit("g.e", {"i": b * 10 + i}, {"experiment_id": exp.id})
        hub.flush()
    folder = f"{hub.mirror.root}/events/experiment_id={exp.id}"
    assert len(hub.mirror.fs.glob(f"{folder}/*.parquet")) == 4
    hub.mirror.grace = 0.5
    hub.stop_experiment(exp.id)  # the merge is sent; its four segments are doomed, not yet deleted
    hub.mirror.fs.invalidate_cache()
    assert len(hub.mirror.fs.glob(f"{folder}/*.parquet")) == 5
    reader = ct.connect_remote(url)
    assert reader.execute("SELECT count(*), count(DISTINCT seq) FROM events").fetchone() == (40, 40)
    import time

    time.sleep(0.6)
    hub.mirror.collect()
    hub.mirror.fs.invalidate_cache()
    assert [p.rsplit("/", 1)[1].split("-")[0] for p in hub.mirror.fs.glob(f"{folder}/*.parquet")] == ["merge"]
    assert hub.mirror.stats["deleted"] == 4
    assert reader.execute("SELECT count(*), count(DISTINCT seq) FROM events").fetchone() == (40, 40)
    hub.close()


def test_an_unreachable_remote_home_never_raises_and_keeps_what_it_could_not_send(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("CRUCIBLE_SPOOL", str(tmp_path / "spool"))
    hub = ct.Telemetry("s3://nowhere/run", flush_interval=3600)
    exp = hub.start_experiment("offline", bind=False)  # its record cannot be sent: kept, not raised
    for i in range(30):
        hub.emit("o.e", {"i": i}, {"experiment_id": exp.id})
    hub.flush()
    stats = hub.mirror.stats
    assert stats["failed"] >= 1 and stats["pending"] >= 2 and stats["sent"] == 0
    folder = hub.events_writer.folder(exp.id)
    assert len(list(folder.glob("*.parquet"))) == 1  # the spool holds the segment, sent again later
    hub.close()
