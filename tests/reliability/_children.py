"""Scripts run as real child processes by the reliability tests (``python -m`` or ``-c``)."""

from __future__ import annotations

import json
import sys
import time

import crucible_telemetry as ct


def runaway(home: str, seconds: float) -> None:
    """A tight emit loop; prints one JSON line of stats about every 0.2 s."""
    hub = ct.Telemetry(home, flush_interval=0.25, batch_size=20_000, buffer_limit=50_000)
    hub.start_experiment("runaway")
    t0 = time.monotonic()
    next_report = t0
    i = 0
    emit = hub.emit
    while (now := time.monotonic()) - t0 < seconds:
        for _ in range(1000):
            emit("loop.step", {"i": i})
            i += 1
        if now >= next_report:
            next_report = now + 0.2
            s = hub.stats()
            print(json.dumps({"t": now - t0, **s, "rss": _rss()}), flush=True)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def buffered_then_wait(home: str, chain: str = "") -> None:
    """Emit 3,000 events that wait for a flush an hour away, say so, and sleep until a signal.

    ``chain="before"``: first install a SIGTERM/SIGHUP handler of our own that writes ``<home>.chained``
    and exits with status 3 (a framework's handler, installed before the hub). ``chain="after"``:
    install one after the hub that calls ours and then stops gracefully (status 4).
    """
    import signal
    from pathlib import Path

    if chain == "before":

        def mine(signum: int, frame: object) -> None:
            Path(home + ".chained").write_text(str(signum))
            sys.exit(3)

        signal.signal(signal.SIGTERM, mine)
        signal.signal(signal.SIGHUP, mine)
    hub = ct.Telemetry(home, flush_interval=3600, batch_size=10**9)
    got: list[int] = []
    if chain == "after":  # a framework installed after the hub, calling the handler it replaced
        for sig in (signal.SIGTERM, signal.SIGHUP):
            before = signal.getsignal(sig)

            def graceful(signum: int, frame: object, before: object = before) -> None:
                got.append(signum)
                before(signum, frame)  # type: ignore[operator]

            signal.signal(sig, graceful)
    hub.start_experiment("signals")
    for i in range(3000):
        hub.emit("sig.step", {"i": i})
    print("ready", flush=True)
    deadline = time.monotonic() + 120
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    Path(home + ".chained").write_text(str(got[0]))  # still alive after our flush: a graceful stop
    sys.exit(4)


def full_disk(home: str) -> None:
    """Writes refused by a file-size limit (EFBIG, as ENOSPC), then allowed again; prints JSON stats.

    ``RLIMIT_FSIZE`` stands for a small full disk: no root or tmpfs needed, and a write that
    does not fit fails mid-file as it would on a full disk.
    """
    import os
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    hub = ct.Telemetry(home, flush_interval=3600, batch_size=10**9)
    exp = hub.start_experiment("full")
    hub.emit("disk.warm", {"i": -1})
    hub.flush()
    fds0 = len(os.listdir("/proc/self/fd"))
    rng = __import__("numpy").random.default_rng(0)
    xs = rng.random(100_000).tolist()
    resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, hard))  # a backlog that only fits in pieces
    for i in range(100_000):
        hub.emit("disk.fill", {"i": i, "x": xs[i]})
    hub.flush()
    after_pieces = hub.stats()
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))  # the disk is full
    for i in range(100_000, 102_000):
        hub.emit("disk.fill", {"i": i, "x": 0.5})
    for _ in range(20):
        hub.flush()
    while_full = hub.stats()
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space is back
    hub.flush()
    hub.stop_experiment(exp.id)
    print(
        json.dumps(
            {
                "after_pieces": after_pieces,
                "while_full": while_full,
                "end": hub.stats(),
                "errors": hub.error_count,
                "fd_growth": len(os.listdir("/proc/self/fd")) - fds0,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    fn = globals()[sys.argv[1]]
    fn(*sys.argv[2:3], *(float(a) if fn is runaway else a for a in sys.argv[3:]))
