"""SQL helpers over the store for the Lightning tests."""

from __future__ import annotations

from typing import Any

import crucible_telemetry as ct


def events(hub: ct.Telemetry, exp_id: str) -> list[dict[str, Any]]:
    """Every event of ``exp_id`` in emission order, measurements as a dict."""
    hub.flush()
    res = hub.store.execute(
        "SELECT event, epoch, batch, global_step, rank, measurements, metadata FROM events "
        "WHERE experiment_id = ? ORDER BY rank NULLS FIRST, seq",
        [exp_id],
    )
    return [dict(zip(res.columns, row)) for row in res.fetchall()]


def metrics(hub: ct.Telemetry, run_id: str) -> list[dict[str, Any]]:
    """Every metric row of ``run_id`` in write order."""
    hub.flush()
    res = hub.store.execute(
        "SELECT metric, value, step, epoch, kind, rank, node FROM metrics WHERE run_id = ? ORDER BY rank NULLS FIRST, seq",
        [run_id],
    )
    return [dict(zip(res.columns, row)) for row in res.fetchall()]


def duplicates(hub: ct.Telemetry, run_id: str) -> list[tuple[Any, ...]]:
    """``(metric, step, rank, count)`` groups that appear more than once."""
    hub.flush()
    return hub.store.execute(
        "SELECT metric, step, rank, count(*) FROM metrics WHERE run_id = ? "
        "GROUP BY metric, step, rank HAVING count(*) > 1",
        [run_id],
    ).fetchall()
