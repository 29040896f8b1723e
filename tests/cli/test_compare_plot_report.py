"""``crucible compare --by``, ``plot`` and ``report`` on a real Lightning lr sweep, as a researcher uses them."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import crucible_telemetry as ct
from crucible_telemetry.cli import main

from .._requires import requires_plugin
from ..core._sweep import LRS, lightning_sweep
from .conftest import Run

pytestmark = [pytest.mark.slow, requires_plugin("lightning", "torch")]

TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str], list[str]]]:
    """3 lrs x 2 seeds (tag ``sweep``) and 2 lrs x 1 seed (tag ``single``), written and closed."""
    root = tmp_path_factory.mktemp("clisweep")
    home = root / "crucible"
    hub = ct.Telemetry(home, flush_interval=0.2)
    try:
        seeded = lightning_sweep(hub, root)
        single = lightning_sweep(hub, root, lrs=(0.01, 0.05), seeds=(0,), tag="single")
    finally:
        hub.close()
    yield home, seeded, single


def here(home: Path, *args: str) -> Run:
    """``crucible --home HOME ARGS`` in this process (the same ``main()`` the console script runs,
    without its two seconds of start-up); the command's hub is closed and the default restored after."""
    saved, prev = dict(os.environ), ct.default(create=False)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ["COLUMNS"] = "160"
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["--home", str(home), *args])
    finally:
        os.environ.clear()
        os.environ.update(saved)
        opened = ct.set_default(prev)
        if opened is not None and opened is not prev:
            opened.close()
    return Run(rc, out.getvalue(), err.getvalue())


def _pixels(path: Path, hex_color: str, alpha: float = 1.0, tol: float = 0.03) -> int:
    """Pixels of ``hex_color`` drawn at ``alpha`` over white."""
    import matplotlib.image as mpimg

    img = mpimg.imread(path)[..., :3]
    rgb = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    want = 1 - alpha * (1 - rgb)
    return int((np.abs(img - want).max(axis=-1) < tol).sum())


def test_compare_by_lr_answers_with_group_means_and_a_rank_correlation(crucible: Any, sweep: Any) -> None:
    home, ids, _ = sweep
    r = crucible("compare", "--by", "lr", "--metric", "val_loss.min", "--tag", "sweep", home=home)
    assert r.rc == 0, r.err
    flat = " ".join(r.out.split())
    assert "val_loss.min by lr" in flat and "mean [95% CI]" in flat
    assert re.search(
        r"val_loss\.min falls as lr rises: Spearman rho = -0\.\d\d \[95% CI -[01]\.\d\d, -?0\.\d\d\]", flat
    )
    assert "n = 6 runs" in flat and "t-interval over their runs" in flat and "Holm" in flat
    assert f"lowest mean val_loss.min: lr={LRS[-1]:g}" in flat
    data = json.loads(here(home, "compare", *ids, "--by", "lr", "--metric", "val_loss.min", "--format", "json").out)
    assert [g["label"] for g in data["groups"]] == [f"lr={lr:g}" for lr in LRS]
    assert [g["n"] for g in data["groups"]] == [2, 2, 2]
    c = data["correlation"]
    assert c["n"] == 6 and c["ci"]["low"] < c["rho"] < c["ci"]["high"] and c["method"] == "Spearman"
    assert all(p["tested"] and p["p_adjusted"] >= p["p"] - 1e-12 for p in data["pairs"])
    assert all(p["cohens_d_ci"]["low"] < p["cohens_d"] < p["cohens_d_ci"]["high"] for p in data["pairs"])
    assert all(p["difference_ci"]["low"] < p["difference"] < p["difference_ci"]["high"] for p in data["pairs"])


