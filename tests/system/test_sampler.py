"""The system sampler: real readings of this machine, stored and joinable with training steps."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

import crucible_telemetry as ct
from crucible_telemetry import system
from crucible_telemetry.events import TRAINING_START, event_info
from crucible_telemetry.system.gpu import GpuReader
from crucible_telemetry.system.host import ProcReader, PsutilReader, default_reader, rates

LINUX = Path("/proc/self/status").exists()


def _status_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _meminfo_total() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def _wait(pred, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def _samples(hub: ct.Telemetry) -> list[tuple]:
    hub.flush()
    return (
        hub.connect()
        .execute(
            "SELECT host, pid, experiment_id, measurements, metadata FROM events "
            "WHERE event = 'crucible_system.sample' ORDER BY seq"
        )
        .fetchall()
    )


@pytest.fixture(autouse=True)
def _no_sampler_left():
    yield
    system.stop()


@pytest.mark.skipif(not LINUX, reason="compares with /proc")
def test_a_real_sampler_records_this_machine(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("system")
    ballast = bytearray(64 * 1024 * 1024)  # resident memory the RSS must see
    ballast[::4096] = b"x" * len(ballast[::4096])
    s = system.start(hub, interval=0.1)
    assert s.running and system.current() is s
    _wait(lambda: s.samples >= 3)
    system.stop()
    assert not s.running and not s.errors
    rss_now = _status_rss()
    rows = _samples(hub)
    host_rows = [r for r in rows if json.loads(r[4])["device"] == "host"]
    assert len(host_rows) >= 3
    ncpu = os.cpu_count() or 1
    for host, pid, exp_id, m, _ in host_rows:
        assert (host, pid, exp_id) == (socket.gethostname(), os.getpid(), exp.id)
        assert rss_now / 2 <= m["process_rss_bytes"] <= rss_now * 2
        assert m["process_rss_bytes"] > len(ballast)
        assert m["memory_total_bytes"] == _meminfo_total()
        assert 0 < m["memory_used_bytes"] < m["memory_total_bytes"]
        assert 0.0 <= m["cpu_percent"] <= 100.0
        assert 0.0 <= m["process_cpu_percent"] <= 100.0 * ncpu + 5
        for k in ("disk_read_bytes_per_s", "disk_write_bytes_per_s", "net_recv_bytes_per_s", "net_sent_bytes_per_s"):
            assert 0.0 <= m[k] < 1e12
    gpu_rows = [r for r in rows if json.loads(r[4])["device"] == "gpu"]
    assert (gpu_rows == []) == (s.gpu_count == 0)
    assert all(json.loads(r[4])["gpu_index"] == r[3]["gpu_index"] for r in gpu_rows)
    del ballast


def test_the_event_is_registered_as_a_builtin() -> None:
    info = event_info("crucible_system.sample")
    assert info is not None and info.category == "system"
    assert {"host", "pid", "rank", "gpu_index"} <= set(info.enriched_fields)


def test_samples_join_with_training_steps(hub: ct.Telemetry) -> None:
    ct.start_experiment("join")
    ct.emit(TRAINING_START, {})
    s = system.start(hub, interval=0.05)
    for step in range(1, 6):
        _wait(lambda step=step: s.samples >= step)
        ct.emit(("crucible_train", "batch", "stop"), {"loss": 1.0 / step}, {"global_step": step})
    system.stop()
    hub.flush()
    joined = (
        hub.connect()
        .execute("""
        SELECT b.global_step, s.measurements['process_rss_bytes'] AS rss, b.ts - s.ts AS lag
        FROM (SELECT * FROM events WHERE event = 'crucible_train.batch.stop') b
        ASOF JOIN (SELECT * FROM events WHERE event = 'crucible_system.sample'
                   AND json_extract_string(metadata, '$.device') = 'host') s
        ON b.host = s.host AND b.pid = s.pid AND b.rank IS NOT DISTINCT FROM s.rank AND b.ts >= s.ts
        ORDER BY b.global_step""")
        .fetchall()
    )
    assert [r[0] for r in joined] == [1, 2, 3, 4, 5]
    assert all(r[1] > 0 for r in joined)
    assert all(r[2].total_seconds() < 5 for r in joined)


@pytest.mark.skipif(not LINUX, reason="/proc")
def test_proc_and_psutil_agree() -> None:
    psutil = pytest.importorskip("psutil")
    assert psutil is not None
    a, b = ProcReader(), PsutilReader()
    pa, pb = a.read(), b.read()
    assert pa.mem_total == pb.mem_total
    assert pb.rss / 2 <= pa.rss <= pb.rss * 2
    assert abs(pa.proc_cpu - pb.proc_cpu) < 1.0
    assert abs(pa.cpu_total - pb.cpu_total) / pb.cpu_total < 0.01
    assert pb.net_recv <= a.read().net_recv
    assert isinstance(default_reader(), PsutilReader)
    x = sum(i * i for i in range(300_000))  # burn CPU between two /proc readings
    assert x > 0
    r = rates(pa, a.read())
    assert r["process_cpu_percent"] > 0
    assert r["memory_percent"] == pytest.approx(100 * r["memory_used_bytes"] / r["memory_total_bytes"])


@pytest.mark.skipif(not LINUX, reason="/proc")
def test_the_proc_backend_alone_records(hub: ct.Telemetry) -> None:
    ct.start_experiment("proc")
    s = system.start(hub, interval=0.05, reader=ProcReader(), gpus=False)
    _wait(lambda: s.samples >= 2)
    system.stop()
    assert s.backend == "proc" and not s.errors
    rows = _samples(hub)
    assert len(rows) >= 2 and all(json.loads(r[4]) == {"device": "host"} for r in rows)
    assert all(_status_rss() / 2 <= r[3]["process_rss_bytes"] <= _status_rss() * 2 for r in rows)


def test_the_switch_turns_it_off(hub: ct.Telemetry, monkeypatch: pytest.MonkeyPatch) -> None:
    ct.start_experiment("off")
    monkeypatch.setenv(system.ENV_SWITCH, "0")
    assert not system.enabled()
    s = system.start(hub, interval=0.02)
    time.sleep(0.2)
    assert not s.running and s.samples == 0
    assert _samples(hub) == []
    s.stop()  # harmless


def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(system.ENV_INTERVAL, "2.5")
    assert system.start(gpus=False).interval == 2.5
    monkeypatch.setenv(system.ENV_INTERVAL, "nonsense")
    assert system.start(gpus=False).interval == 10.0
    assert system.start(interval=3).interval == 3.0


def test_stop_is_prompt_and_start_replaces(hub: ct.Telemetry) -> None:
    a = system.start(hub, interval=10.0)
    b = system.start(hub, interval=10.0)
    assert not a.running and b.running and system.current() is b
    t0 = time.monotonic()
    system.stop()
    assert time.monotonic() - t0 < 1.0 and not b.running and system.current() is None


def test_no_experiment_or_no_hub_records_nothing_and_never_raises(hub: ct.Telemetry) -> None:
    s = system.start(hub, interval=0.02)
    _wait(lambda: s.samples >= 0 and s.backend is not None)
    time.sleep(0.15)
    assert s.running and not s.errors
    ct.set_default(None)
    d = system.start(None, interval=0.02)  # no default hub: nothing to write to
    time.sleep(0.15)
    assert d.running and d.samples == 0 and not d.errors
    ct.set_default(hub)
    assert _samples(hub) == []


def test_a_closed_hub_is_not_reopened(hub: ct.Telemetry) -> None:
    ct.start_experiment("closed")
    hub.close()
    s = system.start(hub, interval=0.02)
    time.sleep(0.2)
    assert s.samples == 0 and hub.closed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork")
def test_a_forked_child_has_no_sampler_until_it_starts_one(hub: ct.Telemetry) -> None:
    s = system.start(hub, interval=0.05)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's atexit
        try:
            before = (system.current() is None, s.running)
            c = system.start(hub, interval=0.05, gpus=False)
            ok = before == (True, False) and c.running and c is not s
            c.stop()
            os.write(w, b"ok" if ok and not c.running else repr(before).encode())
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 100)
    os.waitpid(pid, 0)
    assert got == b"ok"
    assert s.running  # the parent's sampler is untouched


def test_no_nvml_means_no_gpu_rows() -> None:
    g = GpuReader()
    try:
        import pynvml  # noqa: F401
    except ImportError:
        assert g.handles == [] and g.read() == []
    else:
        assert all(set(m) >= {"gpu_index"} for _, m in g.read())
    g.close()
    g.close()
