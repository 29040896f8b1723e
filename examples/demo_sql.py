"""Demo: one SQL query lines up the per-epoch loss of the Lightning run and the Hugging Face run."""

from __future__ import annotations

from typing import Any

import crucible_telemetry as ct

PER_EPOCH_LOSS = """
    WITH fw AS (SELECT experiment_id, any_value(json_extract_string(metadata, '$.framework')) AS framework
                FROM events WHERE event = 'crucible_train.training.start' GROUP BY experiment_id)
    SELECT r.name, fw.framework, e.epoch, round(avg(e.measurements['loss']), 4) AS loss
    FROM events e JOIN runs r USING (experiment_id) LEFT JOIN fw USING (experiment_id)
    WHERE e.event = 'crucible_train.epoch.stop' AND e.experiment_id IN (?, ?)
    GROUP BY ALL ORDER BY r.name, e.epoch
"""


def _exp_id(result: Any) -> str | None:
    if isinstance(result, dict):
        for key in ("experiment_id", "exp_id", "id"):
            if isinstance(result.get(key), str):
                return str(result[key])
    return None


def run(hub: ct.Telemetry, results: dict[str, Any]) -> dict[str, Any]:
    """Print the same query's answer for both trainers."""
    ids = [_exp_id(results.get("demo_lightning")), _exp_id(results.get("demo_hf"))]
    if not all(ids):
        print("  (needs both the Lightning and the HF demo)")
        return {}
    print("  the same SQL over `events` for a Lightning run and an HF run:")
    print("  " + " ".join(PER_EPOCH_LOSS.split()))
    con = hub.connect()
    rows = con.execute(PER_EPOCH_LOSS, ids).fetchall()
    con.close()
    for row in rows:
        print("   ", row)
    return {"rows": rows}
