"""README claims that no other test checked: each test runs what the README shows or states.

Examples run through ``tests/_readme.py`` (the README's own text), so the docs and these
tests cannot drift; everything is real (a DuckDB store on disk, subprocesses on the installed
``crucible`` script, a real Trainer).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import crucible_telemetry as ct
from crucible_telemetry import plugins
from crucible_telemetry.hookspecs import hookimpl
from crucible_telemetry.storage import segments
from tests._readme import README, run_example, section
from tests._requires import requires_plugin

ROOT = README.parent


def _env_without(*names: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(extra)
    return env


# ---------------------------------------------------------------- Quick start, MetricsStore port


def test_quick_start_prints_what_it_queries_into_the_default_project_folder(tmp_path: Path) -> None:
    # run_example sets no CRUCIBLE_HOME: events must go to ./.crucible/ (the documented default)
    lines = run_example("Quick start", tmp_path, timeout=120)
    assert len(lines) == 4, lines
    query, last5, final_loss, by_epoch = lines
    assert query.count("'event': 'crucible_train.batch.stop'") == 3  # limit=3
    assert query.count("'epoch': 1,") == 3 and "'epoch': 0," not in query  # where={"epoch": 1}
    assert last5.count("'experiment_id':") == 5  # LastN(5)
    assert "'event': 'req_llm.request.start'" in last5 and "'event': 'req_llm.request.stop'" in last5
    assert float(final_loss) == pytest.approx(1.0 / 100)
    rows = ast.literal_eval(by_epoch)
    assert [r[0] for r in rows[:2]] == [0, 1]
    assert rows[0][1] == pytest.approx(sum(1.0 / (s + 1) for s in range(50)) / 50)
    assert rows[1][1] == pytest.approx(sum(1.0 / (s + 1) for s in range(50, 100)) / 50)
    home = tmp_path / ".crucible"
    (record,) = (home / "experiments").glob("exp-*.json")
    assert json.loads(record.read_text())["hypothesis"] == "warmup lowers final loss"
    table = pq.read_table(tmp_path / "warmup.parquet")
    assert table.num_rows == 102  # 100 batches + the span's start and stop
    events = table.column("event").to_pylist()
    stop = events.index("req_llm.request.stop")
    assert table.column("duration").to_pylist()[stop] > 0  # the span's duration in ns
    assert set(table.column("experiment_id").to_pylist()) == {record.stem}


def test_metrics_store_example_prints_the_documented_row_and_reaches_the_metrics_view(tmp_path: Path) -> None:
    (line,) = run_example("MetricsStore port", tmp_path, timeout=120)
    (row,) = ast.literal_eval(line)
    # "run_id, metric, value, step, timestamp (ISO-8601 UTC), metadata"
    assert list(row) == ["run_id", "metric", "value", "step", "timestamp", "metadata"]
    assert (row["run_id"], row["metric"], row["value"], row["step"], row["metadata"]) == (
        "run-1",
        "loss",
        0.42,
        10,
        {"split": "val"},
    )
    assert datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["value"] == 0.42
    reader = ct.Telemetry(tmp_path / ".crucible")  # the "duckdb" record went to ./.crucible
    try:
        got = reader.connect().execute("SELECT run_id, metric, value, step FROM metrics").fetchall()
    finally:
        reader.close()
    assert got == [("run-1", "loss", 0.40, 11)]


# ---------------------------------------------------------------- project folder and defaults


def test_configure_home_moves_the_default_hub(tmp_path: Path) -> None:
    prev = ct.set_default(None)
    hub = ct.configure(home=tmp_path / "elsewhere")
    try:
        assert ct.default() is hub and hub.home == (tmp_path / "elsewhere").absolute()
        with ct.experiment("configured") as exp:
            ct.emit("a.b", {"v": 1.0})
        assert list((tmp_path / "elsewhere" / "events" / f"experiment_id={exp.id}").glob("*.parquet"))
        assert (tmp_path / "elsewhere" / "experiments" / f"{exp.id}.json").is_file()
    finally:
        hub.close()
        ct.set_default(prev)


def test_documented_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRUCIBLE_HOME", raising=False)
    hub = ct.Telemetry()
    try:
        assert hub.home == tmp_path / ".crucible"  # ./.crucible/ by default
        assert hub.flush_interval == 1.0  # "every second, flush_interval"
        assert hub.buffer_limit == 500_000  # "default 500,000"
    finally:
        hub.close()
    monkeypatch.setenv("CRUCIBLE_HOME", str(tmp_path / "moved"))
    hub = ct.Telemetry()
    try:
        assert hub.home == tmp_path / "moved"
    finally:
        hub.close()
    assert segments.GRACE_SECONDS == 120.0  # "deleted two minutes (`GRACE_SECONDS`) after their merge"
    assert segments.COMPACT_EVERY == 32  # "Every 32 segments of a writer"


# ---------------------------------------------------------------- the store and SQL


def _layout_patterns(exp_id: str) -> list[re.Pattern[str]]:
    """The README's folder sketch, each ``<placeholder>`` made a pattern for this process."""
    (sketch,) = re.findall(r"```\n(.*?)```", section("The store and SQL"), flags=re.S)
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"
    fill = {
        "experiment_id": re.escape(exp_id),
        "id": re.escape(exp_id),
        "host": re.escape(host),
        "pid": str(os.getpid()),
        "nonce": "[0-9a-f]+",
        "n": r"\d+",
        "created_ms": r"\d+",
        "ext": "(parquet|covers|summary)",
        "kind": "(experiments|summaries)",
        "file": "[^/]+",
    }
    out = []
    for line in sketch.splitlines()[1:]:
        path = line.split()[0]
        pattern = re.sub(
            r"<(\w+)>", lambda m: fill[m.group(1)], re.escape(path).replace(r"\<", "<").replace(r"\>", ">")
        )
        out.append(re.compile(pattern + "$"))
    return out


