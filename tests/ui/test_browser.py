"""The dashboard in a real headless Chromium, with ``crucible ui`` and a writer as real subprocesses.

Screenshots go to ``$CRUCIBLE_ARTIFACTS/ui`` (else the test's tmp folder), and the last ones to /tmp/ui-shots/.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli._browser import Browser

from .conftest import Server, Writer

pytestmark = pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs chromium-driver")


class Page(Browser):
    """The WebDriver helper plus screenshots, window size and waiting on a script."""

    def size(self, width: int, height: int) -> None:
        self._call("POST", f"/session/{self.session}/window/rect", {"width": width, "height": height})

    def shot(self, folder: Path, name: str) -> Path:
        png = base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        path.write_bytes(png)
        try:
            Path("/tmp/ui-shots").mkdir(exist_ok=True)
            shutil.copy(path, f"/tmp/ui-shots/{name}.png")
        except OSError:
            pass
        return path

    def wait(self, script: str, limit_s: float = 10.0) -> Any:
        deadline = time.monotonic() + limit_s
        while True:
            value = self.run(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for: {script}")
            time.sleep(0.05)


def _shots(tmp_path: Path) -> Path:
    art = os.environ.get("CRUCIBLE_ARTIFACTS")
    return Path(art) / "ui" if art else tmp_path / "shots"


def _errors(page: Page) -> list[str]:
    logs = [e["message"] for e in page.console() if e.get("level") == "SEVERE"]
    failed = page.run("return window.__ct.failed") or []
    return logs + [f"failed request {f}" for f in failed]


def _drawn(page: Page, run: str) -> Any:
    return page.run(
        "const s = window.__ct.series[arguments[0]]; return s ? {x: s.x, y: s.y, count: s.count} : null", run
    )


def test_runs_charts_live_and_resume(tmp_path: Path, store: tuple[Path, list[str]], writer: Writer) -> None:
    home, ids = store
    shots = _shots(tmp_path)
    server = Server(home)
    port = server.port
    with Page(tmp_path / "profile") as page:
        page.size(1400, 1000)
        page.open(server.url)
        page.wait("return window.__ct.ready && document.querySelectorAll('#runs tbody tr[data-id]').length === 5")
        rows = page.run(
            "return [...document.querySelectorAll('#runs tbody tr[data-id]')].map(tr => "
            "[tr.dataset.id, ...[...tr.cells].slice(1).map(td => td.textContent)])"
        )
        heads = page.run("return [...document.querySelectorAll('#runs thead th')].slice(1).map(th => th.textContent)")
        by_id = {r[0]: dict(zip(heads, r[1:])) for r in rows}
        assert set(by_id) == {*ids, writer.id}
        assert by_id[ids[2]]["name"] == "run2" and by_id[ids[2]]["condition"] == "treat"
        assert by_id[ids[2]]["lr"] == "0.1" and by_id[ids[1]]["seed"] == "1"
        assert by_id[ids[3]]["loss"] == "0.04236" and by_id[writer.id]["status"] == "running"
        page.shot(shots, "runs")
        page.run(
            "window.__ct.selected = new Set(arguments[0]); location.hash = '#/charts'", [ids[0], ids[1], writer.id]
        )
        page.wait("return window.__ct.view && window.__ct.view.series.length === 3")
        stored = _drawn(page, ids[0])
        assert stored["count"] == 300 and stored["x"] == [float(i) for i in range(300) if i != 150]  # NaN apart
        assert page.run("return document.querySelector('#nonfinite').textContent").count("NaN at 150") == 1
        assert page.wait("return document.querySelector('#verdict').textContent.includes('one run per group')")
        page.wait("return document.querySelectorAll('#detail table').length > 2")
        page.shot(shots, "charts")
        # live: a point emitted by the writer appears without reload
        page.wait("return window.__ct.lastId !== null")
        writer.emit(50, 0.123)
        t0 = time.monotonic()
        page.wait(f"const s = window.__ct.series[{writer.id!r}]; return s && s.x.includes(50)", 5.0)
        live_s = time.monotonic() - t0
        assert live_s <= 5.0
        # resume: the server stops, points are written, a new server on the same port; the page reconnects
        assert server.stop() == 0
        for step in range(51, 61):
            writer.emit(step, 1.0 / step)
        writer.flush()
        server = Server(home, port)
        page.wait(f"const s = window.__ct.series[{writer.id!r}]; return s && s.x.includes(60)", 15.0)
        live = _drawn(page, writer.id)
        during = [e["message"] for e in page.console() if e.get("level") == "SEVERE"]  # while no server ran
        assert all("ERR_CONNECTION_REFUSED" in m for m in during), during
        assert live["x"] == [float(i) for i in range(61)]  # no gap, no repeat
        # seeds grouped by condition: a mean +/- sd band per condition, smoothed (the README's screenshot)
        page.run(
            "window.__ct.selected = new Set(arguments[0]); document.querySelector('#bands').checked = true;"
            "const s = document.querySelector('#smooth'); s.value = 0.6; s.dispatchEvent(new Event('input'))",
            ids,
        )
        page.wait("return window.__ct.view.groups && window.__ct.view.groups.length === 2")
        assert page.run("return window.__ct.view.groups.map(g => [g.label, g.n[0]])") == [["control", 2], ["treat", 2]]
        assert "time-aware" in page.run("return document.querySelector('#chartnote').textContent")
        verdict = page.wait("const t = document.querySelector('#verdict').textContent; return t.includes('n=2') && t")
        assert "control" in verdict and "n=2" in verdict
        page.shot(shots, "dashboard")
        # downsampled: a long curve keeps its min and max
        page.run("document.querySelector('#smooth').value = 0; window.__ct.selected = new Set(arguments[0]);", [ids[3]])
        page.run("location.hash = '#/runs'; setTimeout(() => { location.hash = '#/charts'; }, 50)")
        page.wait(f"return window.__ct.view && window.__ct.view.series[0].run === {ids[3]!r}")
        page.run("document.querySelector('#bands').checked = false")
        page.run("const s = document.querySelector('#smooth'); s.value = 0; s.dispatchEvent(new Event('input'))")
        page.size(800, 900)
        page.run("document.querySelector('#xaxis').dispatchEvent(new Event('change'))")
        page.wait("return window.__ct.view.series[0].x.length > 0 && !window.__ct.view.groups")
        page.wait("return window.__ct.chart && window.__ct.chart.width <= document.documentElement.clientWidth - 20")
        s = page.run("return window.__ct.view.series[0]")
        assert min(s["y"]) == s["min"] and max(s["y"]) == s["max"]
        page.shot(shots, "charts-800")
        page.open(server.url + "#/llm")
        page.wait("return document.querySelector('#llm').textContent.length > 0")
        page.open(server.url + "#/metrics")
        page.wait("return document.querySelector('#metrics').textContent.length > 0")
        assert _errors(page) == []
    server.stop()
    print(f"live point shown {live_s:.2f} s after emit")
