"""Other engines read the published Delta log exactly: the same rows, counts, per-run mean/p95 and
per-epoch loss as ``ct.connect()``, on a live store (some runs merged, covered files still on disk)
and after compaction (the merges keep the log current by themselves)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import crucible_telemetry as ct
from crucible_telemetry.storage import delta, listing, merge

from .._requires import requires_plugin
from .conftest import start_runs, wait_all, writer

pytestmark = requires_plugin("deltalake", "polars", "pyspark")

EPOCHS, BATCHES, RANKS = 3, 40, 2
BATCH = "crucible_train.batch.stop"
EPOCH = "crucible_train.epoch.stop"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Three runs, two ranks on nodes 0 and 1, still running; run 0's partitions merged (its covered
    segments still on disk), runs 1 and 2 in live segments only; then the log published."""
    home = tmp_path_factory.mktemp("scaleout") / "crucible"
    ids = start_runs(home, 3)
    wait_all([writer(home, ids, rank, rank, EPOCHS, BATCHES) for rank in range(RANKS)])
    for dataset, key in (("events", "experiment_id"), ("metrics", "run_id")):
        assert merge.merge_folder(home / dataset / f"{key}={ids[0]}", final=True, dataset=dataset) is not None
    versions = delta.publish(home)
    assert versions == {"events": 0, "metrics": 0}
    assert delta.publish(home) == {"events": None, "metrics": None}  # current: no empty commit
    return home, ids


def _duck(home: Path) -> dict[str, Any]:
    hub = ct.Telemetry(home)
    prev = ct.set_default(hub)
    try:
        con = ct.connect()
        out = {
            "rows": sorted(con.execute("SELECT experiment_id, host, pid, seq FROM events").fetchall()),
            "runs": {
                r[0]: (r[1], r[2], r[3])
                for r in con.execute(
                    "SELECT experiment_id, count(*), avg(duration), quantile_cont(duration, 0.95) FROM events "
                    "WHERE event = ? GROUP BY 1",
                    [BATCH],
                ).fetchall()
            },
            "epochs": {
                (r[0], r[1]): r[2]
                for r in con.execute(
                    "SELECT experiment_id, epoch, avg(loss) FROM events WHERE event = ? GROUP BY 1, 2", [EPOCH]
                ).fetchall()
            },
            "metrics": con.execute("SELECT count(*), sum(value) FROM metrics").fetchone(),
        }
        con.close()
        return out
    finally:
        ct.set_default(prev)
        hub.close()


def _same(a: dict[Any, Any], b: dict[Any, Any]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-12), k


def _expected(home: Path, ids: list[str]) -> dict[str, Any]:
    duck = _duck(home)
    assert len(duck["rows"]) == len(ids) * RANKS * EPOCHS * (BATCHES + 1)  # the views' own globs: exact
    assert len(set(duck["rows"])) == len(duck["rows"])
    assert duck["metrics"][0] == len(ids) * RANKS * EPOCHS
    return duck


def _covered_on_disk(home: Path) -> int:
    folders = (home / "events").glob("experiment_id=*")
    return sum(len(listing.resolve(f, [n.name for n in f.iterdir()]).hidden) for f in folders)


def _deltalake(home: Path) -> dict[str, Any]:
    import deltalake

    ev = deltalake.DeltaTable(str(home / "events")).to_pyarrow_table()
    rows = sorted(zip(*(ev.column(c).to_pylist() for c in ("experiment_id", "host", "pid", "seq")), strict=True))
    me = deltalake.DeltaTable(str(home / "metrics")).to_pyarrow_table()
    return {"rows": rows, "metrics": (me.num_rows, math.fsum(me.column("value").to_pylist()))}


