"""The dashboard and the report in a real headless Chromium (Debian's chromium and chromedriver)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from svmhpo.hpo.studies import read_study
from svmhpo.testing import free_port, wait_for
from svmhpo.view.report import write_report

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the tests save what the browser showed: ``$SVMHPO_SCREENSHOTS`` (to refresh docs/), else a tmp dir."""
    folder = Path(os.environ.get("SVMHPO_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromedriver are not installed (dev/test installs them with apt)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    options.page_load_strategy = "eager"  # the dashboard is a single-page app that keeps polling
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _severe(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_dashboard_shows_study_trials_and_importance(browser, small_study, screenshots: Path) -> None:
    from selenium.webdriver.common.by import By

    url, name = small_study
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "svmhpo", "dashboard", "--storage", url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return urllib.request.urlopen(f"{base}/api/studies", timeout=2).status == 200
            except OSError:
                return False

        wait_for(up, timeout=90, what="the dashboard")
        browser.get(f"{base}/dashboard/studies/1")
        body = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
        wait_for(lambda: "Hyperparameter Importance" in body() and "Best Trial" in body())
        # the importance plot drew its bars: parameter names appear as axis labels of a plotly svg
        wait_for(
            lambda: any(
                "weight_decay" in e.text or "lr" in e.text
                for e in browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
            )
        )
        assert name in body()
        assert "val_acc" in body()
        assert "LR finder (warm start)" in body()  # the warm-start graph svmhpo published
        browser.save_screenshot(str(screenshots / "dashboard.png"))
        # the study note: the best trial's test result beside the LinearSVC baseline
        browser.get(f"{base}/dashboard/studies/1/note")
        wait_for(lambda: "svmhpo results" in body())
        assert "LinearSVC" in body() and "refit on train+val" in body()
        browser.get(f"{base}/dashboard/studies/1/trials")
        wait_for(lambda: "Trial 0" in body() or "trial 0" in body().lower())
        assert _severe(browser) == []
    finally:
        # leave the dashboard before its server goes: the page polls it, and a poll that fails
        # after this test would land in the next test's log (seen with tests side by side)
        browser.get("about:blank")
        server.terminate()
        server.wait(timeout=10)


def test_report_renders_without_javascript_errors(browser, small_study, tmp_path: Path, screenshots: Path) -> None:
    from selenium.webdriver.common.by import By

    url, name = small_study
    study = read_study(name, url)
    path = write_report(study, tmp_path)
    browser.get_log("browser")  # reading the log empties it: only this page's entries count
    browser.get(path.as_uri())
    plots = wait_for(
        lambda: [
            p
            for p in browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
            if p.find_elements(By.CSS_SELECTOR, ".main-svg")
        ]
    )
    assert len(plots) >= 8  # every panel drawn by plotly in the page
    assert _severe(browser) == []
    browser.save_screenshot(str(screenshots / "report.png"))


#: Every text of a report section's plot (tick labels, axis titles, colour bar) as its box on the
#: page, and the pairs of boxes that overlap by more than a pixel each way.
_OVERLAPS = r"""
const section = [...document.querySelectorAll('section')].find(s => s.querySelector('h2').textContent === arguments[0]);
section.scrollIntoView();
const boxes = [...section.querySelectorAll('.xaxislayer-above text, .yaxislayer-above text, .infolayer text')]
  .filter(t => t.textContent.trim())
  .map(t => { const r = t.getBoundingClientRect(); return [t.textContent, r.left, r.top, r.right, r.bottom]; })
  .filter(b => b[3] > b[1]);
const overlaps = [];
for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
  const [a, b] = [boxes[i], boxes[j]];
  const w = Math.min(a[3], b[3]) - Math.max(a[1], b[1]), h = Math.min(a[4], b[4]) - Math.max(a[2], b[2]);
  if (w > 1 && h > 1) overlaps.push([a[0], b[0]]);
}
return [boxes.length, overlaps];
"""


def test_slice_labels_do_not_run_into_each_other(browser, small_study, tmp_path: Path, screenshots: Path) -> None:
    """The slices, one panel per parameter, at a laptop's and a narrow window's width: no tick label
    or axis title overlaps another (side by side at 1,000 px, 'adamw' ran into 'False' and the lr
    ticks into each other)."""
    url, name = small_study
    path = write_report(read_study(name, url), tmp_path)
    try:
        for width in (1400, 800):
            browser.set_window_size(width, 1000)
            browser.get(path.as_uri())
            texts, overlaps = wait_for(lambda: (r := browser.execute_script(_OVERLAPS, "Slices"))[0] and r)
            assert texts >= 20 and overlaps == [], (width, overlaps)
            browser.save_screenshot(str(screenshots / f"report-slices-{width}.png"))
    finally:
        browser.set_window_size(1400, 1000)
