"""Prometheus text exposition (format 0.0.4) of the registry, and a ``/metrics`` HTTP server.

* counters: ``<name>_total`` (a name already ending in ``_total`` keeps it); the value is the
  sum of every increment ever recorded, so it never goes down when points are pruned;
* gauges: ``<name>``, the newest value;
* histograms: ``<name>_bucket{le="..."}`` (cumulative), ``<name>_sum``, ``<name>_count``;
  buckets from ``metrics.define(name, "histogram", buckets=[...])``, else Prometheus' defaults
  (``_ms`` names get millisecond buckets).

Names are sanitised to ``[a-zA-Z_:][a-zA-Z0-9_:]*``, label names to ``[a-zA-Z_][a-zA-Z0-9_]*``
(never starting ``__``), label values escaped (``\\``, ``"`` and newlines).
"""

from __future__ import annotations

import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from .kinds import COUNTER, HISTOGRAM, prom_label, prom_name
from .registry import Metrics

__all__ = ["CONTENT_TYPE", "MetricsServer", "export", "serve"]

#: The ``Content-Type`` of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _num(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _escape_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(tags: dict[str, str], extra: tuple[str, str] | None = None) -> str:
    seen: dict[str, str] = {}
    for k in sorted(tags):
        lk = prom_label(k)
        if lk not in seen and lk != "le":
            seen[lk] = tags[k]
    parts = [f'{k}="{_escape_value(v)}"' for k, v in seen.items()]
    if extra is not None:
        parts.append(f'{extra[0]}="{extra[1]}"')
    return "{" + ",".join(parts) + "}" if parts else ""


def render(m: Metrics, name: str | None = None) -> str:
    """The exposition text of one metric (or all) of a registry."""
    lines: list[str] = []
    for info, tagsets in m.tagsets(name):
        base = prom_name(info.name)
        kind = info.kind
        family = (base if base.endswith("_total") else base + "_total") if kind == COUNTER else base
        help_text = info.help or f"{info.name} ({kind}) recorded by crucible-telemetry"
        lines.append(f"# HELP {family} {_escape_help(help_text)}")
        lines.append(f"# TYPE {family} {kind}")
        for t in tagsets:
            if kind == COUNTER:
                lines.append(f"{family}{_labels(t.tags)} {_num(t.total)}")
            elif kind == HISTOGRAM:
                hist = t.hist
                cum = 0
                for i, bound in enumerate(info.buckets):
                    cum += int(hist[i]) if hist is not None and i < len(hist) else 0
                    lines.append(f"{family}_bucket{_labels(t.tags, ('le', _num(float(bound))))} {cum}")
                lines.append(f"{family}_bucket{_labels(t.tags, ('le', '+Inf'))} {t.count}")
                lines.append(f"{family}_sum{_labels(t.tags)} {_num(t.sum)}")
                lines.append(f"{family}_count{_labels(t.tags)} {t.count}")
            else:
                lines.append(f"{family}{_labels(t.tags)} {_num(t.last)}")
    return "\n".join(lines) + "\n" if lines else ""


def export(name: str | None = None, hub: Any = None) -> str:
    """The Prometheus text of one metric (or all) of the default hub (or ``hub``)."""
    from .. import _hubs

    return render(Metrics.of(hub if hub is not None else _hubs.default()), name)


class MetricsServer:
    """A running HTTP server exposing ``GET /metrics`` (optionally ``?name=<metric>``).

    Use ``.url`` (the ``/metrics`` address), ``.port`` and ``.close()``, or ``with serve() as srv:``.
    """

    def __init__(self, host: str, port: int, hub: Any = None) -> None:
        self.hub = hub
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path not in ("/metrics", "/metrics/"):
                    body = b"crucible-telemetry: see /metrics\n"
                    self.send_response(404 if url.path != "/" else 200)
                    self.send_header("Content-Type", "text/plain; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                name = parse_qs(url.query).get("name", [None])[0]
                try:
                    body = export(name, outer.hub).encode()
                    status = 200
                    ctype = CONTENT_TYPE
                except Exception as exc:
                    body, status, ctype = f"error: {exc!r}\n".encode(), 500, "text/plain; charset=utf-8"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/metrics"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="crucible-metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<MetricsServer {self.url}>"


def serve(host: str = "127.0.0.1", port: int = 0, hub: Any = None) -> MetricsServer:
    """Serve ``/metrics`` on ``host:port`` (0: a free port) from a background thread.

    ``hub`` None serves the default hub at each request.
    """
    return MetricsServer(host, port, hub)