def _polars(home: Path) -> dict[str, Any]:
    import polars as pl

    ev = pl.scan_delta(str(home / "events"))
    runs = (
        ev.filter(pl.col("event") == BATCH)
        .group_by("experiment_id")
        .agg(pl.len(), pl.col("duration").mean().alias("m"), pl.col("duration").quantile(0.95, "linear").alias("p"))
        .collect()
    )
    epochs = ev.filter(pl.col("event") == EPOCH).group_by("experiment_id", "epoch").agg(pl.col("loss").mean()).collect()
    me = pl.read_delta(str(home / "metrics"))
    return {
        "runs": {r[0]: (r[1], r[2], r[3]) for r in runs.iter_rows()},
        "epochs": {(r[0], r[1]): r[2] for r in epochs.iter_rows()},
        "metrics": (me.height, math.fsum(me["value"].to_list())),
    }


def _spark(spark: Any, home: Path) -> dict[str, Any]:
    import deltalake

    out: dict[str, Any] = {}
    for dataset in ("events", "metrics"):
        root = home / dataset
        files = deltalake.DeltaTable(str(root)).file_uris()  # the log's file list: no delta-spark jars needed
        df = spark.read.option("basePath", root.as_uri()).parquet(*files)
        df.createOrReplaceTempView(dataset)
    q = spark.sql(
        f"SELECT experiment_id, count(*), avg(duration), percentile(duration, 0.95) FROM events "
        f"WHERE event = '{BATCH}' GROUP BY 1"
    ).collect()
    out["runs"] = {r[0]: (r[1], r[2], r[3]) for r in q}
    q = spark.sql(f"SELECT experiment_id, epoch, avg(loss) FROM events WHERE event = '{EPOCH}' GROUP BY 1, 2").collect()
    out["epochs"] = {(r[0], r[1]): r[2] for r in q}
    out["count"] = spark.sql("SELECT count(*) FROM events").collect()[0][0]
    values = [r[0] for r in spark.sql("SELECT value FROM metrics").collect()]
    out["metrics"] = (len(values), math.fsum(values))
    return out


def _check_all(home: Path, ids: list[str], spark: Any) -> None:
    duck = _expected(home, ids)
    dl = _deltalake(home)
    assert dl["rows"] == duck["rows"]  # every row once, none missing
    assert dl["metrics"] == pytest.approx(duck["metrics"], rel=1e-12)
    pl = _polars(home)
    _same(duck["runs"], pl["runs"])
    _same(duck["epochs"], pl["epochs"])
    assert pl["metrics"] == pytest.approx(duck["metrics"], rel=1e-12)
    if spark is not None:
        sp = _spark(spark, home)
        assert sp["count"] == len(duck["rows"])
        _same(duck["runs"], sp["runs"])
        _same(duck["epochs"], sp["epochs"])
        assert sp["metrics"] == pytest.approx(duck["metrics"], rel=1e-12)


def test_live_store_is_read_exactly_by_deltalake_and_polars(store: tuple[Path, list[str]]) -> None:
    home, ids = store
    assert _covered_on_disk(home) > 0  # a glob over the folders would count run 0 twice
    _check_all(home, ids, None)


@pytest.mark.slow
def test_spark_reads_the_logs_file_list_exactly_live_and_after_compaction(
    store: tuple[Path, list[str]], spark: Any
) -> None:
    home, ids = store
    _check_all(home, ids, spark)
    hub = ct.Telemetry(home)
    try:
        hub.store.compact()  # every partition merged; each merge publishes its folder
    finally:
        hub.close()
    import deltalake

    assert deltalake.DeltaTable(str(home / "events")).version() > 0
    assert len(deltalake.DeltaTable(str(home / "events")).file_uris()) == len(ids)
    _check_all(home, ids, spark)


def test_publish_cli_and_views_ignore_the_log(store: tuple[Path, list[str]]) -> None:
    from crucible_telemetry.cli.app import main

    home, ids = store
    assert main(["publish", "--home", str(home)]) == 0
    assert (home / "events" / delta.LOG / "00000000000000000000.json").is_file()
    assert "_delta_log" not in listing.partitions(home / "events", "experiment_id")
    _expected(home, ids)


@pytest.mark.slow
def test_readme_spark_recipe_runs(tmp_path: Path) -> None:
    from .._readme import run_example

    assert run_example("Other engines: Spark, Polars, Delta Lake", tmp_path)[-2:] == ["100", "49.5"]
