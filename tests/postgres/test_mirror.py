"""A real Lightning run recorded by CrucibleLogger, its metrics rows mirrored into PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from crucible_telemetry_postgres import mirror_runs

import crucible_telemetry as ct
from crucible_telemetry_lightning import CrucibleLogger

from ..lightning import tiny
from ..lightning.helpers import metrics


def _mirrored(dsn: str, run_id: str) -> list[tuple[str, float, int | None, int | None]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT metric, value, step, (metadata->>'epoch')::int FROM crucible_metrics "
            "WHERE run_id = %s AND source = 'core' ORDER BY id",
            [run_id],
        ).fetchall()
    return [(m, v, s, e) for m, v, s, e in rows]


def test_a_lightning_run_mirrors_into_postgres(hub: ct.Telemetry, tmp_path: Path, dsn: str) -> None:
    lg = CrucibleLogger()
    with ct.experiment("pg-mirror") as exp:
        tiny.trainer("lightning.pytorch", tmp_path, logger=lg, max_epochs=2).fit(
            tiny.module_class("lightning.pytorch")(), *tiny.loaders()
        )
    assert lg.errors == [] and lg.run_id == exp.id
    core = metrics(hub, exp.id)
    assert sum(r["metric"] == "train_loss_step" for r in core) == 10

    assert mirror_runs(dsn, [exp.id]) == len(core)
    got = sorted(_mirrored(dsn, exp.id), key=repr)
    want = sorted(((r["metric"], r["value"], r["step"], r["epoch"]) for r in core), key=repr)
    assert got == want  # every row, exactly (doubles round-trip), with the core's epoch in metadata

    assert mirror_runs(dsn, exp.id) == len(core)  # again: replaced, never doubled
    assert len(_mirrored(dsn, exp.id)) == len(core)
    with psycopg.connect(dsn) as conn:  # joinable with the user's own tables
        conn.execute("CREATE TABLE my_runs (run_id text PRIMARY KEY, owner text)")
        conn.execute("INSERT INTO my_runs VALUES (%s, 'ada')", [exp.id])
        owner, best = conn.execute(
            "SELECT r.owner, min(m.value) FROM crucible_metrics m JOIN my_runs r USING (run_id) "
            "WHERE m.metric = 'train_loss_step' GROUP BY r.owner"
        ).fetchone()
    assert owner == "ada" and best == min(r["value"] for r in core if r["metric"] == "train_loss_step")


def test_mirror_rejects_bad_arguments(dsn: str) -> None:
    with pytest.raises(ct.InvalidArgumentError, match="run_ids"):
        mirror_runs(dsn, [])
    with pytest.raises(ct.InvalidArgumentError, match="dsn"):
        mirror_runs("not a dsn", ["r"])
