"""Arrow schemas of the stored datasets; the README documents the same columns."""

from __future__ import annotations

import pyarrow as pa

__all__ = ["EVENTS_SCHEMA", "METRICS_SCHEMA"]

_TS = pa.timestamp("us", tz="UTC")

#: One row per event. ``experiment_id`` is the hive partition of the folder.
EVENTS_SCHEMA = pa.schema(
    [
        ("event", pa.string()),
        ("category", pa.string()),
        ("ts", _TS),
        ("mono_ns", pa.int64()),
        ("seq", pa.int64()),
        ("host", pa.string()),
        ("pid", pa.int32()),
        ("rank", pa.int32()),
        ("local_rank", pa.int32()),
        ("node", pa.int32()),
        ("world_size", pa.int32()),
        ("epoch", pa.int64()),
        ("global_step", pa.int64()),
        ("batch", pa.int64()),
        ("duration", pa.float64()),
        ("measurements", pa.map_(pa.string(), pa.float64())),
        ("metadata", pa.string()),
        ("tags", pa.list_(pa.string())),
    ]
)

#: One row per recorded metric value. ``run_id`` is the hive partition of the folder.
METRICS_SCHEMA = pa.schema(
    [
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("step", pa.int64()),
        ("epoch", pa.int64()),
        ("kind", pa.string()),
        ("tags", pa.map_(pa.string(), pa.string())),
        ("ts", _TS),
        ("seq", pa.int64()),
        ("host", pa.string()),
        ("pid", pa.int32()),
        ("rank", pa.int32()),
        ("local_rank", pa.int32()),
        ("node", pa.int32()),
        ("metadata", pa.string()),
    ]
)
