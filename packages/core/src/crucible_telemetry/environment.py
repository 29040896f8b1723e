"""What a run ran on: the environment recorded once per experiment, and the process's rank."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from typing import Any

__all__ = ["capture_environment", "distributed_identity", "scrub_argv"]

_PACKAGES = (
    "crucible-telemetry",
    "crucible-telemetry-lightning",
    "crucible-telemetry-hf",
    "crucible-telemetry-llm",
    "torch",
    "lightning",
    "pytorch-lightning",
    "transformers",
    "accelerate",
    "openai",
    "numpy",
    "duckdb",
    "pyarrow",
    "pandas",
    "jax",
    "scikit-learn",
)

HOSTNAME = socket.gethostname()

_SECRET_FLAG = re.compile(r"(key|token|secret|passw|auth|credential)", re.I)
_SECRET_VALUE = re.compile(r"^(sk-|sk_|hf_|ghp_|xox[abp]-|Bearer\s)|^[A-Za-z0-9_\-]{32,}$")


def scrub_argv(argv: list[str]) -> list[str]:
    """argv with values that look like secrets (after --api-key, sk-..., long tokens) masked."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        flag, eq, value = arg.partition("=")
        if arg.startswith("-") and _SECRET_FLAG.search(flag):
            if eq:
                out.append(f"{flag}=***")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append("***" if _SECRET_VALUE.search(value if eq else arg) else arg)
    return out


def _git_commit(cwd: str) -> dict[str, Any] | None:
    """The commit checked out and whether tracked files differ from it: one ``git status`` (its v2
    header names the commit), so each start costs one process, not two."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    lines = out.stdout.splitlines()
    oid = next((ln.split()[2] for ln in lines if ln.startswith("# branch.oid ") and len(ln.split()) > 2), None)
    if oid is None or oid == "(initial)":  # no commit yet
        return None
    return {"commit": oid, "dirty": any(ln and not ln.startswith("#") for ln in lines)}


_STATIC: dict[str, Any] = {}  # per process: what does not change while it runs


def _static() -> dict[str, Any]:
    if _STATIC.get("pid") != os.getpid():
        packages: dict[str, str] = {}
        for name in _PACKAGES:
            try:
                packages[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        _STATIC.update(
            pid=os.getpid(),
            packages=packages,
            python=sys.version.split()[0],
            implementation=platform.python_implementation(),
            platform=platform.platform(),
        )
    return _STATIC


def capture_environment() -> dict[str, Any]:
    """Python, key package versions, git commit (when inside a repo), hostname, argv.

    Package versions and the platform are read once per process (starting the 100th experiment of
    a sweep scans no package metadata); the git state is read each time, since an edit between two
    runs must show as a dirty tree.
    """
    static = _static()
    cwd = os.getcwd()
    return {
        "python": static["python"],
        "implementation": static["implementation"],
        "platform": static["platform"],
        "hostname": HOSTNAME,
        "pid": os.getpid(),
        "cwd": cwd,
        "argv": scrub_argv(list(sys.argv)),
        "packages": dict(static["packages"]),
        "git": _git_commit(cwd),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def _env_int(*names: str) -> int | None:
    for n in names:
        v = os.environ.get(n)
        if v is not None and v.strip().lstrip("-").isdigit():
            return int(v)
    return None


def distributed_identity() -> tuple[int | None, int | None, int | None, int | None]:
    """``(rank, local_rank, node, world_size)`` from torch.distributed when initialised, else the env."""
    rank = _env_int("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")
    world = _env_int("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS")
    dist = sys.modules.get("torch.distributed")
    if dist is not None:
        try:
            if dist.is_available() and dist.is_initialized():
                rank = dist.get_rank()
                world = dist.get_world_size()
        except Exception:
            pass
    local = _env_int("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")
    node = _env_int("NODE_RANK", "GROUP_RANK", "SLURM_NODEID")
    if node is None and rank is not None and local is not None:
        local_world = _env_int("LOCAL_WORLD_SIZE")
        if local_world:
            node = rank // local_world
    if node is None and rank is not None:
        node = 0
    return rank, local, node, world
