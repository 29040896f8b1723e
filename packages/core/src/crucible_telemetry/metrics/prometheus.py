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
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from .kinds import COUNTER, GAUGE, HISTOGRAM, default_buckets, prom_label, prom_name
from .registry import Metrics

__all__ = ["CONTENT_TYPE", "MetricsServer", "export", "export_store", "serve"]

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


def _family(lines: list[str], name: str, kind: str, help_text: str | None, buckets: Any, series: list[Any]) -> None:
    """Append one metric family: series need ``tags`` and ``total`` / ``hist, count, sum`` / ``last``."""
    base = prom_name(name)
    family = (base if base.endswith("_total") else base + "_total") if kind == COUNTER else base
    lines.append(f"# HELP {family} {_escape_help(help_text or f'{name} ({kind}) recorded by crucible-telemetry')}")
    lines.append(f"# TYPE {family} {kind}")
    for t in series:
        if kind == COUNTER:
            lines.append(f"{family}{_labels(t.tags)} {_num(t.total)}")
        elif kind == HISTOGRAM:
            hist = t.hist
            cum = 0
            for i, bound in enumerate(buckets):
                cum += int(hist[i]) if hist is not None and i < len(hist) else 0
                lines.append(f"{family}_bucket{_labels(t.tags, ('le', _num(float(bound))))} {cum}")
            lines.append(f"{family}_bucket{_labels(t.tags, ('le', '+Inf'))} {t.count}")
            lines.append(f"{family}_sum{_labels(t.tags)} {_num(t.sum)}")
            lines.append(f"{family}_count{_labels(t.tags)} {t.count}")
        else:
            lines.append(f"{family}{_labels(t.tags)} {_num(t.last)}")


def render(m: Metrics, name: str | None = None) -> str:
    """The exposition text of one metric (or all) of a registry."""
    lines: list[str] = []
    for info, tagsets in m.tagsets(name):
        _family(lines, info.name, info.kind, info.help, info.buckets, tagsets)
    return "\n".join(lines) + "\n" if lines else ""


@dataclass
class _Stored:
    """One series rebuilt from stored points (the fields ``_family`` reads)."""

    tags: dict[str, str]
    total: float = 0.0
    last: float = math.nan
    count: int = 0
    sum: float = 0.0
    hist: Any = field(default=None)


_STORED_SQL = """
SELECT metric, kind, tags,
       coalesce(sum(value) FILTER (WHERE NOT isnan(value)), 0) AS total,
       arg_max(value, (ts, seq)) AS last,
       CASE WHEN kind = 'histogram' THEN list(value) FILTER (WHERE NOT isnan(value)) END AS vals
FROM metrics WHERE kind IN ('counter', 'gauge', 'histogram') {where}
GROUP BY metric, kind, tags ORDER BY metric, kind
"""


def export_store(name: str | None = None, hub: Any = None) -> str:
    """The Prometheus text rebuilt from the store's ``metrics`` dataset: what every process recorded.

    What ``crucible serve`` shows, as it runs apart from the processes that record: counters sum
    every stored increment, gauges take the newest stored value, histograms bucket every stored
    observation with the default buckets for the name (``define`` buckets live in the recorder).
    """
    from .. import _hubs

    h = hub if hub is not None else _hubs.default()
    with h.connect() as con:
        rows = con.execute(
            _STORED_SQL.format(where="AND metric = ?" if name is not None else ""), [name] if name is not None else []
        ).fetchall()
    families: dict[str, tuple[str, list[_Stored]]] = {}
    for metric, kind, tags, total, last, vals in rows:
        fam = families.setdefault(metric, (kind, []))
        if fam[0] != kind:  # one name recorded as two kinds: the first kind wins, as in a registry
            continue
        s = _Stored(dict(tags or {}), total=float(total), last=math.nan if last is None else float(last))
        if kind == HISTOGRAM:
            v = np.asarray(vals or [], dtype=np.float64)
            bounds = np.asarray(default_buckets(metric), dtype=np.float64)
            s.hist = np.bincount(np.searchsorted(bounds, v, side="left"), minlength=len(bounds) + 1)
            s.count, s.sum = len(v), float(v.sum())
        fam[1].append(s)
    lines: list[str] = []
    for metric, (kind, series) in families.items():
        _family(lines, metric, kind if kind in (COUNTER, HISTOGRAM) else GAUGE, None, default_buckets(metric), series)
    return "\n".join(lines) + "\n" if lines else ""


def export(name: str | None = None, hub: Any = None) -> str:
    """The Prometheus text of one metric (or all) of the default hub (or ``hub``)."""
    from .. import _hubs

    return render(Metrics.of(hub if hub is not None else _hubs.default()), name)


class MetricsServer:
    """A running HTTP server exposing ``GET /metrics`` (optionally ``?name=<metric>``).

    Use ``.url`` (the ``/metrics`` address), ``.port`` and ``.close()``, or ``with serve() as srv:``.
    """

    def __init__(self, host: str, port: int, hub: Any = None, *, from_store: bool = False) -> None:
        self.hub = hub
        outer = self
        source = export_store if from_store else export

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
                    body = source(name, outer.hub).encode()
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
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="crucible-metrics-http", daemon=True
        )
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


def serve(host: str = "127.0.0.1", port: int = 0, hub: Any = None, *, from_store: bool = False) -> MetricsServer:
    """Serve ``/metrics`` on ``host:port`` (0: a free port) from a background thread.

    ``hub`` None serves the default hub at each request. ``from_store=True`` serves what the
    store holds from every process (``export_store``) instead of this process's registry.
    """
    return MetricsServer(host, port, hub, from_store=from_store)
