"""Fixtures of the scale-out tests: a store written by rank processes, one Spark session for all."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import crucible_telemetry as ct

WRITER = Path(__file__).with_name("_writer.py")


def start_runs(home: Path, n: int) -> list[str]:
    """``n`` runs started (and left running) in ``home``."""
    hub = ct.Telemetry(home)
    try:
        return [hub.start_experiment(f"scale-{i}").id for i in range(n)]
    finally:
        hub.close()


def writer(home: Path, ids: list[str], rank: int, node: int, epochs: int, batches: int, **env: str) -> Any:
    """A rank process (``RANK``, ``NODE_RANK``) writing ``epochs`` segments per run into ``ids``."""
    environ = {**os.environ, "RANK": str(rank), "NODE_RANK": str(node), "WORLD_SIZE": "4", **env}
    args = [sys.executable, str(WRITER), str(home), str(epochs), str(batches), *ids]
    return subprocess.Popen(args, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_all(procs: list[Any]) -> None:
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session (one core, small memory) for every test that needs it."""
    pyspark_sql = pytest.importorskip("pyspark.sql")
    session = (
        pyspark_sql.SparkSession.builder.master("local[1]")
        .appName("crucible-scaleout-tests")
        .config("spark.driver.memory", "512m")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
