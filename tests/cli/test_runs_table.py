"""``crucible runs``/``show``/``sql``/``rename``/``note``/``tag`` as a user runs them, on a real Lightning lr sweep."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import crucible_telemetry as ct
from crucible_telemetry.cli import main

from .._requires import requires_plugin
from ..core._sweeps import lightning_sweep, logged_values
from .conftest import Run, crucible_exe

pytestmark = pytest.mark.slow


def run(home: Path, *args: str, columns: int | None = 160, real: bool = False) -> Run:
    """``crucible --home HOME ARGS``: in this process (``main()``, stdout and stderr captured), or with
    ``real`` the console script in a subprocess; ``columns=None`` is output into a pipe, no ``$COLUMNS``."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    if real:
        proc = subprocess.run(
            [crucible_exe(), "--home", str(home), *args], capture_output=True, text=True, timeout=120, env=env
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)
    saved, prev = dict(os.environ), ct.default(create=False)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["--home", str(home), *args])
    finally:
        os.environ.clear()
        os.environ.update(saved)
        opened = ct.set_default(prev)  # the command made its store's hub the default
        if opened is not None and opened is not prev:
            opened.close()
    return Run(rc, out.getvalue(), err.getvalue())


def data_lines(out: str) -> list[str]:
    """The rows of a table (below the header rule)."""
    lines = out.splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith("─"))
    return [line for line in lines[k + 1 :] if line.strip()]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[float, str]]]:
    """Three Lightning runs named ``sweep`` (lr 0.002, 0.05, 0.2; seed 0), 3 validated epochs each."""
    root = tmp_path_factory.mktemp("cli-sweep")
    hub = ct.Telemetry(root / "crucible")
    try:
        ids = lightning_sweep(hub, root)
    finally:
        hub.close()
    yield root / "crucible", ids


@requires_plugin("lightning")
def test_which_lr_gave_the_lowest_val_loss_is_one_command(sweep: Any) -> None:
    home, ids = sweep
    r = run(home, "runs", "--params", "lr", "--metrics", "val_loss.min", "--sort", "val_loss.min", real=True)
    assert r.rc == 0, r.err
    hub = ct.Telemetry(home)
    truth = {lr: min(logged_values(hub, i, "val_loss")) for lr, i in ids.items()}
    hub.close()
    best = min(truth, key=lambda lr: truth[lr])
    rows = data_lines(r.out)
    assert len(rows) == 3
    first = rows[0].split()
    assert ids[best].endswith(first[0]) and first[-2] == f"{best:g}", r.out
    header = r.out.splitlines()[1].split()
    assert header[-2:] == ["lr", "val_loss.min"]
    js = json.loads(
        run(home, "runs", "--params", "lr", "--metrics", "val_loss.min", "--sort=-val_loss.min", "--format", "json").out
    )
    assert [row["params.lr"] for row in js][-1] == best
    assert [row["metrics.val_loss.min"] for row in js] == sorted(truth.values(), reverse=True)


@requires_plugin("lightning")
def test_by_default_the_params_that_differ_and_the_validation_metrics(sweep: Any) -> None:
    home, ids = sweep
    r = run(home, "runs")
    assert r.rc == 0, r.err
    header = r.out.splitlines()[1].split()
    assert "lr" in header and "seed" not in header  # seed is 0 in every run: it does not differ
    assert header[-2:] == ["val_loss", "val_loss.min"]
    # three runs of the same name stay apart by their short ids
    shorts = [line.split()[0] for line in data_lines(r.out)]
    assert len(set(shorts)) == 3 and all(any(i.endswith(s) for i in ids.values()) for s in shorts)
    rows = list(csv.DictReader(io.StringIO(run(home, "runs", "--all", "--format", "csv").out)))
    assert {"params.lr", "params.seed", "metrics.val_loss.max", "metrics.train_loss_step.min"} <= set(rows[0])


