"""The store: Parquet segments written per process, read through DuckDB views."""

from .windows import Last, LastN, Range, Window

__all__ = ["Last", "LastN", "Range", "Window"]
