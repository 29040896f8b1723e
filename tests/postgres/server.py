"""A real PostgreSQL server for the tests: ``initdb`` + ``pg_ctl`` in a temporary folder, on a free port of 127.0.0.1."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

#: Where Debian's ``postgresql`` package puts the server binaries (they are not on PATH there).
DEBIAN_BINS = "/usr/lib/postgresql/*/bin"


def server_bin(name: str) -> str:
    """The path of ``initdb``/``pg_ctl``: on PATH, else the newest Debian one; fails loudly when absent."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"{DEBIAN_BINS}/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(
            f"PostgreSQL server binary {name!r} not found on PATH nor in {DEBIAN_BINS}: "
            "install Debian's `postgresql` package (apt-get install -y postgresql); "
            "`nox -s tests` does it when run as root"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One server; ``stop()``/``start()`` keep its data and port, so clients can reconnect."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = server_bin("initdb"), server_bin("pg_ctl")
        self.folder = Path(tempfile.mkdtemp(prefix="crucible-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = free_port()
        # initdb refuses to run as root: the server runs as the 'postgres' user then (Debian creates it)
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            pw = pwd.getpwnam(self.user)
            os.chown(self.folder, pw.pw_uid, pw.pw_gid)
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", "crucible", "-E", "UTF8", "--no-instructions")
        self.start()

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}\n{log}")

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=crucible dbname={dbname}"

    def start(self) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.folder} -c fsync=off"
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
