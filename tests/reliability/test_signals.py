"""Issue 12, case 6: SIGTERM and SIGHUP flush the buffer, chaining the handler installed before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from crucible_telemetry.storage import segments

ROOT = Path(__file__).resolve().parents[2]


def _stored(home: Path) -> list[int]:
    # the live files only: a merge at exit leaves the files it covers for their grace period
    files = [f for d in (home / "events").glob("experiment_id=*") for f in segments.live_files(d)]
    if not files:
        return []
    rows = (
        duckdb.connect()
        .execute("SELECT measurements['i'] FROM read_parquet(?) ORDER BY 1", [[str(f) for f in files]])
        .fetchall()
    )
    return [int(r[0]) for r in rows]


def _default_dispositions() -> None:
    """The child starts as a plain process would: under ``nohup`` SIGHUP arrives ignored, and an
    ignored signal is (rightly) left ignored by the flush handler."""
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def _run_and_signal(home: Path, sig: signal.Signals, *extra: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability._children", "buffered_then_wait", str(home), *extra],
        preexec_fn=_default_dispositions,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    p.send_signal(sig)
    return p.wait(timeout=60)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_flushes_the_buffer_and_still_ends_the_process(tmp_path: Path, sig: signal.Signals) -> None:
    home = tmp_path / "h"
    rc = _run_and_signal(home, sig)
    assert rc == -sig  # the default action still ran: the process ended by that signal
    assert _stored(home) == list(range(3000))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_the_handler_installed_before_still_runs(tmp_path: Path, sig: signal.Signals) -> None:
    home = tmp_path / "h"
    rc = _run_and_signal(home, sig, "before")
    assert rc == 3  # the earlier handler ran, after the flush
    assert Path(str(home) + ".chained").read_text() == str(int(sig))
    assert _stored(home) == list(range(3000))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_handler_installed_after_that_chains_to_ours_keeps_its_graceful_stop(
    tmp_path: Path, sig: signal.Signals
) -> None:
    home = tmp_path / "h"
    rc = _run_and_signal(home, sig, "after")
    assert rc == 4  # not killed by the default action: the later handler decides how to end
    assert Path(str(home) + ".chained").read_text() == str(int(sig))
    assert _stored(home) == list(range(3000))


_MID_FLUSH = """
import os, signal, sys
import crucible_telemetry as ct
from crucible_telemetry import plugins
from crucible_telemetry.plugins import hookimpl

hub = ct.Telemetry(sys.argv[1], flush_interval=3600)
sent = []

def enrich(name, m, md):
    if not sent:  # the signal lands while this (main) thread is inside hub.flush()
        sent.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
    return None

class Plugin:
    @hookimpl
    def register_enrichers(self, register):
        register("mid-flush-kill", enrich)

plugins.register_plugin(Plugin(), name="mid-flush")
exp = hub.start_experiment("mid-flush")
for i in range(500):
    hub.emit("x.y", {"i": i})
hub.flush()
print("survived the signal", flush=True)  # never reached: the deferred SIGTERM ends the process
"""


def test_a_signal_during_the_main_threads_flush_waits_for_it(tmp_path: Path) -> None:
    """A worker flushing at exit when ``Pool.terminate()`` sends SIGTERM: the rows being written are kept."""
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CRUCIBLE_STRICT": "0"}
    out = subprocess.run(
        [sys.executable, "-c", _MID_FLUSH, str(home)], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == -signal.SIGTERM, out.stderr  # still ended by the signal, as its default says
    assert "survived" not in out.stdout
    assert _stored(home) == list(range(500))
