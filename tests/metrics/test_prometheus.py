"""Prometheus exposition: prometheus_client's parser, ``promtool check metrics``, the /metrics server,
and a real Prometheus server scraping it."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import crucible_telemetry as ct
from crucible_telemetry import metrics
from crucible_telemetry.metrics import prometheus


def _record() -> None:
    metrics.define(
        "request_latency_seconds", "histogram", help="Request latency.\nIn seconds \\ wall.", buckets=[0.1, 0.5, 1.0]
    )
    for v in (0.05, 0.2, 0.3, 0.7, 2.0):
        metrics.histogram("request_latency_seconds", v, tags={"model": "llama-3.1", "provider": "local"})
    metrics.histogram("request_latency_seconds", math.nan, tags={"model": "llama-3.1", "provider": "local"})
    metrics.increment("requests_total", 3, tags={"model": "llama-3.1", "status": "ok"})
    metrics.increment("jobs.completed", tags={"tenant-id": "cns", "9lives": 'quote " back \\ nl \n end'})
    metrics.gauge("queue_depth", 42, tags={"__reserved": "x"})


def test_exposition_parses_with_prometheus_client(hub: ct.Telemetry) -> None:
    _record()
    fams = {f.name: f for f in text_string_to_metric_families(prometheus.export())}
    assert fams["requests"].type == "counter"
    [s] = fams["requests"].samples
    assert (s.name, s.labels, s.value) == ("requests_total", {"model": "llama-3.1", "status": "ok"}, 3.0)
    [s] = fams["jobs_completed"].samples
    assert s.name == "jobs_completed_total"
    assert s.labels == {"tenant_id": "cns", "_9lives": 'quote " back \\ nl \n end'}
    h = fams["request_latency_seconds"]
    assert h.type == "histogram" and h.documentation == "Request latency.\nIn seconds \\ wall."
    by = {(s.name, s.labels.get("le")): s.value for s in h.samples}
    assert [by[("request_latency_seconds_bucket", le)] for le in ("0.1", "0.5", "1.0", "+Inf")] == [1, 3, 4, 5]
    assert by[("request_latency_seconds_count", None)] == 5
    assert by[("request_latency_seconds_sum", None)] == pytest.approx(3.25)
    [g] = fams["queue_depth"].samples
    assert g.value == 42.0 and g.labels == {"x__reserved": "x"}
    assert prometheus.export("queue_depth").count("# TYPE") == 1
    assert prometheus.CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_default_buckets_and_ms_buckets(hub: ct.Telemetry) -> None:
    metrics.histogram("a_seconds", 0.3)
    metrics.histogram("b_ms", 30.0)
    metrics.configure(buckets=[1, 2, 3])
    metrics.histogram("c_size", 2.5)
    text = prometheus.export()
    assert 'a_seconds_bucket{le="0.005"}' in text and 'a_seconds_bucket{le="10.0"}' in text
    assert 'b_ms_bucket{le="2500.0"}' in text
    assert 'c_size_bucket{le="3.0"} 1' in text and 'c_size_bucket{le="2.0"} 0' in text


def test_exposition_passes_promtool(hub: ct.Telemetry, tmp_path: Path) -> None:
    assert shutil.which("promtool"), "promtool missing: apt-get install prometheus (the nox tests session does)"
    _record()
    metrics.define("requests_total", "counter", help="Requests served.")
    text = prometheus.export()
    res = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_serve_exposes_metrics_over_http(hub: ct.Telemetry) -> None:
    metrics.increment("hits_total", tags={"path": "/"})
    with prometheus.serve() as srv:
        assert srv.url == f"http://127.0.0.1:{srv.port}/metrics" and srv.port > 0
        r = httpx.get(srv.url, timeout=10)
        assert r.status_code == 200 and r.headers["content-type"] == prometheus.CONTENT_TYPE
        assert 'hits_total{path="/"} 1.0' in r.text
        metrics.increment("hits_total", tags={"path": "/"})
        assert 'hits_total{path="/"} 2.0' in httpx.get(srv.url, timeout=10).text
        assert "hits_total" in httpx.get(srv.url, params={"name": "hits_total"}, timeout=10).text
        assert httpx.get(srv.url.replace("/metrics", "/nope"), timeout=10).status_code == 404
    with pytest.raises(httpx.TransportError):
        httpx.get(srv.url, timeout=2)


@pytest.mark.slow
def test_a_real_prometheus_scrapes_and_answers_queries(hub: ct.Telemetry, tmp_path: Path) -> None:
    assert shutil.which("prometheus"), "prometheus missing: apt-get install prometheus (the nox tests session does)"
    metrics.define("llm_request_seconds", "histogram", buckets=[0.1, 0.25, 0.5, 1.0, 2.5])
    for v in [0.05] * 50 + [0.3] * 40 + [2.0] * 10:
        metrics.histogram("llm_request_seconds", v, tags={"model": "llama-3.1"})
    metrics.increment("llm_requests_total", 100, tags={"model": "llama-3.1"})
    srv = prometheus.serve()
    with socket_port() as prom_port:
        pass
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: crucible\n    scrape_interval: 1s\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{srv.port}']\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{prom_port}/api/v1/query"

    def ask(q: str) -> float | None:
        try:
            res = httpx.get(api, params={"query": q}, timeout=5).json()
        except (httpx.TransportError, ValueError):
            return None
        result = res.get("data", {}).get("result", [])
        return float(result[0]["value"][1]) if result else None

    try:
        deadline = time.monotonic() + 90
        total = p50 = None
        while time.monotonic() < deadline:
            total = ask('llm_requests_total{model="llama-3.1",job="crucible"}')
            p50 = ask('histogram_quantile(0.5, sum by (le) (llm_request_seconds_bucket{model="llama-3.1"}))')
            if total is not None and p50 is not None:
                break
            time.sleep(0.5)
        assert total == 100.0, (tmp_path / "prometheus.log").read_text()[-2000:]
        # 50 of 100 observations are <= 0.1: Prometheus interpolates the median at the bucket bound
        assert p50 == pytest.approx(0.1)
        p90 = ask('histogram_quantile(0.9, sum by (le) (llm_request_seconds_bucket{model="llama-3.1"}))')
        assert p90 == pytest.approx(0.5)
        count = ask('llm_request_seconds_count{model="llama-3.1"}')
        assert count == 100.0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        srv.close()


class socket_port:
    """A free TCP port on 127.0.0.1 (released on exit, then handed to Prometheus)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
