"""``crucible ui``: serve the live dashboard of a store until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from ._common import open_hub

__all__ = ["register"]


def _ui(args: argparse.Namespace) -> int:
    from ..ui import Dashboard

    hub = open_hub(args)
    server = Dashboard(hub, args.host, args.port, allow_sql=args.allow_sql)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    sql = " (SQL over HTTP on)" if server.allow_sql else ""
    print(f"crucible dashboard of {hub.home} at {server.url}{sql} (Ctrl-C to stop)", flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(server.url)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        thread.join(5.0)
        hub.close()
    # A request thread still inside DuckDB when the interpreter finalizes aborts the process (a forced
    # unwind through C++): everything is closed, so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def register(add: Any) -> None:
    """Add ``ui``."""
    p = add(
        "ui",
        _ui,
        help="serve a live dashboard of the store (runs, curves, LLM calls, metrics) on 127.0.0.1",
        description="Serve the live dashboard and its JSON API (see the README, 'Dashboard'). Loopback only by "
        "default; prints its URL and opens a browser only with --open.",
        epilog="examples:\n  crucible ui\n  crucible ui --port 8765 --open\n  crucible ui --allow-sql",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    p.add_argument("--open", action="store_true", help="open the dashboard in a browser")
    p.add_argument(
        "--allow-sql", action="store_true", help="enable POST /api/sql (read-only, loopback only, store files only)"
    )
