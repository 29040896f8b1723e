"""The python blocks of packages/postgres/README.md run as written (the DSN pointed at the test server)."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

import crucible_telemetry as ct

README = Path(__file__).resolve().parents[2] / "packages" / "postgres" / "README.md"
EXAMPLE_DSN = "postgresql://me@127.0.0.1:5432/lab"


def test_the_readme_examples_run(hub: ct.Telemetry, dsn: str) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    assert len(blocks) == 2 and all(f'"{EXAMPLE_DSN}"' in b for b in blocks)
    quoted = f'"{EXAMPLE_DSN}"'  # the test server's DSN where the README shows the example URL
    first: dict[str, object] = {}
    exec(blocks[0].replace(quoted, repr(dsn)), first)
    rows = first["rows"]
    assert isinstance(rows, list) and [r["step"] for r in rows] == list(range(100))
    assert rows[0]["metadata"] == {"phase": "train"} and rows[9]["value"] == 0.1

    for step in range(3):  # core rows of run-1, as a logger would write them
        ct.MetricsStore.record("duckdb", "run-1", "val_loss", 0.5 - step / 10, step=step)
    second: dict[str, object] = {}
    exec(blocks[1].replace(quoted, repr(dsn)), second)
    assert second["copied"] == 3
    with psycopg.connect(dsn) as conn:
        assert conn.execute(
            "SELECT metric, max(step) FROM crucible_metrics WHERE source = 'core' GROUP BY metric"
        ).fetchall() == [("val_loss", 2)]
