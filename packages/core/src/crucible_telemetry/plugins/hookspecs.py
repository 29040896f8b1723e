"""Hook specifications: how plugins contribute to crucible-telemetry.

Every hook hands the plugin a ``register`` callback, so the core owns validation and
de-duplication. Hooks wire things up once; none is ever called on the event hot path.
The registration hooks are historic: a plugin registered late (``register_plugin``) still
receives them, once, when it is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("crucible_telemetry")
hookimpl = pluggy.HookimplMarker("crucible_telemetry")

__all__ = ["hookimpl", "hookspec"]


# -------------------------------------------------------------------------
# Events
# -------------------------------------------------------------------------


@hookspec(historic=True)
def register_events(register: Callable[..., Any]) -> None:
    """Declare the events this plugin emits.

    :param register: call ``register(name, category, description, enriched_fields=())``
        once per event; ``name`` is a tuple of strings or a dotted string.
    """


@hookspec(historic=True)
def register_enrichers(register: Callable[..., Any]) -> None:
    """Add fields to events, run in the writer thread (never in ``emit``).

    :param register: call ``register(name, fn)`` where ``fn(event_name, measurements, metadata)``
        returns a dict merged into the event's metadata, or None.
    """


# -------------------------------------------------------------------------
# Storage and export
# -------------------------------------------------------------------------


@hookspec(historic=True)
def register_metrics_adapters(register: Callable[..., Any]) -> None:
    """Provide MetricsStore adapters.

    :param register: call ``register(name, adapter_class)``; the class implements the
        ``MetricsAdapter`` protocol (``record``, ``flush``, ``read``) and is built as
        ``adapter_class(**options)`` from ``MetricsStore.record((name, options), ...)``.
    """


@hookspec(historic=True)
def register_exporters(register: Callable[..., Any]) -> None:
    """Provide export formats for ``ct.export`` and ``crucible export``.

    :param register: call ``register(format_name, fn)`` where
        ``fn(connection, relation_sql, params, path)`` writes the rows of the query to ``path``.
    """


# -------------------------------------------------------------------------
# Command line
# -------------------------------------------------------------------------


@hookspec
def register_commands(register: Callable[..., Any]) -> None:
    """Add subcommands to the ``crucible`` command.

    :param register: call ``register(name, run, help=..., description=..., epilog=...)``; it
        returns the subcommand's ``argparse.ArgumentParser`` (``--home`` already on it) for the
        plugin to add arguments to. ``run(args)`` returns the exit code; raise
        ``crucible_telemetry.CrucibleError`` for a one-line ``crucible: error: ...``.
    """