def test_store_files_are_laid_out_as_the_readme_sketch(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("layout")
    ct.emit("a.b", {"v": 1.0})
    ct.MetricsStore.record("duckdb", exp.id, "loss", 0.5, step=1)
    hub.flush()
    ct.emit("a.b", {"v": 2.0})
    ct.stop_experiment(exp.id)  # merges the run
    assert ct.connect().execute("SELECT count(*) FROM runs").fetchone() == (1,)  # writes the catalog
    patterns = _layout_patterns(exp.id)
    assert len(patterns) == 6
    files = [p.relative_to(hub.home).as_posix() for p in hub.home.rglob("*") if p.is_file()]
    for pattern in patterns:
        assert any(pattern.match(f) for f in files), (pattern.pattern, files)
    # and every file of the experiment is one the sketch describes
    mine = [f for f in files if exp.id in f]
    assert mine and all(any(p.match(f) for p in patterns) for f in mine), mine


def _readme_schema() -> dict[str, list[tuple[str, str | None]]]:
    """The column table of 'The store and SQL' as {view: [(column, type or None)]}."""
    views: dict[str, list[tuple[str, str | None]]] = {}
    view = ""
    for line in section("The store and SQL").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or cells[0] == "view" or re.fullmatch("-+", cells[0]):
            continue
        view = cells[0] or view
        cols = [c.strip().strip("`") for c in cells[1].split(",")]
        types = [t.strip() for t in re.split(r",(?![^()]*\))", cells[2])] if cells[2] else []
        if cols[0].startswith("every "):
            views[view] = [(c, t) for c, t in views["experiments"]] + [
                (c.removeprefix("then "), None) for c in cols[1:]
            ]
            continue
        if len(types) == 1:
            types = types * len(cols)
        views.setdefault(view, []).extend(zip(cols, types or [None] * len(cols)))
    return views


def test_views_have_exactly_the_columns_and_types_of_the_readme_table(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("schema-table")
    ct.emit("a.b", {"v": 1})
    ct.MetricsStore.record("duckdb", exp.id, "loss", 0.5, step=1)
    documented = _readme_schema()
    assert set(documented) == {"events", "metrics", "experiments", "runs", "params", "summaries"}
    spelled = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE", "VARCHAR (JSON)": "VARCHAR"}
    con = ct.connect()
    for view, cols in documented.items():
        actual = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {view})").fetchall()
        assert [c for c, _ in actual] == [c for c, _ in cols], view
        types = dict(actual)
        for col, typ in cols:
            if typ is not None:
                assert types[col] == spelled.get(typ, typ), (view, col)


def test_range_takes_datetimes_epoch_seconds_and_iso_strings(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("ranges")
    for i in range(12):
        ct.emit("w.e", {"i": i})
        time.sleep(0.002)
    rows = ct.store.get_all(exp.id)
    t3, t9 = rows[3]["ts"], rows[9]["ts"]

    def seqs(window: Any) -> list[int]:
        return [r["seq"] for r in ct.store.query_window(exp.id, window)]

    expected = [r["seq"] for r in rows[3:9]]  # half-open: t9 itself is left out
    assert seqs(ct.Range(t3, t9)) == expected
    assert seqs(ct.Range(t3.timestamp(), t9.timestamp())) == expected
    assert seqs(ct.Range(t3.isoformat(), t9.isoformat())) == expected


def test_store_compact_merges_segments_into_a_covering_file(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("compact-now")
    folder = hub.events_writer.folder(exp.id)
    for i in range(3):
        ct.emit("m.e", {"i": i})
        hub.flush()
    before = {p.name for p in folder.glob("*.parquet")}
    ranges = [segments.SEGMENT_RE.match(n) for n in before]
    assert len(before) == 3 and all(ranges)
    removed = ct.store.compact()
    assert removed == 0  # covered files wait out their grace period
    (cover,) = {p.name for p in folder.glob("*.parquet")} - before
    assert cover.startswith("merge-")
    assert set((folder / cover.replace(".parquet", ".covers")).read_text().split()) == before  # its manifest
    assert [p.name for p in segments.live_files(folder)] == [cover]
    assert pq.read_table(folder / cover).num_rows == 3
    assert [r["measurements"]["i"] for r in ct.store.get_all(exp.id)] == [0, 1, 2]  # no row read twice


def test_errors_are_one_family() -> None:
    for err in (ct.UnknownExperimentError, ct.InvalidArgumentError, ct.InvalidWindowError, ct.ExportExistsError):
        assert issubclass(err, ct.CrucibleError)
    with pytest.raises(ct.CrucibleError) as info:
        ct.LastN(-1)
    assert isinstance(info.value, ct.InvalidWindowError) and info.value.argument == "n"


def test_streaming_stats_and_training_throughput_keys(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("keys")
    values = [1.0, 2.0, 4.0, 9.0]
    for step, v in enumerate(values):
        ct.emit(
            "crucible_train.batch.stop",
            {"loss": v, "global_step": step, "samples_per_second": 100.0 * (step + 1), "duration": 1e6},
        )
    s = ct.streaming.get_metrics(exp.id)["events"]["crucible_train.batch.stop"]["measurements"]["loss"]
    assert (s["count"], s["sum"], s["mean"], s["min"], s["max"]) == (4, 16.0, 4.0, 1.0, 9.0)
    assert {"std", "p50", "p90", "p95", "p99"} <= set(s)
    training = ct.calculate_metrics(exp.id)["training"]
    assert training["mean_samples_per_second"] == pytest.approx(250.0)  # throughput
    assert training["final_loss"] == 9.0 and training["best_loss"] == 1.0  # from batches when no epoch.stop


# ---------------------------------------------------------------- experiments


def test_start_experiment_with_an_id_joins_it_from_another_process(hub: ct.Telemetry) -> None:
    exp = ct.start_experiment("shared")
    ct.emit("proc.work", {"i": -1})
    code = (
        "import sys, crucible_telemetry as ct\n"
        "e = ct.start_experiment('worker', experiment_id=sys.argv[1])\n"
        "for i in range(5): ct.emit('proc.work', {'i': i})\n"
        "ct.flush()\n"
        "print(e.id)\n"
    )
    env = _env_without("CRUCIBLE_HOME", CRUCIBLE_HOME=str(hub.home), RANK="1", WORLD_SIZE="2")
    proc = subprocess.run(
        [sys.executable, "-c", code, exp.id], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == exp.id
    rows = ct.store.get_all(exp.id)
    assert sorted((r["rank"], r["measurements"]["i"]) for r in rows if r["pid"] != os.getpid()) == [
        (1, float(i)) for i in range(5)
    ]
    assert len(rows) == 6 and [e.id for e in ct.list_experiments()] == [exp.id]


def test_environment_records_a_dirty_tree_and_argv(hub: ct.Telemetry, git_repo: str) -> None:
    from crucible_telemetry.environment import scrub_argv

    repo = Path.cwd()
    clean = ct.Telemetry(hub.home).get_experiment(ct.start_experiment("clean").id).environment
    (repo / "f").write_text("changed")
    dirty = ct.Telemetry(hub.home).get_experiment(ct.start_experiment("dirty").id).environment
    assert clean["git"]["dirty"] is False and dirty["git"]["dirty"] is True
    assert dirty["argv"] == scrub_argv(list(sys.argv)) and dirty["argv"]


# ---------------------------------------------------------------- plugins and hooks


def test_register_enrichers_merges_fields_in_the_writer_thread(hub: ct.Telemetry) -> None:
    calls: list[tuple[Any, ...]] = []

    def enrich(event_name: Any, measurements: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
        calls.append((threading.current_thread().name, event_name, dict(measurements), dict(metadata)))
        return {"enriched_by": "readme-test"}

    class Plugin:
        @hookimpl
        def register_enrichers(self, register: Callable[..., Any]) -> None:
            register("readme-enricher", enrich)

    plugins.register_plugin(Plugin(), name="readme-enricher-plugin")
    try:
        exp = ct.start_experiment("enriched")
        ct.emit("a.b", {"v": 2.0}, {"model": "m"})
        assert calls == []  # not on the hot path
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:  # the writer's own flush (every 0.2 s here)
            time.sleep(0.02)
        ((thread, name, measurements, metadata),) = calls
        assert thread == "crucible-writer"
        assert name in ("a.b", ("a", "b")) and measurements == {"v": 2.0} and metadata == {"model": "m"}
        (row,) = ct.store.get_all(exp.id)
        assert row["metadata"] == {"model": "m", "enriched_by": "readme-test"}
    finally:
        plugins.get_plugin_manager().unregister(name="readme-enricher-plugin")
        plugins.ENRICHERS.pop("readme-enricher", None)


def test_register_exporters_adds_a_format_to_export(hub: ct.Telemetry, tmp_path: Path) -> None:
    seen: list[tuple[str, list[Any]]] = []

    def write_tsv(connection: Any, sql: str, params: list[Any], path: Path) -> None:
        seen.append((sql, list(params)))
        rows = connection.execute(f"SELECT event, measurements['i'] FROM ({sql})", params).fetchall()
        Path(path).write_text("".join(f"{e}\t{i}\n" for e, i in rows))

    class Plugin:
        @hookimpl
        def register_exporters(self, register: Callable[..., Any]) -> None:
            register("tsv", write_tsv)

    plugins.register_plugin(Plugin(), name="readme-exporter-plugin")
    try:
        exp = ct.start_experiment("custom-export")
        for i in range(4):
            ct.emit("x.y", {"i": i})
        out = ct.export(exp.id, "tsv", tmp_path / "events.tsv")
        assert out == tmp_path / "events.tsv"
        assert out.read_text().splitlines() == [f"x.y\t{float(i)}" for i in range(4)]
        assert seen and seen[0][1] == [exp.id]
        with pytest.raises(ct.ExportExistsError):
            ct.export(exp.id, "tsv", out)
    finally:
        plugins.get_plugin_manager().unregister(name="readme-exporter-plugin")
        plugins.EXPORTERS.pop("tsv", None)


_BAD_PLUGIN = """
import crucible_telemetry as ct
from crucible_telemetry import plugins
from crucible_telemetry.hookspecs import hookimpl

class Bad:
    @hookimpl
    def register_events(self, register):
        raise RuntimeError("plugin bug")

try:
    plugins.register_plugin(Bad(), name="bad-plugin")
except RuntimeError as exc:
    print("raised", exc)
else:
    print("went on", ct.event_info("req_llm.request.retry").category)
"""


@requires_plugin("crucible-telemetry-llm")  # "the other plugins went on": llm is the one that goes on
def test_crucible_strict_env_decides_whether_a_failing_plugin_raises(tmp_path: Path) -> None:
    def run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", _BAD_PLUGIN],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=_env_without("CRUCIBLE_STRICT", **env),
        )

    strict = run(CRUCIBLE_STRICT="1")
    assert strict.returncode == 0, strict.stderr[-2000:]
    assert strict.stdout.strip() == "raised plugin bug"
    lenient = run()
    assert lenient.returncode == 0, lenient.stderr[-2000:]
    assert lenient.stdout.strip() == "went on llm"  # the other plugins went on
    warnings = [line for line in lenient.stderr.splitlines() if "bad-plugin" in line]
    assert len(warnings) == 1 and "plugin bug" in warnings[0]  # logged once, with its name


# ---------------------------------------------------------------- Hugging Face Trainer


@requires_plugin("crucible-telemetry-hf", "torch")
def test_hf_log_epoch_loss_false_asks_for_no_extra_log(hub: ct.Telemetry, tmp_path: Path) -> None:
    from crucible_telemetry_hf import CrucibleCallback
    from tests.hf._tiny import events, tiny_trainer

    cb = CrucibleCallback(log_epoch_loss=False)
    trainer = tiny_trainer(tmp_path / "out", [cb], logging_steps=500)
    trainer.train()
    assert cb.errors == []
    assert [h for h in trainer.state.log_history if "loss" in h] == []  # no log at the epoch ends
    (exp,) = hub.list_experiments()
    stops = [e for e in events(hub, exp.id) if e["event"] == "epoch.stop"]
    assert [e["epoch"] for e in stops] == [0, 1]
    assert all("loss" not in e["m"] for e in stops)


# ---------------------------------------------------------------- the `crucible` command


def _crucible() -> str:
    import shutil

    exe = shutil.which("crucible", path=str(Path(sys.executable).parent)) or shutil.which("crucible")
    assert exe is not None, "the crucible console script is not installed"
    return exe


def _table_commands() -> list[str]:
    return re.findall(r"^\| `(crucible [^`]+)` \|", section("The `crucible` command"), flags=re.M)


def test_every_command_of_the_readme_table_runs_as_written(tmp_path: Path) -> None:
    from tests.cli._data import llm, train

    home = tmp_path / ".crucible"  # no --home, no $CRUCIBLE_HOME: the default ./.crucible
    hub = ct.Telemetry(home, flush_interval=0.2)
    try:
        runs = {
            "RUN_A": train(hub, "baseline-lr", "control", 0.03, seed=1, epochs=2, batches=10),
            "RUN_B": train(hub, "warmup-lr", "treatment", 0.06, seed=2, epochs=2, batches=10),
        }
        control = [llm(hub, f"llm-control-s{s}", "control", 60.0, seed=10 + s, requests=30) for s in range(2)]
        treatment = [llm(hub, f"llm-treatment-s{s}", "treatment", 40.0, seed=20 + s, requests=30) for s in range(2)]
    finally:
        hub.close()
    ids = {"ID": control[0], "ID_A": control[0], "ID_B": treatment[0], **runs}
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)  # for `crucible import lightning-csv`
    (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").write_text("epoch,step,loss\n0,0,1.5\n0,1,1.0\n")
    commands = _table_commands()
    assert len(commands) == 13, commands
    env = _env_without("CRUCIBLE_HOME", COLUMNS="160")
    exe = _crucible()

    def argv(command: str) -> list[str]:
        return [exe] + [ids.get(a, a) for a in shlex.split(command)[1:]]

    serve_cmd = next(c for c in commands if c.startswith("crucible serve"))
    prune_cmd = next(c for c in commands if c.startswith("crucible prune"))
    readers = [c for c in commands if c not in (serve_cmd, prune_cmd)]
    procs = {
        c: subprocess.Popen(argv(c), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in readers
    }
    out: dict[str, str] = {}
    for c, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, (c, stderr[-2000:])
        out[c.split()[1] + (" conditions" if "--conditions" in c else "")] = " ".join(stdout.split())
    assert "warmup-lr" in out["runs"] and "baseline-lr" not in out["runs"]  # --condition treatment --tag sweep-1
    assert "llm-control-s0" in out["show"] and "req_llm.request.stop" in out["show"]
    assert "latency" in out["metrics"] and "success_rate" in out["metrics"]
    assert "llm-treatment-s0 lower latency than llm-control-s0" in out["compare"]
    assert "treatment lower latency than control" in out["compare conditions"]
    assert "req_llm.request.stop" in (tmp_path / "out.csv").read_text()
    assert pq.read_table(tmp_path / "run.parquet").num_rows == 60  # start + stop or exception per request
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "warmup-lr" in (tmp_path / "report.html").read_text()
    assert "no alert pending or firing" in out["watch"]  # the default rule: no NaN loss in these runs
    assert out["import"] == "lightning-csv: imported 1 run(s), 2 point(s)"

    r = subprocess.run(argv(prune_cmd), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0 and re.search(r"segment file\(s\) remain", r.stdout), r.stderr

    with socket.socket() as s:  # the README's port may be taken on a shared machine: a free one instead
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    serve_argv = [port if a == "9464" else a for a in argv(serve_cmd)]
    assert port in serve_argv
    serve = subprocess.Popen(
        serve_argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert serve.stdout is not None
        line = serve.stdout.readline()
        assert f":{port}" in line, (line, serve.stderr.read() if serve.poll() is not None and serve.stderr else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            assert resp.status == 200 and "text/plain" in resp.headers["Content-Type"]
    finally:
        serve.send_signal(signal.SIGINT)
        assert serve.wait(20) == 0


def test_plot_metric_and_build_report_are_the_python_side(hub: ct.Telemetry, tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    from crucible_telemetry import plots, report  # the deprecated first homes
    from crucible_telemetry.analysis.plots import plot_metric
    from crucible_telemetry.analysis.report import build_report

    assert plots.plot_metric is plot_metric and report.build_report is build_report
    from tests.cli._data import train

    ids = [
        train(hub, "baseline-lr", "control", 0.03, seed=1, epochs=2, batches=10),
        train(hub, "warmup-lr", "treatment", 0.06, seed=2, epochs=2, batches=10),
    ]
    png = plot_metric(ids, "loss", smooth=0.6, out=tmp_path / "loss.png")
    assert png == tmp_path / "loss.png" and mpimg.imread(png).shape[:2] == (450, 800)
    html = build_report(ids, tmp_path / "report.html")
    text = html.read_text()
    assert "baseline-lr" in text and "warmup-lr" in text and "data:image/png;base64," in text


# ---------------------------------------------------------------- Development


@requires_plugin("torch")  # the pin is checked against the installed torch
def test_development_nox_sessions_and_torch_pin() -> None:
    text = section("Development")
    m = re.search(r"`python3 -m nox -s ([\w |]+)`", text)
    assert m is not None
    documented = [s.strip() for s in m.group(1).split("|")]
    # nox is not installed inside the session it runs the tests in: read the sessions off the noxfile
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    sessions = [
        f.name
        for f in tree.body
        if isinstance(f, ast.FunctionDef) and any("nox.session" in ast.unparse(d) for d in f.decorator_list)
    ]
    assert sorted(sessions) == sorted(documented)
    pin = re.search(r"torch (\d+\.\d+\.\d+) CPU", text)
    assert pin is not None
    assert f"torch=={pin.group(1)}\n" in (ROOT / "constraints.txt").read_text()
    import torch

    assert torch.__version__.split("+")[0] == pin.group(1)
