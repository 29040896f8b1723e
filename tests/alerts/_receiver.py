"""A real HTTP receiver on 127.0.0.1 for webhook tests, and a port nothing listens on."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Records every POST body (parsed JSON); answers ``statuses`` in turn, then 200."""

    def __init__(self, statuses: tuple[int, ...] = (), delay: float = 0.0) -> None:
        self.bodies: list[Any] = []
        self.paths: list[str] = []
        self.received_at: list[float] = []
        self.statuses = list(statuses)
        self.delay = delay
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                outer.requests += 1
                if outer.delay:
                    time.sleep(outer.delay)
                status = outer.statuses.pop(0) if outer.statuses else 200
                if status == 200:
                    outer.bodies.append(json.loads(body))
                    outer.paths.append(self.path)
                    outer.received_at.append(time.time())
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, n: int = 1, timeout: float = 20.0) -> list[Any]:
        """The bodies once ``n`` have arrived (fails after ``timeout`` seconds)."""
        end = time.monotonic() + timeout
        while len(self.bodies) < n:
            assert time.monotonic() < end, f"{len(self.bodies)} of {n} posts arrived"
            time.sleep(0.01)
        return self.bodies


def dead_port() -> int:
    """A local port with nothing listening (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
