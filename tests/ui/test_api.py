"""The dashboard's JSON API over a real server process: runs, series, NaN, SSE resume, SQL off/on."""

from __future__ import annotations

import http.client
import json
import math
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import Server, Writer


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read().decode()
    return json.loads(body, parse_constant=lambda c: pytest.fail(f"invalid JSON constant {c}"))


def post(url: str, sql: str) -> tuple[int, Any]:
    req = urllib.request.Request(url + "api/sql", data=json.dumps({"sql": sql}).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_runs_series_and_nan_encoding(store: tuple[Path, list[str]], server: Server) -> None:
    _, ids = store
    runs = get(server.url + "api/runs")
    assert [r["id"] for r in runs["runs"]] == ids
    assert set(runs["differ"]) == {"lr", "seed"} and runs["runs"][2]["condition"] == "treat"
    assert runs["runs"][3]["metrics"]["loss.min"] == pytest.approx(1 / (1 + 299 * 0.1) + 0.01)
    s = get(server.url + f"api/series?run={ids[0]}&name=loss")["series"][0]
    assert s["count"] == 300 and len(s["x"]) == 299 and s["nonfinite"] == [[150.0, "NaN"]]
    assert s["x"] == [float(i) for i in range(300) if i != 150]
    small = get(server.url + f"api/series?run={ids[0]}&run={ids[1]}&name=loss&max_points=40&group=condition")
    assert small["series"][0]["bucket_width"] == 64 and min(small["series"][0]["y"]) == small["series"][0]["min"]
    assert small["groups"][0]["label"] == "control" and small["groups"][0]["n"][0] == 2
    detail = get(server.url + f"api/runs/{ids[0]}")
    assert detail["run"]["hypothesis"] == "lr matters" and detail["run"]["params"] == {"lr": 0.01, "seed": 0}
    cmp = get(
        server.url + f"api/compare?run={ids[0]}&run={ids[1]}&run={ids[2]}&run={ids[3]}&metric=loss.min&by=condition"
    )
    assert "treat" in cmp["verdict"] and all(g["unit"] == "run" for g in cmp["groups"])
    with pytest.raises(urllib.error.HTTPError) as err:
        get(server.url + f"api/series?run={ids[0]}&name=los")
    assert err.value.code == 400 and "loss" in json.loads(err.value.read())["error"]
    assert get(server.url + "api/metrics")["rollups"] == [] and get(server.url + "api/llm")["groups"] == {}


def test_sql_is_off_by_default_and_cannot_read_files(store: tuple[Path, list[str]], server: Server) -> None:
    code, body = post(server.url, "SELECT count(*) FROM events")
    assert code == 403 and "--allow-sql" in body["error"]
    on = Server(store[0], 0, "--allow-sql")
    try:
        code, body = post(on.url, "SELECT count(*) FROM events")
        assert code == 200 and body["rows"] == [[1200]]
        code, body = post(on.url, "SELECT * FROM read_csv('/etc/passwd')")
        assert code == 400 and "passwd" in body["error"] and "rows" not in body
        code, body = post(on.url, f"COPY (SELECT 1) TO '{store[0].parent / 'out.csv'}'")
        assert code == 400 and not (store[0].parent / "out.csv").exists()
    finally:
        on.stop()


def stream(port: int, run: str, last_id: str | None = None) -> http.client.HTTPResponse:
    """An open ``/api/stream`` response (resumed from ``last_id`` when given)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("GET", f"/api/stream?run={run}", headers={"Last-Event-ID": last_id} if last_id else {})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    return resp


def read_events(resp: http.client.HTTPResponse, until: Any, limit_s: float = 20) -> list[tuple[str, str, Any]]:
    """SSE events (kind, id, data) until ``until(events)`` holds."""
    out: list[tuple[str, str, Any]] = []
    kind, eid, data = "message", "", ""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        line = resp.readline().decode()
        if not line:
            break
        line = line.rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("id: "):
            eid = line[4:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data:
            out.append((kind, eid, json.loads(data)))
            kind, data = "message", ""
            if until(out):
                break
    return out


def steps_of(events: list[tuple[str, str, Any]], run: str) -> list[int]:
    return [r["step"] for k, _, d in events if k == "rows" for r in d["events"] if r["run"] == run]


def test_stream_resumes_after_restart_without_gap_or_repeat(store: tuple[Path, list[str]], writer: Writer) -> None:
    first = Server(store[0], 0)
    port = first.port
    resp = stream(port, writer.id)
    got = read_events(resp, lambda ev: len(steps_of(ev, writer.id)) >= 50)
    assert steps_of(got, writer.id) == list(range(50))
    for step in range(50, 60):
        writer.emit(step, math.nan if step == 55 else 1.0 / step)
    writer.flush()
    more = read_events(resp, lambda ev: 59 in steps_of(ev, writer.id))
    assert first.stop() in (0, -signal.SIGTERM)  # SIGTERM with an open stream: a clean exit
    seen = steps_of(got + more, writer.id)
    assert seen == list(range(60))
    nan_row = next(r for _, _, d in more if "events" in d for r in d["events"] if r["step"] == 55)
    assert nan_row["measurements"]["loss"] == "NaN"
    last_id = [eid for k, eid, _ in more if k == "rows"][-1]
    for step in range(60, 70):  # written while no server runs
        writer.emit(step, 1.0 / step)
    writer.flush()
    second = Server(store[0], port)
    try:
        resumed = read_events(stream(port, writer.id, last_id), lambda ev: 69 in steps_of(ev, writer.id))
    finally:
        second.stop()
    assert seen + steps_of(resumed, writer.id) == list(range(70))


def test_llm_and_metrics_pages_read_the_store(tmp_path: Path) -> None:
    import crucible_telemetry as ct
    from crucible_telemetry.metrics import Metrics

    home = tmp_path / "llm"
    hub = ct.Telemetry(home)
    exp = hub.start_experiment("llm-run")
    for i in range(40):
        model = ("gpt-4o-mini", "llama-3.1")[i % 2]
        if i % 10 == 0:
            hub.emit(
                "req_llm.request.exception",
                {"duration": 2e8},
                {"model": model, "provider": "openai", "kind": "RateLimitError"},
            )
            continue
        hub.emit(
            "req_llm.request.stop",
            {"duration": (100 + i) * 1e6, "ttft_ns": 30e6, "total_tokens": 150, "cost_usd": 0.001},
            {"model": model, "provider": "openai"},
        )
    reg = Metrics.of(hub)
    for i in range(10):
        reg.increment("requests_total", tags={"model": "a"})
        reg.gauge("queue_depth", i)
    hub.stop_experiment(exp.id)
    hub.close()
    server = Server(home)
    try:
        llm = get(server.url + f"api/llm?run={exp.id}")
        g = llm["groups"]["openai / gpt-4o-mini"]
        assert llm["errors_by_kind"] == {"RateLimitError": 4}
        assert (
            g["requests"] == 20 and g["errors"] == 4 and g["latency"]["n"] == 16 and sum(g["latency"]["counts"]) == 16
        )
        assert g["ttft"]["p50"] == pytest.approx(30.0) and g["cumulative_cost_usd"][-1] == pytest.approx(0.016)
        roll = {r["metric"]: r for r in get(server.url + "api/metrics")["rollups"]}
        assert roll["requests_total"]["kind"] == "counter" and roll["requests_total"]["sum"] == 10
        assert roll["queue_depth"]["last"] == 9 and roll["queue_depth"]["max"] == 9
    finally:
        server.stop()
