"""A real OTLP receiver for the export tests: an MLflow tracking server in its own venv, on 127.0.0.1.

MLflow pins pyarrow and protobuf below the test venv's, so it gets a venv of its own, made once under
``~/.cache/crucible-tests/mlflow-<version>`` (``CRUCIBLE_TEST_CACHE`` moves it) and reused.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

MLFLOW = "3.17.2"  # 3.18.0 needs mlflow-tracing 3.18.0, not on the index yet


def _venv() -> Path:
    cache = Path(os.environ.get("CRUCIBLE_TEST_CACHE") or Path.home() / ".cache" / "crucible-tests")
    root = cache / f"mlflow-{MLFLOW}"
    py = root / "bin" / "python"
    if (root / ".complete").exists():
        return py
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"mlflow-{MLFLOW}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers or two sessions: one builds, the others wait
        if not (root / ".complete").exists():
            shutil.rmtree(root, ignore_errors=True)
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([base, "-m", "venv", str(root)], check=True)
            subprocess.run(
                [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"mlflow=={MLFLOW}"], check=True
            )
            (root / ".complete").write_text(MLFLOW)
    return py


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MLflow:
    """A running MLflow server: its URL and a few REST calls."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"{}")

    def new_experiment(self, name: str) -> str:
        return str(self.call("POST", "/api/2.0/mlflow/experiments/create", {"name": name})["experiment_id"])

    def spans(self, experiment_id: str) -> list[dict[str, Any]]:
        """Every span of the experiment's traces, attributes as plain values."""
        loc = {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
        traces = self.call("POST", "/api/3.0/mlflow/traces/search", {"locations": [loc], "max_results": 500})
        out = []
        for t in traces.get("traces", []):
            got = self.call("GET", f"/api/3.0/mlflow/traces/get?trace_id={t['trace_id']}")["trace"]
            for s in got.get("spans", []):
                s["attributes"] = {a["key"]: next(iter(a["value"].values())) for a in s.get("attributes", [])}
                s["state"] = t["state"]
                out.append(s)
        return out


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MLflow]:
    py = _venv()
    d = tmp_path_factory.mktemp("mlflow")
    port = _port()
    log = (d / "server.log").open("wb")
    cmd = [str(py), "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{d / 'mlflow.db'}"]
    cmd += [
        "--default-artifact-root",
        str(d / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    break
            except (urllib.error.URLError, OSError) as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    tail = (d / "server.log").read_text()[-2000:]
                    raise RuntimeError(f"mlflow server did not start: {tail}") from exc
                time.sleep(0.3)
        yield MLflow(url)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
