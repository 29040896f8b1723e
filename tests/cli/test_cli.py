"""``crucible`` run as a user runs it (a subprocess on the installed script) against a store made by real runs."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from .conftest import Store, crucible_exe

pytestmark = pytest.mark.slow

COMMANDS = ["runs", "show", "metrics", "compare", "sql", "export", "prune", "serve", "plot", "report"]


def test_top_level_help_lists_every_command(crucible: Any) -> None:
    r = crucible("--help")
    assert r.rc == 0
    for cmd in COMMANDS:
        assert cmd in r.out
    assert "examples:" in r.out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_shows_an_example(crucible: Any, command: str) -> None:
    r = crucible(command, "--help")
    assert r.rc == 0, r.err
    assert re.search(r"^examples?:\n  crucible " + command, r.out, re.M), r.out
    assert "--home" in r.out


def test_runs_lists_experiments_with_status_and_headline_metrics(crucible: Any, store: Store) -> None:
    r = crucible("runs")
    assert r.rc == 0, r.err
    for name in ("baseline-lr", "warmup-lr", "llm-control-s0", "llm-treatment-s2"):
        assert name in r.out
    assert "stopped" in r.out
    assert re.search(r"60 req · mean \d+\.\d ms · \d+\.\d% ok", r.out), r.out
    header = next(line for line in r.out.splitlines() if line.startswith("id "))
    assert header.split()[-3:] == ["val_loss", "val_loss.min", "requests"], header
    baseline = next(line for line in r.out.splitlines() if "baseline-lr" in line)
    assert store.ids["train_control"].endswith(baseline.split()[0])  # the short id
    assert all(len(line) <= 160 for line in r.out.splitlines())


def test_runs_filters_by_condition_tag_and_status(crucible: Any, store: Store) -> None:
    r = crucible("runs", "--condition", "treatment", "--tag", "llm", "--format", "json")
    assert r.rc == 0, r.err
    rows = json.loads(r.out)
    assert sorted(row["id"] for row in rows) == sorted(store.ids["llm_treatment"])
    assert all(row["condition"] == "treatment" and row["status"] == "stopped" for row in rows)
    assert all(row["requests"] + row["errors"] == 60 and row["mean_ms"] > 10 for row in rows)
    r = crucible("runs", "--tag", "train", "--format", "csv")
    names = [row["name"] for row in csv.DictReader(io.StringIO(r.out))]
    assert names == ["baseline-lr", "warmup-lr"]
    r = crucible("runs", "--status", "running")
    assert r.rc == 0 and "no experiments" in r.out and "match the filters" in r.out
    assert crucible("runs", "--status", "crashed", "--format", "json").out.strip() == "[]"


def test_home_flag_wins_over_the_environment(crucible: Any, store: Store, tmp_path: Path) -> None:
    r = crucible("runs", "--home", str(store.home), "--format", "json", home=tmp_path / "elsewhere")
    assert r.rc == 0, r.err
    assert len(json.loads(r.out)) == 8
    r = crucible("--home", str(store.home), "runs", "--format", "json", home=tmp_path / "elsewhere")
    assert len(json.loads(r.out)) == 8


def test_show_prints_the_record_environment_and_event_counts(crucible: Any, store: Store) -> None:
    exp_id = store.ids["llm_control"][0]
    r = crucible("show", exp_id)
    assert r.rc == 0, r.err
    for text in (
        exp_id,
        "llm-control-s0",
        "prompt caching lowers request latency",
        "control",
        "python",
        "req_llm.request.stop",
        "req_llm.request.start",
    ):
        assert text in r.out
    data = json.loads(crucible("show", exp_id, "--format", "json").out)
    assert data["event_counts"]["req_llm.request.start"] == 60
    assert data["event_counts"]["req_llm.request.stop"] + data["event_counts"].get("req_llm.request.exception", 0) == 60
    assert data["environment"]["python"]


def test_metrics_matches_the_events(crucible: Any, store: Store) -> None:
    exp_id = store.ids["llm_control"][0]
    m = json.loads(crucible("metrics", exp_id, "--format", "json").out)
    rel = m["reliability"]
    assert rel["total"] == 60 and rel["success_count"] + rel["error_count"] == 60
    assert m["latency"]["count"] == rel["success_count"]
    assert 40 < m["latency"]["p50"] < 80  # simulated around 60 ms
    table = crucible("metrics", exp_id).out
    assert "latency" in table and "success_rate" in table and "training" not in table
    train = json.loads(crucible("metrics", store.ids["train_control"], "--format", "json").out)["training"]
    assert train["epochs"] == 3 and train["global_steps"] == 60


def test_compare_two_experiments_states_the_verdict(crucible: Any, store: Store) -> None:
    a, b = store.ids["llm_control"][0], store.ids["llm_treatment"][0]
    r = crucible("compare", a, b, "--metric", "latency")
    assert r.rc == 0, r.err
    flat = " ".join(r.out.split())
    assert re.search(r"llm-treatment-s0 lower latency than llm-control-s0, p < 0\.001, d = -\d\.\d\d", flat), flat
    assert "Welch t" in r.out and "mean [95% CI]" in r.out
    data = json.loads(crucible("compare", a, b, "--metric", "latency", "--format", "json").out)
    pair = data["pairs"][0]
    assert pair["significant"] and pair["difference"] < -10 and pair["welch_p"] < 0.001
    assert -1 <= pair["cliffs_delta"] < -0.5 and pair["mannwhitney_p"] < 0.001


def test_compare_conditions_over_seeds(crucible: Any, store: Store) -> None:
    r = crucible("compare", "--conditions", "control", "treatment", "--metric", "latency", *store.llm)
    assert r.rc == 0, r.err
    flat = " ".join(r.out.split())
    assert "n (seeds)" in r.out
    assert re.search(r"treatment lower latency than control, p [<=] 0\.0\d\d", flat), flat
    data = json.loads(crucible("compare", *store.llm, "--by", "condition", "--format", "json").out)
    assert [g["n"] for g in data["groups"]] == [3, 3]
    assert data["groups"][0]["mean_ci"]["low"] < data["groups"][0]["mean"] < data["groups"][0]["mean_ci"]["high"]


def test_compare_success_rates_of_three_runs_is_holm_adjusted(crucible: Any, store: Store) -> None:
    ids = store.ids["llm_control"]
    data = json.loads(crucible("compare", *ids, "--metric", "success", "--format", "json").out)
    assert data["correction"] == "holm" and len(data["pairs"]) == 3
    for pair in data["pairs"]:
        assert pair["test"] in ("Fisher's exact", "chi-square")
        assert pair["p_adjusted"] >= pair["p"]


def test_sql_formats_and_output_file(crucible: Any, store: Store, tmp_path: Path) -> None:
    q = "SELECT event, count(*) AS n FROM events WHERE experiment_id = ? GROUP BY event ORDER BY event"
    exp_id = store.ids["llm_control"][0]
    r = crucible("sql", q, "--param", exp_id)
    assert r.rc == 0, r.err
    assert "req_llm.request.start" in r.out and "60" in r.out
    rows = json.loads(crucible("sql", q, "--param", exp_id, "--format", "json").out)
    assert {"event": "req_llm.request.start", "n": 60} in rows
    out = tmp_path / "q.csv"
    r = crucible("sql", q, "--param", exp_id, "--format", "csv", "-o", str(out))
    assert r.rc == 0 and r.out == ""
    parsed = list(csv.DictReader(out.open()))
    assert sum(int(row["n"]) for row in parsed) == 120
    maps = json.loads(
        crucible(
            "sql", "SELECT measurements FROM events WHERE event = 'req_llm.request.stop' LIMIT 1", "--format", "json"
        ).out
    )
    assert maps[0]["measurements"]["total_tokens"] > 0


def test_errors_are_one_line_and_nonzero(crucible: Any, store: Store, tmp_path: Path) -> None:
    for args, expected in (
        (("sql", "SELEC 1"), "Parser Error"),
        (("show", "no-such-experiment"), "no run with id or name 'no-such-experiment'"),
        (("compare", store.ids["llm_control"][0]), "two or more"),
        (("compare", *store.ids["llm_control"][:2], "--metric", "no such"), "metric"),
        (("plot", store.ids["train_control"], "--metric", "loss", "--smooth", "1.5"), "smooth"),
    ):
        r = crucible(*args)
        assert r.rc == 1, (args, r.out, r.err)
        assert r.err.count("\n") == 1 and r.err.startswith("crucible: error: ") and expected in r.err, r.err
    r = crucible("runs", home=tmp_path / "missing")
    assert r.rc == 1 and "no crucible store" in r.err and r.err.count("\n") == 1


def test_export_each_format(crucible: Any, store: Store, tmp_path: Path) -> None:
    exp_id = store.ids["train_control"]
    for fmt in ("csv", "jsonl", "parquet"):
        out = tmp_path / f"run.{fmt}"
        r = crucible("export", exp_id, "--format", fmt, "-o", str(out))
        assert r.rc == 0, r.err
        assert f"wrote 68 events of {exp_id}" in r.out
        if fmt == "csv":
            assert len(list(csv.DictReader(out.open()))) == 68
        elif fmt == "jsonl":
            lines = out.read_text().splitlines()
            assert len(lines) == 68 and json.loads(lines[0])["experiment_id"] == exp_id
        else:
            assert pq.read_table(out).num_rows == 68
    r = crucible("export", exp_id, "--format", "csv", "-o", str(tmp_path / "run.csv"))
    assert r.rc == 1 and "--overwrite" in r.err
    r = crucible("export", exp_id, "--format", "csv", "-o", str(tmp_path / "run.csv"), "--overwrite")
    assert r.rc == 0


def test_prune_compacts_and_reports(crucible: Any) -> None:
    r = crucible("prune", "--grace", "0")
    assert r.rc == 0, r.err
    assert re.search(r"removed \d+ superseded file\(s\); \d+ segment file\(s\) remain", r.out)
    assert len(json.loads(crucible("runs", "--format", "json").out)) == 8  # nothing lost


def test_serve_exposes_metrics_until_interrupted(store: Store) -> None:
    proc = subprocess.Popen(
        [crucible_exe(), "serve", "--home", str(store.home), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"serving (http://127\.0\.0\.1:\d+\S*)", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        url = m.group(1) if m.group(1).endswith("/metrics") else m.group(1).rstrip("/") + "/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
            assert "text/plain" in resp.headers["Content-Type"]
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(20)
    assert rc == 0


def _color_pixels(path: Path, hex_color: str, tol: float = 0.04) -> int:
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(path)[..., :3]
    rgb = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(img - rgb).max(axis=-1) < tol).sum())


def test_plot_overlays_curves_of_several_runs(crucible: Any, store: Store, tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    out = tmp_path / "loss.png"
    r = crucible(
        "plot",
        store.ids["train_control"],
        store.ids["train_treatment"],
        "--metric",
        "loss",
        "--smooth",
        "0.6",
        "-o",
        str(out),
    )
    assert r.rc == 0, r.err
    img = mpimg.imread(out)
    assert img.shape[:2] == (450, 800)
    # both runs' lines are drawn, in the first two colors of the cycle
    assert _color_pixels(out, "#1f77b4") > 300
    assert _color_pixels(out, "#ff7f0e") > 300
    assert _color_pixels(out, "#2ca02c") == 0
    out2 = tmp_path / "loss_time.png"
    r = crucible(
        "plot",
        store.ids["train_control"],
        "--metric",
        "loss",
        "--x",
        "time",
        "--width",
        "640",
        "--height",
        "480",
        "-o",
        str(out2),
    )
    assert r.rc == 0, r.err
    assert mpimg.imread(out2).shape[:2] == (480, 640)
    assert _color_pixels(out2, "#1f77b4") > 300 and _color_pixels(out2, "#ff7f0e") == 0


def test_plot_latency_histograms(crucible: Any, store: Store, tmp_path: Path) -> None:
    out = tmp_path / "latency.png"
    r = crucible("plot", *store.llm, "--metric", "latency", "--by", "condition", "-o", str(out))
    assert r.rc == 0, r.err
    assert _color_pixels(out, "#1f77b4") > 200 and _color_pixels(out, "#ff7f0e") > 200
    assert _color_pixels(out, "#2ca02c") == 0  # two conditions, two colors


def test_report_is_self_contained_and_renders_in_chromium(crucible: Any, store: Store, tmp_path: Path) -> None:
    from ._browser import Browser

    out = tmp_path / "report.html"
    r = crucible("report", *store.llm, "-o", str(out))
    assert r.rc == 0, r.err
    text = out.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from the network
    assert "<script" not in text and 'src="data:image/png;base64,' in text
    with Browser(tmp_path / "profile") as browser:
        browser.open(out.as_uri())
        body = browser.run("return document.body.innerText")
        for name in (
            "llm-control-s0",
            "llm-treatment-s2",
            "prompt caching lowers request latency",
            "treatment lower latency than control",
            "Environment",
            "Headline metrics",
        ):
            assert name in body
        images = browser.run("return [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        assert images and all(ok and w > 0 and h > 0 for ok, w, h in images)
        errors = [e for e in browser.console() if e.get("level") == "SEVERE"]
        assert errors == []


def test_training_report_has_the_loss_plot(crucible: Any, store: Store, tmp_path: Path) -> None:
    out = tmp_path / "train.html"
    r = crucible("report", store.ids["train_control"], store.ids["train_treatment"], "-o", str(out))
    assert r.rc == 0, r.err
    text = out.read_text()
    assert "baseline-lr" in text and "warmup-lr" in text and "val_loss (min)" in text
    assert "learning-rate warmup lowers the training loss" in text
    # one run each: a difference and no test (the points of a curve are not independent samples)
    assert "one run per group: no test possible, difference = " in text and "p &lt;" not in text
    assert text.count("data:image/png;base64,") == 2  # val_loss by epoch, loss by step


def test_usage_errors_are_one_line_with_exit_code_2(crucible: Any) -> None:
    for args in (("bogus",), ("plot",), ("runs", "--status", "bad")):
        r = crucible(*args)
        assert r.rc == 2
        assert r.err.count("\n") == 1 and "error:" in r.err and "--help" in r.err, r.err


def test_export_shows_progress_on_a_terminal(store: Store, tmp_path: Path) -> None:
    import os
    import pty

    master, slave = pty.openpty()
    out = tmp_path / "tty.csv"
    proc = subprocess.Popen(
        [
            crucible_exe(),
            "export",
            store.ids["llm_control"][0],
            "--home",
            str(store.home),
            "--format",
            "csv",
            "-o",
            str(out),
            "--progress-over",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert b"exporting 120 events to csv" in b"".join(chunks)  # the live progress line on the terminal
    assert b"wrote 120 events" in stdout and len(list(csv.DictReader(out.open()))) == 120


def test_report_of_one_experiment_has_no_comparison(crucible: Any, store: Store, tmp_path: Path) -> None:
    out = tmp_path / "one.html"
    r = crucible("report", store.ids["llm_treatment"][0], "-o", str(out))
    assert r.rc == 0, r.err
    text = out.read_text()
    assert "llm-treatment-s0" in text and "<h2>Comparison</h2>" not in text
    assert "latency (ms) distribution" in text and "Headline metrics" in text
