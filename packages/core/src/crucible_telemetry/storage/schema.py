"""Arrow schemas of the stored datasets; the README documents the same columns."""

from __future__ import annotations

import pyarrow as pa

__all__ = ["EVENTS_SCHEMA", "FORMAT", "METRICS_SCHEMA", "STANDARD_KEYS", "with_standard_columns"]

#: The storage format of this release, in every data file's name (``..._<ms>.v2.parquet``), so a
#: reader knows a file's columns without opening it: v2 added the standard-key columns. Files
#: without it are read by name (``union_by_name``) and upgraded by the next merge.
FORMAT = ".v2"

#: Standard measurement keys (README, "Events") that are also columns of their own: read without a
#: map lookup (``loss`` is ``measurements['loss']``; both always hold the same value).
STANDARD_KEYS = (
    "loss",
    "accuracy",
    "learning_rate",
    "gradient_norm",
    "samples_per_second",
    "tokens_per_second",
    "ttft_ns",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "cost_usd",
)

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
        *[(k, pa.float64()) for k in STANDARD_KEYS],
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


def with_standard_columns(table: pa.Table) -> pa.Table:
    """``table`` with every standard-key column, filled from ``measurements`` where it is missing
    (rows of files written before they existed), cast to ``EVENTS_SCHEMA``."""
    import pyarrow.compute as pc

    for key in STANDARD_KEYS:
        looked = pc.map_lookup(table.column("measurements"), pa.scalar(key, pa.string()), "first").cast(pa.float64())
        if key in table.column_names:
            i = table.column_names.index(key)
            table = table.set_column(i, key, pc.coalesce(table.column(i).cast(pa.float64()), looked))
        else:
            table = table.append_column(key, looked)
    return table.select(EVENTS_SCHEMA.names).cast(EVENTS_SCHEMA)
