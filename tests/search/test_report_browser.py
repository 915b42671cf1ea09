"""The report in a real browser: headless Chromium renders every plot with no console message, and the Pareto plot
shows as many front points as the run's front has."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from search.cli import main
from search.results.export import open_run
from search.results.report_plots import _STYLE

from ._tiny_run import copy_run, tiny_run

FRONT_RGB = "rgb({}, {}, {})".format(*(int(_STYLE["Pareto front"][0][i:i + 2], 16) for i in (1, 3, 5)))


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "tiny_shared"  # the run tests/search/test_report.py shares
    base.mkdir(exist_ok=True)
    return tiny_run(base)


def chromium(page: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium on ``page`` after 10 s of virtual time (the page's scripts have all run); console
    messages go to stderr as ``CONSOLE`` log lines."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium not found: install the Debian package `chromium` (.ci/run does)"
    return subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", *args,
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=180)


def console(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def test_console_messages_are_caught(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>notAFunction();</script></body></html>")
    assert any("ReferenceError" in line for line in console(chromium(page, "--dump-dom")))


def test_report_renders_in_chromium_with_the_front_on_the_pareto_plot(tiny, tmp_path):
    run = copy_run(tiny, tmp_path)
    assert main(["report", str(run)]) == 0
    page = run / "report" / "report.html"
    proc = chromium(page, "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console(proc) == []
    dom = proc.stdout
    figures = re.split(r'<div id="[^"]+" class="plotly-graph-div', dom)[1:]
    assert len(figures) >= 5 and all('class="main-svg"' in f for f in figures)  # every plot rendered its SVG
    pareto = dom[dom.index("Pareto front</h2>"):]
    pareto = re.split(r'<div id="[^"]+" class="plotly-graph-div', pareto)[1]
    first_axes = pareto[pareto.index('class="subplot xy"'):]
    first_axes = first_axes[:first_axes.find('class="subplot x2y2"')]
    points = re.findall(r'<path class="point"[^>]*fill: ' + re.escape(FRONT_RGB), first_axes)
    study, _ = open_run(run)
    assert len(points) == len(study.best_trials) > 0

    shot = tmp_path / "report.png"
    proc = chromium(page, f"--screenshot={shot}", "--window-size=1280,2400", "--hide-scrollbars")
    assert proc.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20000