def test_one_run_per_group_gives_a_difference_and_no_p_value(crucible: Any, sweep: Any) -> None:
    home, _, single = sweep
    short = [i[:-2] for i in single]  # unique id prefixes name runs too
    r = crucible("compare", *short, "--metric", "val_loss.min", home=home)
    assert r.rc == 0, r.err
    assert "one run per group: no test possible, difference = " in r.out and "(lr=0.05 minus lr=0.01)" in r.out
    assert "p =" not in r.out and "p <" not in r.out
    r = here(home, "compare", "--by", "lr", "--metric", "val_loss.min", "--tag", "single")
    assert r.rc == 0, r.err
    assert "one run per group: no test possible" in r.out and "needs 3 or more" in r.out


def test_a_curve_as_samples_is_converted_and_said(crucible: Any, sweep: Any) -> None:
    home, ids, _ = sweep
    r = crucible("compare", ids[0], ids[-1], "--metric", "crucible_train.epoch.stop:val_loss", home=home)
    assert r.rc == 0, r.err
    flat = " ".join(r.out.split())
    assert "not independent samples" in flat and "crucible_train.epoch.stop:val_loss.last" in flat
    assert "one run per group: no test possible" in flat
    data = json.loads(here(home, "compare", ids[0], ids[-1], "--metric", "val_loss", "--format", "json").out)
    assert [g["n"] for g in data["groups"]] == [1, 1] and data["pairs"][0]["p_adjusted"] is None
    assert "not independent samples" in data["notes"][0]


def test_misspelt_names_are_errors_with_suggestions(sweep: Any) -> None:
    home, ids, _ = sweep
    for args, expected in (
        (
            ("compare", "--by", "lr", "--metric", "val_los.min", "--tag", "sweep"),
            "--metric: unknown metric 'val_los.min'; did you mean 'val_loss.min'?",
        ),
        (
            ("compare", ids[0], ids[1], "--metric", "val_los"),
            "--metric: unknown metric 'val_los'; did you mean 'val_loss'?",
        ),
        (
            ("compare", "--by", "lrr", "--metric", "val_loss.min", "--tag", "sweep"),
            "--by: no run has a param 'lrr'; did you mean 'lr'?",
        ),
        (
            ("plot", "--tag", "sweep", "--metric", "val_loss", "--group-by", "lrr"),
            "--group-by: no run has a param 'lrr'; did you mean 'lr'?",
        ),
        (
            ("plot", *ids[:2], "--metric", "val_loss", "--label", "seeds"),
            "--label: no run has a param 'seeds'; did you mean 'seed'?",
        ),
    ):
        r = here(home, *args)
        assert r.rc == 1, (args, r.out, r.err)
        assert r.err == f"crucible: error: {expected}\n", r.err


def test_plot_groups_replicates_into_a_band_on_a_log_axis(crucible: Any, sweep: Any, tmp_path: Path) -> None:
    import matplotlib.image as mpimg

    home, _, _ = sweep
    out = tmp_path / "band.png"
    r = crucible(
        "plot",
        "--tag",
        "sweep",
        "--metric",
        "val_loss",
        "--x",
        "epoch",
        "--group-by",
        "lr",
        "--logy",
        "-o",
        str(out),
        home=home,
    )
    assert r.rc == 0, r.err
    assert mpimg.imread(out).shape[:2] == (450, 800)
    assert all(_pixels(out, c) > 150 for c in TAB10[:3]) and _pixels(out, TAB10[3]) == 0  # one curve per lr
    assert _pixels(out, TAB10[2], alpha=0.18) > 200  # the +/- sd band of lr=0.08, whose seeds part ways
    plain, dots = tmp_path / "plain.png", tmp_path / "dots.png"
    assert here(home, "plot", "--tag", "sweep", "--metric", "val_loss", "--no-markers", "-o", str(plain)).rc == 0
    assert here(home, "plot", "--tag", "sweep", "--metric", "val_loss", "-o", str(dots)).rc == 0
    six = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
    drawn = sum(_pixels(dots, c) for c in six)
    assert drawn > sum(_pixels(plain, c) for c in six) + 150  # 3 validations per run: markers by default


