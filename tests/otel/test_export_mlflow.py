"""Export against a real receiver: a real openai client's calls, recorded by ``instrument``, sent to MLflow
over OTLP/HTTP and read back through MLflow's REST API (attributes, counts, a failure, a re-export)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import crucible_telemetry as ct
from tests._requires import requires_plugin

from .conftest import MLflow

pytestmark = [pytest.mark.slow, requires_plugin("llm", "openai", "mlflow")]

MESSAGES = [{"role": "user", "content": "Say hello to the loopback server"}]


def _run(hub: ct.Telemetry) -> str:
    import openai

    from crucible_telemetry_llm import instrument
    from crucible_telemetry_llm.testing import FakeOpenAIServer

    with FakeOpenAIServer() as server, ct.experiment("to-mlflow") as exp:
        client = instrument(openai.OpenAI(base_url=server.url, api_key="sk-test", max_retries=0))
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.5)
        server.fail_next(500, times=1)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.close()
    hub.flush()
    return exp.id


def test_calls_arrive_as_genai_spans_once(hub: ct.Telemetry, mlflow_server: MLflow) -> None:
    exp_id = _run(hub)
    target = mlflow_server.new_experiment("crucible-export")
    headers = {"x-mlflow-experiment-id": target}
    result = ct.export(exp_id, "otlp", endpoint=mlflow_server.url, headers=headers, metrics=False)
    assert (result.sent, result.accepted, result.refused, result.failed) == (3, 3, 0, 0)

    stops = {r["seq"]: r for r in ct.store.query(exp_id, event="req_llm.request.*") if r["event"].endswith("stop")}
    failed = [r for r in ct.store.query(exp_id, event="req_llm.request.exception")]
    spans = mlflow_server.spans(target)
    assert len(spans) == 3
    by_seq = {int(s["attributes"]["crucible.seq"]): s for s in spans}
    assert set(by_seq) == {*stops, failed[0]["seq"]}
    for seq, row in stops.items():
        s, a = by_seq[seq], by_seq[seq]["attributes"]
        m, md = row["measurements"], row["metadata"]
        assert s["name"] == f"chat {md['model']}" and s["state"] == "OK"
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == md["model"]
        assert a["gen_ai.provider.name"] == md["provider"]
        assert int(a["gen_ai.usage.input_tokens"]) == m["prompt_tokens"]
        assert int(a["gen_ai.usage.output_tokens"]) == m["completion_tokens"]
        assert a["server.address"] == "127.0.0.1" and int(a["server.port"]) == md["server.port"]
        assert a["crucible.experiment_id"] == exp_id and a["crucible.experiment_name"] == "to-mlflow"
        assert float(a["crucible.cost_usd"]) == pytest.approx(m["cost_usd"])
        assert a["crucible.cost_source"] == md["cost_source"]
        end = int(s["end_time_unix_nano"])
        assert end - int(s["start_time_unix_nano"]) == int(m["duration"])
        assert abs(end - row["ts"].timestamp() * 1e9) < 2_000  # the event's time, to the µs
    assert by_seq[min(stops, key=lambda q: stops[q]["metadata"]["model"])]["attributes"].get(
        "gen_ai.request.temperature"
    ) == pytest.approx(0.5)
    bad = by_seq[failed[0]["seq"]]
    assert bad["state"] == "ERROR" and bad["status"]["code"] == "STATUS_CODE_ERROR"
    assert bad["attributes"]["error.type"] == "InternalServerError"
    assert int(bad["attributes"]["http.response.status_code"]) == 500

    again = ct.export([exp_id], "otlp", endpoint=mlflow_server.url, headers=headers, metrics=False)
    assert again.accepted == 3
    assert len(mlflow_server.spans(target)) == 3  # same ids: nothing stored twice


def test_cli_follow_exports_a_live_run_once(hub: ct.Telemetry, mlflow_server: MLflow, home: Any) -> None:
    target = mlflow_server.new_experiment("crucible-follow")
    exp = ct.start_experiment("live")
    md = {"model": "gpt-4o-mini", "operation": "chat", "provider": "openai", "gen_ai.operation.name": "chat"}
    ct.emit("req_llm.request.stop", {"duration": 1_000_000, "prompt_tokens": 5, "completion_tokens": 2}, dict(md))
    hub.flush()
    cmd = [sys.executable, "-m", "crucible_telemetry.cli", "--home", str(home), "export-otlp", exp.id]
    cmd += ["--endpoint", mlflow_server.url, "--header", f"x-mlflow-experiment-id={target}", "--follow"]
    cmd += ["--poll", "0.2", "--no-metrics"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(200):
            if len(mlflow_server.spans(target)) == 1:
                break
            subprocess.run(["sleep", "0.1"], check=True)
        for i in range(3):
            ct.emit("req_llm.request.stop", {"duration": 2_000_000 + i, "prompt_tokens": 6}, dict(md))
        exp.stop()
        hub.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "4 sent, 4 accepted, 0 refused, 0 failed" in out
    assert len(mlflow_server.spans(target)) == 4
