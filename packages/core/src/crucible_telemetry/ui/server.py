"""The dashboard's HTTP server: the standard library's threading server, one daemon thread per request.

Static files come from ``static/`` next to this module (vendored, nothing from a CDN). The SSE stream
(``/api/stream``) polls the store every :data:`TICK_S` with its own cursor (no queue per client, so
memory stays flat) and ends when the server's ``stopping`` event is set.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import mimetypes
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import CrucibleError, InvalidArgumentError
from . import api
from .stream import Cursor, changes

__all__ = ["TICK_S", "Dashboard"]

#: Seconds between two looks at the store by one stream.
TICK_S = 0.5
#: Seconds between keep-alive comments on a quiet stream.
PING_S = 10.0
STATIC = Path(__file__).parent / "static"


def _loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Dashboard(ThreadingHTTPServer):
    """``Dashboard(hub, host, port, allow_sql).serve_forever()``; ``url`` is where it listens."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hub: Any, host: str = "127.0.0.1", port: int = 0, allow_sql: bool = False) -> None:
        self.hub = hub
        self.allow_sql = bool(allow_sql) and _loopback(host)
        self.stopping = threading.Event()
        self.streams = 0  # open SSE streams, so stop() can wait until none is inside a query
        self.lock = threading.Condition()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """``http://host:port/``."""
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def stop(self, wait_s: float = 5.0) -> None:
        """End every stream (waiting up to ``wait_s`` for them), stop serving and close the socket."""
        self.stopping.set()
        self.shutdown()
        with self.lock:
            self.lock.wait_for(lambda: self.streams == 0, wait_s)
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Dashboard
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the CLI prints the URL only
        return

    def _send(self, code: int, body: bytes, ctype: str, cache: bool = False) -> None:
        if len(body) > 1024 and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            body = gzip.compress(body, 5)
            self.send_response(code)
            self.send_header("Content-Encoding", "gzip")
        else:
            self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, value: Any) -> None:
        self._send(code, api.dumps(value), "application/json")

    def _error(self, code: int, message: str, argument: str | None = None) -> None:
        self._json(code, {"error": message, "argument": argument})

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path, q = unquote(parts.path), parse_qs(parts.query)
        try:
            if path == "/api/stream":
                self._stream(q)
            elif path.startswith("/api/runs/") and len(path) > len("/api/runs/"):
                self._json(200, api.run(self.server.hub, q, path[len("/api/runs/") :]))
            elif path.startswith("/api/"):
                fn = api.ROUTES.get(path[5:].strip("/"))
                if fn is None:
                    self._error(404, f"no API route {path}")
                else:
                    self._json(200, fn(self.server.hub, q))
            else:
                self._static(path)
        except InvalidArgumentError as exc:
            self._error(400, str(exc), exc.argument)
        except (CrucibleError, ValueError) as exc:
            self._error(400, f"{type(exc).__name__}: {exc}")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as exc:  # an error answered, never a dead server
            self._error(500, f"{type(exc).__name__}: {exc}")

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/api/sql":
            self._error(404, "no such route")
            return
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        origin = self.headers.get("Origin")
        client = self.client_address[0]
        if not self.server.allow_sql or not _loopback(client) or not _loopback(host):
            self._error(403, "SQL over HTTP is off; start with `crucible ui --allow-sql` (loopback only)")
            return
        if origin and not _loopback(urlsplit(origin).hostname or ""):
            self._error(403, "cross-origin SQL refused")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1_000_000)).decode("utf-8", "replace")
        try:
            text = json.loads(body).get("sql") if body.lstrip().startswith("{") else body
            self._json(200, api.sql(self.server.hub, str(text or "")))
        except Exception as exc:
            self._error(400, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def _static(self, path: str) -> None:
        name = "index.html" if path in ("/", "") else path.lstrip("/")
        file = (STATIC / name).resolve()
        if STATIC.resolve() not in file.parents or not file.is_file():
            self._error(404, f"no file {path}")
            return
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        self._send(200, file.read_bytes(), ctype, cache=name.startswith("uPlot"))

    def _stream(self, q: dict[str, list[str]]) -> None:
        cursor = (
            Cursor.decode(self.headers.get("Last-Event-ID")) or Cursor.decode(api._one(q, "cursor")) or Cursor.now()
        )
        wanted = api._runs_list(q) or None
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(b"retry: 1000\n\n")
        self.wfile.flush()
        with self.server.lock:
            self.server.streams += 1
        try:
            self._feed(cursor, wanted)
        finally:
            with self.server.lock:
                self.server.streams -= 1
                self.server.lock.notify_all()

    def _feed(self, cursor: Cursor, wanted: list[str] | None) -> None:
        hub, stopping = self.server.hub, self.server.stopping
        statuses: dict[str, str] | None = None
        last_sent = time.monotonic()
        while not stopping.is_set():
            now = dict(hub.store.execute("SELECT experiment_id, status FROM experiments").fetchall())
            if statuses is not None and now != statuses:
                changed = [k for k in now if statuses.get(k) != now[k]]
                self._event("runs", {"changed": changed, "statuses": {k: now[k] for k in changed}}, None)
                last_sent = time.monotonic()
            statuses = now
            data, after = changes(hub.store, cursor, wanted)
            if data["counts"]:
                self._event("rows", data, after.encode())
                last_sent = time.monotonic()
            elif after.base != cursor.base and time.monotonic() - last_sent > PING_S:
                self._event("cursor", {}, after.encode())
                last_sent = time.monotonic()
            cursor = after
            stopping.wait(TICK_S)

    def _event(self, kind: str, data: Any, event_id: str | None) -> None:
        head = f"event: {kind}\n" + (f"id: {event_id}\n" if event_id else "")
        self.wfile.write(head.encode() + b"data: " + api.dumps(data) + b"\n\n")
        self.wfile.flush()
