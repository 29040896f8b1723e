"""Runs written by ``torch.utils.tensorboard.SummaryWriter`` imported: points equal TensorBoard's own reader's."""

from __future__ import annotations

from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry import importers

from .._requires import requires_plugin


def _write(logdir: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(logdir / "a"))
    for i in range(50):
        w.add_scalar("loss", 1.0 / (i + 1), i)
        w.add_scalar("acc/train", i / 50, i, new_style=True)  # a tensor of the scalars plugin
    w.add_hparams({"lr": 0.01, "opt": "adam", "bn": True}, {"hp/metric": 0.5}, run_name="hp")
    w.close()
    w = SummaryWriter(str(logdir / "b"))
    for i in range(0, 30, 3):
        w.add_scalar("loss", 2.0 - i / 30, i)
    w.close()


def _read_with_tensorboard(run_dir: Path) -> list[tuple[str, float, int, float]]:
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return sorted(
        (tag, float(tensor_util.make_ndarray(e.tensor_proto).item()), e.step, e.wall_time)
        for tag in acc.Tags()["tensors"]
        if acc.SummaryMetadata(tag).plugin_data.plugin_name == "scalars"
        for e in acc.Tensors(tag)
    )


@requires_plugin("torch", "tensorboard")
def test_a_logdir_imports_one_run_per_folder_with_points_steps_wall_times_and_hparams(
    hub: ct.Telemetry, tmp_path: Path
) -> None:
    logdir = tmp_path / "tb"
    _write(logdir)
    res = importers.tensorboard(logdir, hub=hub)
    assert not res.problems and len(res.imported) == 3
    with hub.connect() as con:
        runs = dict(con.execute("SELECT name, experiment_id FROM experiments").fetchall())
        assert set(runs) == {"a", "a/hp", "b"}
        for name, eid in runs.items():
            got = con.execute(
                "SELECT metric, value, step, json_extract(metadata, '$.wall_time')::DOUBLE FROM metrics WHERE run_id = ?",
                [eid],
            ).fetchall()
            expected = _read_with_tensorboard(logdir / name)
            assert len(expected) > 0 and sorted(got) == expected
            ts = con.execute(
                "SELECT epoch_us(ts), json_extract(metadata, '$.wall_time')::DOUBLE FROM metrics WHERE run_id = ?",
                [eid],
            ).fetchall()
            assert all(abs(us / 1e6 - wall) < 1e-5 for us, wall in ts)  # ts is when the source measured it
    assert res.points == 50 + 50 + 1 + 10
    hp = hub.get_experiment(runs["a/hp"])
    assert hp.params == {"lr": 0.01, "opt": "adam", "bn": True}
    a = hub.get_experiment(runs["a"])
    walls = [w for *_, w in _read_with_tensorboard(logdir / "a")]
    assert a.started_at.timestamp() == pytest.approx(min(walls)) and a.stopped_at.timestamp() == pytest.approx(
        max(walls)
    )
    assert a.environment == {}  # unknown: never the importing process's
    assert a.metadata["source"] == "tensorboard" and a.metadata["source_run_id"] == min(
        p.name for p in (logdir / "a").glob("*tfevents*")
    )

    moved = logdir.rename(tmp_path / "archive")  # a run keeps its identity wherever its logdir goes
    again = importers.tensorboard(moved, hub=hub)
    assert again.imported == [] and sorted(again.existing) == sorted(runs.values())
    with hub.connect() as con:
        assert con.execute("SELECT count(*) FROM metrics").fetchone()[0] == res.points


@requires_plugin("torch", "tensorboard")
def test_a_truncated_events_file_is_reported_and_the_rest_imported(hub: ct.Telemetry, tmp_path: Path) -> None:
    logdir = tmp_path / "tb"
    _write(logdir)
    (events,) = (logdir / "b").glob("*tfevents*")
    data = events.read_bytes()
    events.write_bytes(data[:-7])  # the last record cut short
    junk = logdir / "c" / "events.out.tfevents.0.junk"
    junk.parent.mkdir()
    junk.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00not-a-protobuf-at-all\x00\x00\x00\x00")
    res = importers.tensorboard(logdir, hub=hub)
    assert sorted(p for p, _ in res.problems) == [str(events), str(junk.resolve())]
    assert "truncated after 10 records" in dict(res.problems)[str(events)]
    assert len(res.imported) == 4 and res.points == 50 + 50 + 1 + 9  # b lost its last point only


def test_a_missing_logdir_names_the_argument(hub: ct.Telemetry, tmp_path: Path) -> None:
    with pytest.raises(ct.InvalidArgumentError, match="logdir"):
        importers.tensorboard(tmp_path / "nope", hub=hub)