@requires_plugin("lightning")
def test_tables_fit_80_columns_by_cutting_cells_and_pipes_are_not_cut(sweep: Any, tmp_path: Path) -> None:
    home, ids = sweep
    long_name = "a-rather-long-run-name-that-cannot-fit-in-eighty-columns-at-all"
    hub = ct.Telemetry(home)
    hub.update_experiment(ids[0.05], name=long_name)
    hub.close()
    try:
        narrow = run(home, "runs", "--all", columns=80)
        assert narrow.rc == 0, narrow.err
        assert all(len(line) <= 80 for line in narrow.out.splitlines()), narrow.out
        assert len(data_lines(narrow.out)) >= 3 and "…" in narrow.out  # cut, not folded onto more lines
        assert "do not fit" in narrow.out  # the columns left off are named, not silently dropped
        piped = run(home, "runs", columns=None, real=True)
        assert long_name in piped.out and "…" not in piped.out
        assert len(data_lines(piped.out)) == 3
        sql = run(home, "sql", "SELECT * FROM runs LIMIT 3", columns=80)
        assert sql.rc == 0, sql.err
        assert len(sql.out.splitlines()) < 12 and all(len(line) <= 80 for line in sql.out.splitlines())
        wide = run(home, "sql", "SELECT experiment_id, environment FROM experiments LIMIT 3", columns=None)
        assert len(wide.out.splitlines()) == 5 and all(len(line) < 200 for line in wide.out.splitlines())
    finally:
        hub = ct.Telemetry(home)
        hub.update_experiment(ids[0.05], name="sweep")
        hub.close()


@requires_plugin("lightning")
def test_misspelt_names_are_errors_with_suggestions(sweep: Any) -> None:
    home, ids = sweep
    for args, expected in (
        (("runs", "--metrics", "val_los.min"), "--metrics: unknown metric 'val_los.min'; did you mean 'val_loss.min'?"),
        (
            ("runs", "--sort", "val_loss.mni"),
            "--sort: unknown summary '.mni' of 'val_loss'; did you mean 'val_loss.min'?",
        ),
        (("runs", "--params", "lrr"), "--params: no run has a param 'lrr'; did you mean 'lr'?"),
        (("show", "swep"), "no run with id or name 'swep'; did you mean 'sweep'?"),
        (("show", "sweep"), "'sweep' matches 3 runs"),
        (("export", "nope", "--format", "csv"), "no run with id or name 'nope'"),
    ):
        r = run(home, *args)
        assert r.rc == 1, (args, r.out)
        assert r.err.count("\n") == 1 and expected in r.err, r.err
    r = run(home, "export", next(iter(ids.values()))[-8:], "--format", "xml")
    assert r.rc == 1 and r.err.startswith("crucible: error: --format: ") and "fmt" not in r.err, r.err


@requires_plugin("lightning")
def test_show_has_params_status_and_summaries_in_every_format(sweep: Any) -> None:
    home, ids = sweep
    short = ids[0.05][-8:-3]  # a unique prefix of the short id
    r = run(home, "show", short)
    assert r.rc == 0, r.err
    assert ids[0.05] in r.out and "lr=0.05" in r.out and "stopped" in r.out
    rows = {line.split()[0]: line.split() for line in r.out.splitlines() if line.split()}
    assert rows["val_loss"][1:3] == ["logged", "3"]  # three validations, once each
    data = json.loads(run(home, "show", ids[0.05], "--format", "json").out)
    assert {"lr": 0.05, "seed": 0}.items() <= data["params"].items()
    val = next(s for s in data["summaries"] if s["metric"] == "val_loss")
    assert val["count"] == 3 and val["min"] == min(data_val(home, ids[0.05]))
    table = list(csv.DictReader(io.StringIO(run(home, "show", ids[0.05], "--format", "csv").out)))
    assert {"val_loss", "loss", "train_loss_step"} <= {row["metric"] for row in table}
    m = run(home, "metrics", short, "--format", "csv")
    assert m.rc == 0 and m.out.startswith("section,metric,value"), m.err


def data_val(home: Path, exp_id: str) -> list[float]:
    hub = ct.Telemetry(home)
    try:
        return logged_values(hub, exp_id, "val_loss")
    finally:
        hub.close()


