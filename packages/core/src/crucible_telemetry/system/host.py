"""Host and process counters, read from psutil when installed, else from Linux ``/proc``.

A reader returns cumulative counters (``Counters``); ``rates`` turns two of them into the
numbers a sample records. psutil stays optional: the core never depends on it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Counters", "ProcReader", "PsutilReader", "default_reader", "rates"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_SKIP_DISKS = ("loop", "ram", "zram", "sr", "fd")


@dataclass(frozen=True)
class Counters:
    """One reading: cumulative CPU, I/O counters and the current memory figures."""

    wall: float  # time.monotonic() of the reading
    cpu_busy: float  # seconds the whole machine was busy (all CPUs)
    cpu_total: float  # seconds elapsed on all CPUs
    proc_cpu: float  # user + system seconds of this process
    rss: int
    mem_used: int
    mem_total: int
    disk_read: int
    disk_write: int
    net_recv: int
    net_sent: int


def rates(a: Counters, b: Counters) -> dict[str, float]:
    """The measurements of one sample from two readings ``a`` (earlier) and ``b``."""
    dt = max(b.wall - a.wall, 1e-9)
    total = b.cpu_total - a.cpu_total
    out = {
        # clamped: float rounding of two near-equal counter readings can land a hair outside [0, 100]
        "cpu_percent": min(100.0, max(0.0, 100.0 * (b.cpu_busy - a.cpu_busy) / total)) if total > 0 else 0.0,
        "process_cpu_percent": max(0.0, 100.0 * (b.proc_cpu - a.proc_cpu) / dt),
        "process_rss_bytes": float(b.rss),
        "memory_used_bytes": float(b.mem_used),
        "memory_total_bytes": float(b.mem_total),
        "memory_percent": 100.0 * b.mem_used / b.mem_total if b.mem_total else 0.0,
    }
    for key, x, y in (
        ("disk_read", a.disk_read, b.disk_read),
        ("disk_write", a.disk_write, b.disk_write),
        ("net_recv", a.net_recv, b.net_recv),
        ("net_sent", a.net_sent, b.net_sent),
    ):
        out[f"{key}_bytes_per_s"] = max(y - x, 0) / dt  # a counter reset (device gone) reads as 0
    return out


class ProcReader:
    """Counters from ``/proc`` (Linux): no dependency at all."""

    name = "proc"

    def __init__(self, root: str = "/proc") -> None:
        self.root = Path(root)

    def read(self) -> Counters:
        wall = time.monotonic()
        cpu = [float(v) for v in (self.root / "stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = cpu[3] + (cpu[4] if len(cpu) > 4 else 0.0)  # idle + iowait
        total = sum(cpu[:8])  # guest time is already inside user/nice
        stat = (self.root / "self" / "stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        proc_cpu = (int(fields[11]) + int(fields[12])) / _TICK
        rss = int((self.root / "self" / "statm").read_text().split()[1]) * _PAGE
        mem = _meminfo(self.root / "meminfo")
        dr, dw = _diskstats(self.root / "diskstats")
        nr, ns = _netdev(self.root / "net" / "dev")
        return Counters(
            wall,
            (total - idle) / _TICK,
            total / _TICK,
            proc_cpu,
            rss,
            mem["MemTotal"] - mem.get("MemAvailable", mem.get("MemFree", 0)),
            mem["MemTotal"],
            dr,
            dw,
            nr,
            ns,
        )


def _meminfo(path: Path) -> dict[str, int]:
    out = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return out


def _diskstats(path: Path) -> tuple[int, int]:
    """Bytes read and written by whole disks (partitions would count twice)."""
    read = written = 0
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return 0, 0
    for line in lines:
        f = line.split()
        if len(f) < 10 or f[2].startswith(_SKIP_DISKS) or not os.path.exists(f"/sys/block/{f[2]}"):
            continue
        read += int(f[5]) * 512
        written += int(f[9]) * 512
    return read, written


def _netdev(path: Path) -> tuple[int, int]:
    """Bytes received and sent on every interface but loopback."""
    recv = sent = 0
    try:
        lines = path.read_text().splitlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        name, _, rest = line.partition(":")
        f = rest.split()
        if name.strip() != "lo" and len(f) >= 9:
            recv += int(f[0])
            sent += int(f[8])
    return recv, sent


class PsutilReader:
    """Counters from psutil (any OS psutil supports)."""

    name = "psutil"

    def __init__(self) -> None:
        import psutil

        self._ps: Any = psutil
        self._proc = psutil.Process()

    def read(self) -> Counters:
        ps = self._ps
        wall = time.monotonic()
        t = ps.cpu_times()
        total = sum(t)
        idle = t.idle + getattr(t, "iowait", 0.0)
        total -= getattr(t, "guest", 0.0) + getattr(t, "guest_nice", 0.0)  # already inside user/nice
        with self._proc.oneshot():
            pt = self._proc.cpu_times()
            rss = self._proc.memory_info().rss
        vm = ps.virtual_memory()
        disk = ps.disk_io_counters()
        net = ps.net_io_counters(pernic=True)
        recv = sum(v.bytes_recv for k, v in net.items() if k != "lo")
        sent = sum(v.bytes_sent for k, v in net.items() if k != "lo")
        return Counters(
            wall,
            total - idle,
            total,
            pt.user + pt.system,
            rss,
            vm.total - vm.available,
            vm.total,
            disk.read_bytes if disk else 0,
            disk.write_bytes if disk else 0,
            recv,
            sent,
        )


def default_reader() -> PsutilReader | ProcReader | None:
    """psutil when importable, else ``/proc`` when present, else None (no host rows)."""
    try:
        return PsutilReader()
    except Exception:
        pass
    return ProcReader() if Path("/proc/self/statm").exists() else None
