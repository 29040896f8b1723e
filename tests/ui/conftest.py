"""Fixtures of the dashboard tests: a store with four finished runs, a live writer process, a server process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import crucible_telemetry as ct

WRITER = Path(__file__).with_name("_writer.py")
RUNS = [("control", 0.01, 0), ("control", 0.01, 1), ("treat", 0.1, 0), ("treat", 0.1, 1)]


def make_store(home: Path, steps: int = 300) -> list[str]:
    """Four stopped runs (two conditions x two seeds) with a loss curve each; run0 has a NaN at step 150."""
    hub = ct.Telemetry(home)
    ids = []
    try:
        for i, (cond, lr, seed) in enumerate(RUNS):
            exp = hub.start_experiment(
                f"run{i}", condition=cond, params={"lr": lr, "seed": seed}, hypothesis="lr matters"
            )
            for step in range(steps):
                v = float("nan") if (i == 0 and step == 150) else 1.0 / (1 + step * lr) + 0.01 * seed
                hub.emit("crucible_train.batch.stop", {"loss": v, "global_step": step}, {})
            hub.stop_experiment(exp.id)
            ids.append(exp.id)
        hub.flush()
    finally:
        hub.close()
    return ids


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, list[str]]:
    home = tmp_path / "store"
    return home, make_store(home)


class Writer:
    """The writer subprocess; ``emit(step, value)`` then ``flush()``."""

    def __init__(self, home: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(home)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        line = self._read()
        assert line.startswith("ready"), line
        self.id = line.split()[1]

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def send(self, text: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self._read()

    def emit(self, step: int, value: float) -> None:
        assert self.send(f"emit {step} {value}") == "emitted"

    def flush(self) -> None:
        assert self.send("flush") == "flushed"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("stop")
            self.proc.wait(20)


@pytest.fixture
def writer(store: tuple[Path, list[str]]) -> Iterator[Writer]:
    w = Writer(store[0])
    yield w
    w.close()


class Server:
    """``crucible ui --port N --home HOME`` as a subprocess; ``url`` from what it prints."""

    def __init__(self, home: Path, port: int = 0, *extra: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "crucible_telemetry.cli", "ui", "--home", str(home), "--port", str(port), *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"(http://127\.0\.0\.1:(\d+)/)", line)
        assert m, line + (self.proc.stderr.read() if self.proc.stderr else "")
        self.url, self.port = m.group(1), int(m.group(2))

    def stop(self) -> int:
        self.proc.terminate()
        code = self.proc.wait(15)
        if code != 0 and self.proc.stderr is not None:
            print(f"crucible ui exited {code}:", self.proc.stderr.read()[-2000:])
        return code


@pytest.fixture
def server(store: tuple[Path, list[str]]) -> Iterator[Server]:
    s = Server(store[0])
    yield s
    if s.proc.poll() is None:
        s.stop()
