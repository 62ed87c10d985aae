"""Real browser: `streamlit run` on a free port, Debian's chromium via Playwright, every page, a photo upload, screenshots."""

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
from collections.abc import Iterator
from pathlib import Path

import pytest

from fer_core import jobs
from fer_core.config import DEFAULT_CHECKPOINT, REPO_ROOT, SAMPLE_DATA, TrainConfig, atomic_write_json

pytestmark = [pytest.mark.browser, pytest.mark.slow]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
expect = sync_api.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts"
PAGES = {"home": ("", "Facial expression recognition workbench"), "dataset": ("dataset", "Dataset")}
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    tmp = tmp_path_factory.mktemp("browser")
    # A saved report, so the Evaluate page has something to show.
    from fer_core.evaluate import evaluate_checkpoint

    report = evaluate_checkpoint(DEFAULT_CHECKPOINT, SAMPLE_DATA, "PublicTest")
    atomic_write_json(tmp / "runs" / "reports" / "fer_vgg.PublicTest.none.report.json", report)
    port = free_port()
    env = {**os.environ, "FER_DATA": str(SAMPLE_DATA), "FER_RUNS": str(tmp / "runs"), "FER_CACHE": str(tmp / "cache"),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "streamlit", "run", "dashboard/Home.py", "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with open(tmp / "streamlit.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp / "streamlit.log").read_text()
            assert time.monotonic() < deadline, "streamlit did not become healthy in 60 s"
            time.sleep(0.3)
        yield url, tmp / "runs"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside stMain, so grow the viewport to its height, then wait for plotly to draw."""
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(max(height, 1000), 8000)})
    drawn = "[...document.querySelectorAll('[data-testid=stPlotlyChart]')].every(e => e.querySelector('.main-svg'))"
    page.wait_for_function(drawn, timeout=30_000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})


def visit(page, url: str, heading: str) -> None:
    page.goto(url)
    expect(page.get_by_role("heading", name=heading).first).to_be_visible(timeout=60_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    assert page.get_by_test_id("stException").count() == 0, f"{url} shows an exception"


def test_every_page_and_a_prediction_in_chromium(server: tuple[str, Path]) -> None:
    url, runs = server
    ARTIFACTS.mkdir(exist_ok=True)
    photo = Path(__import__("skimage").__file__).parent / "data" / "astronaut.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            for name in ("home", "dataset"):
                visit(page, f"{url}/{PAGES[name][0]}", PAGES[name][1])
                screenshot(page, ARTIFACTS / f"{name}.png")

            # Train: a job started outside the browser shows up live (st.fragment polling), then is cancelled from the page.
            job = jobs.start_job(TrainConfig(data=str(SAMPLE_DATA), model="small", width=8, epochs=300, batch_size=32, threads=1,
                                             patience=0), runs, name="live")
            try:
                visit(page, f"{url}/train", "Train")
                expect(page.get_by_text(re.compile(r"epoch [2-9]\d* of 300"))).to_be_visible(timeout=60_000)
                screenshot(page, ARTIFACTS / "train.png")
                page.get_by_role("button", name="Cancel").click()
                expect(page.get_by_text("stopped").first).to_be_visible(timeout=60_000)
                expect(page.get_by_role("button", name="Resume")).to_be_visible(timeout=30_000)
            finally:
                if jobs.read_run(job.run_dir).active:
                    os.kill(job.pid, signal.SIGKILL)

            visit(page, f"{url}/evaluate", "Evaluate")
            screenshot(page, ARTIFACTS / "evaluate.png")
            for tab in ("Confusion matrix", "Calibration", "Misclassified", "Published results"):
                page.get_by_role("tab", name=tab).click()
                screenshot(page, ARTIFACTS / f"evaluate-{tab.split()[0].lower()}.png")

            visit(page, f"{url}/predict", "Predict")
            page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(photo))
            caption = page.get_by_text("face 1:", exact=False).first
            expect(caption).to_be_visible(timeout=60_000)
            page.wait_for_selector(IDLE, timeout=60_000)
            assert re.search(r"face 1: (angry|disgust|fear|happy|sad|surprise|neutral) \d+%", caption.inner_text())
            expect(page.get_by_test_id("stDownloadButton").first).to_be_visible()
            assert page.get_by_test_id("stException").count() == 0
            screenshot(page, ARTIFACTS / "predict.png")
        finally:
            browser.close()
