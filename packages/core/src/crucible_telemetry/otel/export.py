"""``export_otlp``: experiments' LLM calls to an OTLP/HTTP receiver, in synchronous counted batches.

Each batch is one POST whose answer is read: ``accepted`` is what the receiver kept (its
``partial_success.rejected_spans`` subtracted), ``refused`` what it turned down; an unreachable
receiver is retried with backoff and then counted as ``failed``, never raised. No SDK queue sits in
between (the SDK's ``BatchSpanProcessor`` drops spans when full and still reports success).
``follow=True`` keeps exporting a live run as it is written, each event once.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from .spans import encode_metrics, encode_spans, to_span

if TYPE_CHECKING:
    from ..hub import Telemetry

__all__ = ["Follower", "OTLPResult", "export_otlp", "follow", "signal_url"]

EVENTS = ("req_llm.request.stop", "req_llm.request.exception")
BATCH = 500
_RETRY_STATUS = frozenset({408, 429, 502, 503, 504})


@dataclass
class OTLPResult:
    """What an export sent and what the receiver said: spans and metric points sent, accepted, refused, failed."""

    sent: int = 0
    accepted: int = 0
    refused: int = 0
    failed: int = 0
    batches: int = 0
    retries: int = 0
    metrics_sent: int = 0
    metrics_accepted: int = 0
    metrics_refused: int = 0
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        s = f"spans: {self.sent} sent, {self.accepted} accepted, {self.refused} refused, {self.failed} failed"
        s += f" ({self.batches} batches, {self.retries} retries)"
        s += f"; metric points: {self.metrics_sent} sent, {self.metrics_accepted} accepted"
        return s + (f", {self.metrics_refused} refused" if self.metrics_refused else "")


def signal_url(endpoint: str, signal: str) -> str:
    """``endpoint`` is the receiver's base URL (``/v1/<signal>`` added) or already a signal's URL."""
    if not isinstance(endpoint, str) or not endpoint.startswith(("http://", "https://")):
        raise InvalidArgumentError("endpoint", f"an OTLP/HTTP endpoint is an http(s) URL, got {endpoint!r}")
    base = endpoint.rstrip("/")
    for s in ("traces", "metrics"):
        if base.endswith(f"/v1/{s}"):
            base = base[: -len(f"/v1/{s}")]
    return f"{base}/v1/{signal}"


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", "application/x-protobuf")
    for k, v in headers.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read() or b""


def _rejected(signal: str, body: bytes) -> tuple[int, str]:
    """``partial_success`` of an OTLP answer: rejected count and message (0 when none or unreadable)."""
    try:
        if signal == "traces":
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse as R

            ps = R.FromString(body).partial_success
            return int(ps.rejected_spans), ps.error_message
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse as M

        pm = M.FromString(body).partial_success
        return int(pm.rejected_data_points), pm.error_message
    except Exception:  # a JSON or empty answer: nothing rejected said
        return 0, ""


class _Sender:
    """POSTs with retries; counts into ``result``."""

    def __init__(self, endpoint: str, headers: Mapping[str, str], timeout: float, retries: int, backoff: float):
        self.urls = {s: signal_url(endpoint, s) for s in ("traces", "metrics")}
        self.headers, self.timeout, self.retries, self.backoff = dict(headers), timeout, retries, backoff
        self.result = OTLPResult()

    def send(self, signal: str, body: bytes, n: int) -> None:
        r = self.result
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                status, answer = _post(self.urls[signal], body, self.headers, self.timeout)
            except (OSError, ValueError) as exc:  # refused connection, DNS, timeout
                status, answer = 0, str(exc).encode()
            if status not in _RETRY_STATUS and status != 0:
                break
            if attempt < self.retries:
                r.retries += 1
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        if signal == "traces":
            r.batches += 1
            r.sent += n
        else:
            r.metrics_sent += n
        if 200 <= status < 300:
            rejected, message = _rejected(signal, answer)
            rejected = min(rejected, n)
            if signal == "traces":
                r.accepted += n - rejected
                r.refused += rejected
            else:
                r.metrics_accepted += n - rejected
                r.metrics_refused += rejected
            if rejected:
                r.errors.append(f"{signal}: {rejected} rejected: {message}")
            return
        if status == 0 and signal == "traces":
            r.failed += n
        elif signal == "traces":
            r.refused += n
        else:
            r.metrics_refused += n
        text = answer[:200].decode(errors="replace").strip()
        r.errors.append(f"{signal}: {'unreachable' if status == 0 else f'HTTP {status}'}: {text}")


def _rows(hub: Telemetry, exp_id: str) -> list[dict[str, Any]]:
    rows = [r for r in hub.store.query(exp_id, event="req_llm.request.*") if r["event"] in EVENTS]
    rows.sort(key=lambda r: (r["ts"], r.get("host") or "", r.get("pid") or 0, r["seq"]))
    return rows


def _points(spans: list[dict[str, Any]]) -> int:
    keys = set()
    for s in spans:
        a = s["attributes"]
        base = tuple((k, a.get(k)) for k in ("gen_ai.operation.name", "gen_ai.request.model", "error.type"))
        keys.add(("d", base, a.get("gen_ai.response.model"), a.get("server.address"), a.get("server.port")))
        if "error.type" not in a:
            for k in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"):
                if k in a:
                    keys.add((k, base, a.get("gen_ai.response.model"), a.get("server.address"), a.get("server.port")))
    return len(keys)


def export_otlp(
    ids: str | Iterable[str],
    endpoint: str,
    *,
    hub: Telemetry | None = None,
    headers: Mapping[str, str] | None = None,
    metrics: bool = True,
    follow: bool = False,
    poll: float = 1.0,
    stop: threading.Event | None = None,
    batch_size: int = BATCH,
    timeout: float = 10.0,
    retries: int = 3,
    backoff: float = 0.5,
    service_name: str = "crucible-telemetry",
) -> OTLPResult:
    """Send the experiments' ``req_llm.request.stop``/``.exception`` events as GenAI spans (and client metrics).

    Args:
        ids: experiment ids (or one).
        endpoint: the receiver's OTLP/HTTP base URL (``/v1/traces`` and ``/v1/metrics`` added).
        headers: sent with every request (``{"x-mlflow-experiment-id": "1"}``, an API key).
        metrics: also send ``gen_ai.client.operation.duration`` and ``gen_ai.client.token.usage``.
        follow: go on exporting new events every ``poll`` seconds until every experiment has ended
            (or ``stop`` is set); each event is sent once.
    Returns:
        the counts: spans sent, accepted, refused (by the receiver) and failed (unreachable).
    """
    if hub is None:
        from .._hubs import default

        hub = default()
    exp_ids = [ids] if isinstance(ids, str) else list(ids)
    if not exp_ids:
        raise InvalidArgumentError("ids", "no experiment given")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError("batch_size", f"a positive number of spans, got {batch_size!r}")
    exps = {i: hub.get_experiment(i) for i in exp_ids}
    sender = _Sender(endpoint, headers or {}, timeout, retries, backoff)
    sent: dict[str, set[tuple[Any, Any, int]]] = {i: set() for i in exp_ids}
    while True:
        hub.flush()
        live = False
        for i, exp in exps.items():
            # the state before the read: a run seen ended then has all its rows in what follows
            running = follow and hub.get_experiment(i).status in ("running", "paused")
            rows = [r for r in _rows(hub, i) if (r.get("host"), r.get("pid"), r["seq"]) not in sent[i]]
            spans = [to_span(r, getattr(exp, "name", None)) for r in rows]
            for k in range(0, len(spans), batch_size):
                chunk = spans[k : k + batch_size]
                sender.send("traces", encode_spans(chunk, service_name), len(chunk))
                if metrics:
                    body = encode_metrics(chunk, service_name)
                    if body is not None:
                        sender.send("metrics", body, _points(chunk))
            sent[i].update((r.get("host"), r.get("pid"), r["seq"]) for r in rows)
            live = live or running
        if not follow or not live or (stop is not None and stop.is_set()):
            return sender.result
        if stop is not None:
            if stop.wait(poll):
                stop = None  # one more pass: what was written before the stop goes too
                follow = False
        else:
            time.sleep(poll)


class Follower:
    """``export_otlp(..., follow=True)`` on a daemon thread: the training loop never waits for the receiver.

    ``stop()`` sends what was written so far and ends; ``join()`` waits for the run to end; both return
    the counts (``result``, None until the thread is done).
    """

    def __init__(self, ids: str | Iterable[str], endpoint: str, **options: Any) -> None:
        signal_url(endpoint, "traces")  # a bad endpoint is the caller's error, raised here, not in the thread
        self._stop = threading.Event()
        self.result: OTLPResult | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = export_otlp(ids, endpoint, follow=True, stop=self._stop, **options)
            except Exception as exc:  # never into the caller: kept for whoever looks
                self.error = exc

        self._thread = threading.Thread(target=run, name="crucible-otlp-follow", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> OTLPResult | None:
        """Wait until every followed run has ended (or ``timeout``)."""
        self._thread.join(timeout)
        return self.result

    def stop(self, timeout: float | None = 30.0) -> OTLPResult | None:
        """Send what was written up to now, then end."""
        self._stop.set()
        return self.join(timeout)


def follow(ids: str | Iterable[str], endpoint: str, **options: Any) -> Follower:
    """Export a live run as it is written, from a background thread (``export_otlp``'s options)."""
    return Follower(ids, endpoint, **options)
