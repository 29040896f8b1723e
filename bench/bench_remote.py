"""Queries over a store on S3 (a real SeaweedFS ``weed mini`` on 127.0.0.1): the one-listing reader
(``ct.connect_remote``) beside DuckDB globbing the same objects through fsspec, and the push.

``CRUCIBLE_BENCH_REMOTE_RUNS`` runs (default 200) of 2,000 events, each pushed after it stopped,
pushed once while live (4 segments each) and again after it stopped (its merge), as a periodic push
leaves them: a glob reads the covered segments too, and its count is printed beside the true one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import report, timed

import crucible_telemetry as ct

RUNS = int(os.environ.get("CRUCIBLE_BENCH_REMOTE_RUNS", "200"))
KEY, SECRET, BUCKET = "bench", "bench-secret", "bench"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_weed(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    ports = {n: _port() for n in ("master", "volume", "filer", "s3", "admin", "webdav")}
    args = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"]
    args += [f"-{n}.port={p}" for n, p in ports.items()]
    args += [f"-{n}.port.grpc={_port()}" for n in ("master", "volume", "filer", "admin")] + [f"-bucket={BUCKET}"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return proc, f"http://127.0.0.1:{ports['s3']}"


def main() -> None:
    import duckdb
    import s3fs

    base = Path(tempfile.mkdtemp(prefix="crucible-bench-remote-"))
    proc, endpoint = start_weed(base / "weed")
    os.environ.update({"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ENDPOINT_URL": endpoint})
    fs = s3fs.S3FileSystem(key=KEY, secret=SECRET, client_kwargs={"endpoint_url": endpoint})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                fs.pipe_file(f"{BUCKET}/.probe", b"ok")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        print(f"remote benchmark: {RUNS} runs of 2,000 events on weed mini at {endpoint}", flush=True)
        home = base / "store"
        hub = ct.Telemetry(home, flush_interval=3600)
        exps = []
        for r in range(RUNS):
            exp = hub.start_experiment(f"r{r}", bind=False)
            for _ in range(4):
                for i in range(500):
                    hub.emit("b.e", {"loss": 1.0 / (i + 1), "duration": 1e6 * i}, {"experiment_id": exp.id})
                hub.flush()
            exps.append(exp)
        url = f"s3://{BUCKET}/store"
        ct.push(url, home)  # while the runs are live: their segments
        for exp in exps:
            hub.stop_experiment(exp.id)  # each run merged into one file
        hub.close()
        t = time.perf_counter()
        pushed = ct.push(url, home)  # the merges: the segments they cover stay on S3
        t_push = time.perf_counter() - t
        report(
            f"push of the merges, {pushed.uploaded} objects",
            f"{t_push:.2f} s",
            f"{pushed.uploaded / t_push:.0f}/s",
            True,
        )
        con = ct.connect_remote(url)
        q = "SELECT count(*), avg(duration), quantile_cont(duration, 0.95) FROM events"
        ours = con.execute(q).fetchone()
        t_ours = timed(lambda: con.execute(q).fetchone())
        glob = duckdb.connect()
        glob.register_filesystem(fs)
        gq = f"SELECT count(*) FROM read_parquet('s3://{BUCKET}/store/events/*/*.parquet', hive_partitioning = true)"
        globbed = glob.execute(gq).fetchone()
        t_glob = timed(lambda: glob.execute(gq).fetchone(), repeats=3)
        true = RUNS * 2000
        report(
            "one-listing reader: count, mean, p95 over S3",
            f"{t_ours:.2f} s",
            f"rows {ours[0]:,} = {true:,}",
            ours[0] == true,
        )
        report(
            "  DuckDB glob over the same prefix (fsspec)",
            f"{t_glob:.2f} s",
            f"ours {t_glob / t_ours:.1f}x faster",
            True,
        )
        report("  rows the glob counts (covered segments too)", f"{globbed[0]:,}", f"true {true:,}", True)
        one = "SELECT count(*) FROM events_of([?])"
        (first,) = [e.id for e in ct.Telemetry(home).list_experiments() if e.name == "r1"]
        t_one = timed(lambda: con.execute(one, [first]).fetchone())
        report("events_of([one run]) over S3", f"{t_one * 1000:.0f} ms", "lists the prefix once", True)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(20)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
