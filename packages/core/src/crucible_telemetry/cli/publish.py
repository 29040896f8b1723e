"""``crucible publish``: write the Delta Lake log over the live files, for Spark, Polars and delta-rs."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import CommandError, home_of

__all__ = ["register"]


def _publish(args: argparse.Namespace) -> int:
    from ..storage.delta import publish

    home = home_of(args)
    if not any((home / d).is_dir() for d in ("events", "metrics")):
        raise CommandError(f"no crucible store at {home} (pass --home DIR or set CRUCIBLE_HOME)")
    for dataset, version in publish(home).items():
        state = "already current" if version is None else f"version {version}"
        print(f"{home / dataset / '_delta_log'}: {state}")
    return 0


def register(add: Any) -> None:
    """Add ``publish``."""
    add(
        "publish",
        _publish,
        help="write the Delta Lake log other engines read (events/_delta_log, metrics/_delta_log)",
        description="Bring each dataset's Delta Lake log up to its live files: adds for new ones, removes for "
        "covered ones, no data rewritten. Once a log exists, every merge keeps it current.",
        epilog="examples:\n  crucible publish\n  crucible publish --home /shared/crucible",
    )
