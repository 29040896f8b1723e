"""``crucible ui``: a live local dashboard of the store, and its JSON API (see the README, "Dashboard").

Routes: ``/api/runs``, ``/api/runs/<id>``, ``/api/series``, ``/api/metrics``, ``/api/llm``,
``/api/compare``, ``/api/stream`` (server-sent events whose ids are store cursors) and, only when
started with ``allow_sql`` on loopback, ``POST /api/sql`` (read-only, no file outside the store).
The server is the standard library's; the page is static files with a vendored uPlot.
"""

from __future__ import annotations

from .server import Dashboard

__all__ = ["Dashboard"]