def test_rename_note_and_tag_and_user_text_is_never_markup(tmp_path: Path) -> None:
    home = tmp_path / "crucible"
    hub = ct.Telemetry(home)
    a = hub.start_experiment("first", params={"lr": 0.1})
    b = hub.start_experiment("second", params={"lr": 0.2})
    hub.stop_experiment(a.id)
    hub.stop_experiment(b.id, status="failed")
    hub.close()
    assert run(home, "rename", "first", "[bold red]hot[/]").rc == 0
    r = run(home, "rename", a.id[-8:], "[/x]")
    assert r.rc == 0 and "[bold red]hot[/] -> [/x]" in r.out, r.err
    r = run(home, "note", "[/x]", "diverged", "[red]after[/red]", "warmup")
    assert r.rc == 0 and "diverged [red]after[/red] warmup" in r.out, r.err
    assert run(home, "note", "[/x]", "--append", "second line").rc == 0
    r = run(home, "tag", "second", "+[b]x", "+keep", "-draft")
    assert r.rc == 0 and "[b]x, keep" in r.out, r.err
    assert run(home, "tag", "second", "-keep").rc == 0
    hub = ct.Telemetry(home)
    exp = hub.get_experiment(a.id)
    assert (exp.name, exp.notes) == ("[/x]", "diverged [red]after[/red] warmup\nsecond line")
    assert hub.get_experiment(b.id).tags == ("[b]x",)
    hub.close()
    table = run(home, "runs").out
    assert "[/x]" in table and "[b]x" in table and "failed" in table
    assert "[/x]" in run(home, "show", "[/x]").out
    assert [row["id"] for row in json.loads(run(home, "runs", "--status", "failed", "--format", "json").out)] == [b.id]
    r = run(home, "tag", "second")
    assert r.rc == 1 and "TAGS: give tags" in r.err
    r = run(home, "runs", "--sort", "lr", "--desc", "--format", "csv")
    assert [row["name"] for row in csv.DictReader(io.StringIO(r.out))] == ["second", "[/x]"]


@requires_plugin("lightning")
def test_readme_example_answers_the_question_in_one_call(tmp_path: Path) -> None:
    from .._readme import run_example, section

    lines = run_example("Runs, params and summaries", tmp_path)
    table = [line.split() for line in lines[1:4]]
    assert [float(row[2]) for row in table] == sorted(float(row[2]) for row in table)
    assert float(lines[4].removeprefix("best lr: ")) == float(table[0][1])
    assert lines[5] == "val_loss values per run: [3, 3, 3]"
    # the shell lines of the section are the commands these tests run
    text = section("Runs, params and summaries")
    assert "$ crucible runs --params lr --metrics val_loss.min --sort val_loss.min\n" in text


@requires_plugin("lightning")
def test_demo_sweep_answers_with_ct_runs_and_crucible_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    import importlib

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples"))
    demo = importlib.import_module("demo_sweep")
    hub = ct.Telemetry(tmp_path / "crucible")
    try:
        result = demo.run(hub)
    finally:
        hub.close()
    out = capsys.readouterr().out
    frame = result["runs"]
    assert result["best_lr"] == frame.loc[frame["metrics.val_loss.min"].idxmin(), "params.lr"]
    assert "$ crucible runs --tag demo-sweep --params lr" in out
    assert "one value per validation: [2, 2, 2]" in out


def test_crucible_runs_imports_pandas_only_to_sort_and_prints_every_row_as_it_ends(tmp_path: Path) -> None:
    """The README's claim (a store it has seen), and the CLI's quick exit (no freeing of every object)
    losing no output."""
    import sys

    home = tmp_path / "h"
    hub = ct.Telemetry(home)
    for r in range(30):
        exp = hub.start_experiment(f"r{r}", bind=False)
        hub.log_params({"lr": 10.0 ** -(r % 3)}, exp.id)
        hub.record_metric(exp.id, "val_loss", 1.0 / (r + 1), step=1)
        hub.stop_experiment(exp.id)
    hub.close()
    # the first command over a store writes its schema and catalog files (pyarrow's writer loads pandas)
    assert run(home, "runs", "--format", "csv").rc == 0
    code = (
        "import sys\n"
        "from crucible_telemetry.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('pandas' in sys.modules, file=sys.stderr)\n"
    )
    for args, pandas in (
        (["runs", "--format", "csv"], "False"),
        (["runs", "--format", "csv", "--sort", "val_loss"], "True"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", code, "--home", str(home), *args], capture_output=True, text=True, check=True
        )
        assert out.stderr.split()[-1] == pandas, (args, out.stderr[-300:])
        rows = list(csv.DictReader(io.StringIO(out.stdout)))
        assert len(rows) == 30
    assert [r["name"] for r in rows][:3] == ["r29", "r28", "r27"]  # sorted by val_loss, lowest first
    piped = run(home, "runs", "--format", "csv", real=True, columns=None)  # the console script, its quick exit
    assert piped.rc == 0 and len(list(csv.DictReader(io.StringIO(piped.out)))) == 30
