"""The leaderboard in a real MLflow UI, seen by a real browser.

Records a greedy search through eaglesearch.tracking (realistic values, persisted predictions, stage runs), builds
its report, starts ``eaglesearch ui`` (an ``mlflow server`` subprocess on a free loopback port), opens the
leaderboard link it prints in headless Chromium, and the bare experiment URL (what the experiments list links to) in
a fresh browser, and checks what a person would see on both: the search run's trials as rows,
best first, with the objective, its interval and the per-benchmark scores as columns, and the best candidate named in
the experiment's description; then that the search run's report.html renders with its charts in MLflow's artifact
view. Screenshots of both are saved under the test's tmp_path.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from eaglesearch.app.ties import tie_labels
from eaglesearch.report import write_report
from eaglesearch.tracking import TrackingStore
from tests.report_records import record_greedy

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SERVER_START_S = 180
PAGE_WAIT_S = 120
EXPECTED_METRICS = ["objective", "objective_low", "objective_high", "score/color"]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                       reason="needs Debian's chromium and chromium-driver (.ci/run installs them: "
                              "apt-get install -y chromium chromium-driver)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"eaglesearch ui exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"the MLflow server did not answer /health within {SERVER_START_S}s:\n{log.read_text()}")


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1920,1080"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def _grid_rows(driver) -> dict[int, str]:
    """Row index → the row's text, joining the pinned and scrolling halves of each ag-grid row."""
    rows: dict[int, list[str]] = {}
    for element in driver.find_elements("css selector", "[role=row][row-index]"):
        index = element.get_attribute("row-index")
        if index is not None and index.isdigit():
            rows.setdefault(int(index), []).append(element.text.replace("\n", " "))
    return {i: " ".join(parts) for i, parts in sorted(rows.items())}


def _headers(driver) -> list[str]:
    """Column header texts in display order (``aria-colindex``; the DOM order of ag-grid headers is not it)."""
    found = []
    for h in driver.find_elements("css selector", "[role=columnheader][aria-colindex]"):
        index, text = h.get_attribute("aria-colindex"), h.text.strip()
        if text and index and index.isdigit():
            found.append((int(index), text))
    return list(dict.fromkeys(text for _, text in sorted(found)))


def _metric_headers(driver) -> list[str]:
    return [h for h in _headers(driver) if h.startswith(("objective", "score/"))]


def _wait_for_leaderboard(driver, trials: int) -> dict[int, str]:
    """The grid's rows once it shows ``trials`` rows under the leaderboard's metric columns (or after PAGE_WAIT_S)."""
    deadline = time.monotonic() + PAGE_WAIT_S
    rows: dict[int, str] = {}
    while time.monotonic() < deadline:
        rows = _grid_rows(driver)
        if len(rows) >= trials and _metric_headers(driver)[:4] == EXPECTED_METRICS:
            break
        time.sleep(1)
    return rows


def test_leaderboard_is_visible_in_the_mlflow_ui(tmp_path: Path) -> None:
    store = TrackingStore(f"sqlite:///{tmp_path}/mlflow.db")
    record_greedy(store, "demo-greedy")
    report = write_report(store, "demo-greedy", tmp_path / "reports",
                          ties=lambda table, runs: tie_labels(store, table, runs))
    table = report.table
    best = str(table["candidate"].iloc[0])
    trials = [str(c) for c in table["candidate"]]

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "ui.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "eaglesearch.cli", "ui", "--tracking-uri", store.uri,
                                 "--port", str(port)], stdout=sink, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    driver = None
    try:
        _wait_healthy(base, proc, log)
        printed = re.search(r"leaderboard demo-greedy: (\S+)", log.read_text())
        assert printed, f"eaglesearch ui printed no leaderboard link:\n{log.read_text()}"
        url = printed.group(1)
        assert url.startswith(f"{base}/#/experiments/")

        exp_id = url.split("/#/experiments/")[1].split("/")[0]
        driver = _browser()
        # A fresh browser (GenAI mode, MLflow's default) opening the bare experiment URL, as the experiments list
        # links to it, lands on the leaderboard: the runs table in the model-training UI with the saved view.
        driver.get(f"{base}/#/experiments/{exp_id}")
        rows = _wait_for_leaderboard(driver, len(trials))
        driver.save_screenshot(str(tmp_path / "bare_url.png"))
        assert f"/#/experiments/{exp_id}/runs?" in driver.current_url, driver.current_url
        assert "viewStateShareKey=eaglesearch-leaderboard" in driver.current_url, driver.current_url
        assert _metric_headers(driver)[:4] == EXPECTED_METRICS, _headers(driver)
        assert len(rows) == len(trials), rows

        driver.get(url)  # the link `eaglesearch ui` prints
        rows = _wait_for_leaderboard(driver, len(trials))
        driver.save_screenshot(str(tmp_path / "leaderboard.png"))
        headers = _headers(driver)
        body = driver.find_element("tag name", "body").text

        # The curated metric columns, in the view's order: objective, its interval, then the benchmark scores
        # (the grid renders only the columns in view, so the last ones may be off to the right).
        assert _metric_headers(driver)[:4] == EXPECTED_METRICS, headers
        assert len(rows) == len(trials), rows  # the search run's trials, flat: stage runs and the parent filtered out
        first = rows[min(rows)]
        assert f" 1 {best}" in f" {first}", rows  # best first, its run named by its rank
        for name in trials:
            assert any(name in text for text in rows.values()), (name, rows)
        objective = f"{float(table['objective'].iloc[0]):.4g}"[:4]
        assert objective in first, (objective, first)  # its objective is in the row, as a visible metric column
        assert f"demo-greedy: best {best}" in body  # the experiment description's headline

        # The search run's report.html renders, charts included, in MLflow's artifact preview.
        driver.get(f"{base}/#/experiments/{exp_id}/runs/{report.parent_id}/artifacts/report/report.html"
                   "?workflowType=machine_learning")
        charts = 0
        deadline = time.monotonic() + PAGE_WAIT_S
        while time.monotonic() < deadline and charts == 0:
            time.sleep(1)
            for frame in driver.find_elements("css selector", "iframe"):
                driver.switch_to.frame(frame)
                heading = driver.find_elements("css selector", "h1")
                if heading and heading[0].text == "eaglesearch report: demo-greedy":
                    charts = len(driver.find_elements("css selector", ".plotly-graph-div .main-svg"))
                driver.switch_to.default_content()
        driver.save_screenshot(str(tmp_path / "report_artifact.png"))
        assert charts > 0, "report.html did not render its charts in the MLflow artifact view"
    finally:
        if driver is not None:
            driver.quit()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert (tmp_path / "leaderboard.png").stat().st_size > 10_000