def test_plot_labels_curves_by_what_differs(sweep: Any) -> None:
    from crucible_telemetry.analysis.plots import plot_metric

    home, ids, _ = sweep
    with ct.Telemetry(home) as hub:
        fig = plot_metric(ids, "val_loss", x="epoch", hub=hub)
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [
            f"lr={lr:g} seed={s}" for lr in LRS for s in (0, 1)
        ]
        assert ax.get_xlabel() == "epoch" and list(ax.lines[0].get_xdata()) == [0.0, 1.0, 2.0]
        assert ax.lines[0].get_marker() == "o" and ax.get_yscale() == "linear"
        fig = plot_metric(ids, "val_loss", label="lr", logy=True, hub=hub)
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"lr={lr:g}" for lr in LRS]
        assert ax.get_yscale() == "log" and ax.get_xlabel() == "global step"


def test_report_leads_with_validation_metrics_and_renders_in_chromium(
    crucible: Any, sweep: Any, tmp_path: Path
) -> None:
    from ._browser import Browser

    home, _, _ = sweep
    out = tmp_path / "sweep.html"
    r = crucible("report", "--tag", "sweep", "-o", str(out), home=home)
    assert r.rc == 0, r.err
    text = out.read_text()
    assert "<script" not in text and text.count("<h2>Environment</h2>") == 1
    ps = re.findall(r"\bp = ([^,;)<\s]+)", text) + re.findall(r"\bp (<) 0\.001", text)
    assert ps and all(re.fullmatch(r"0\.\d{3}|1\.000|<", p) for p in ps), ps  # as the CLI prints them
    with Browser(tmp_path / "profile") as browser:
        browser._call("POST", f"/session/{browser.session}/window/rect", {"width": 1280, "height": 1400})
        browser.open(out.as_uri())
        heads = browser.run("return [...document.querySelectorAll('h2')].map(h => h.innerText)")
        assert heads[:3] == ["Results", "Comparison", "Plots"] and "Params" in heads and "Environment" in heads
        cols = browser.run("return [...document.querySelector('table').querySelectorAll('th')].map(t => t.innerText)")
        assert cols == ["run", "lr", "seed", "val_loss (last)", "val_loss (min)"]
        body = browser.run("return document.body.innerText")
        assert "val_loss.min falls as lr rises: Spearman rho" in body and "the same for all 6 run(s)" in body
        holm = browser.run(
            """const t = [...document.querySelectorAll('table')].find(t => t.innerText.includes('p (Holm)'));
            const i = [...t.querySelectorAll('th')].findIndex(h => h.innerText === 'p (Holm)');
            return [...t.querySelectorAll('tbody tr')].map(r => r.children[i].innerText)"""
        )
        assert len(holm) == 3 and all(re.fullmatch(r"<0\.001|\d\.\d{3}", p) for p in holm), holm
        assert browser.run("return document.querySelectorAll('details').length") >= 2  # shared env and params folded
        assert browser.run("return document.documentElement.scrollWidth <= window.innerWidth")  # nothing overflows
        images = browser.run("return [...document.images].map(i => [i.complete, i.naturalWidth])")
        assert len(images) == 2 and all(ok and w > 0 for ok, w in images)
        png = base64.b64decode(browser._call("GET", f"/session/{browser.session}/screenshot"))
        (tmp_path / "sweep.png").write_bytes(png)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert [e for e in browser.console() if e.get("level") == "SEVERE"] == []


def test_plot_draws_requests_as_a_line_when_asked(store: Any, tmp_path: Path) -> None:
    from crucible_telemetry.analysis.plots import plot_metric

    with ct.Telemetry(store.home) as hub:
        ids = [store.ids["llm_control"][0], store.ids["llm_treatment"][0]]
        fig = plot_metric(ids, "latency", kind="line", hub=hub)
        ax = fig.axes[0]
        assert ax.get_xlabel() == "request" and ax.get_ylabel() == "latency (ms)"
        n = len(ax.lines[0].get_xdata())
        assert 50 <= n <= 60 and 40 < float(np.mean(ax.lines[0].get_ydata())) < 80  # ~60 ms, failures left out
        assert plot_metric(ids, "latency", hub=hub).axes[0].get_ylabel() == "events"  # a histogram by default
