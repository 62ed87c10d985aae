"""Real browser: `streamlit run` on a free port, Debian's chromium via Playwright; every page, a training job started
from the form, saved reports, photo uploads and downloads; screenshots in test-artifacts/."""

from __future__ import annotations

import json
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
from fer_core.config import DEFAULT_CHECKPOINT, EMOTIONS, REPO_ROOT, SAMPLE_DATA, atomic_write_json

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]  # one server, one worker
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install playwright)")
expect = sync_api.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
EPOCHS = 500  # the long job: the form's maximum, so that it is still running whatever the machine's speed
LABEL = re.compile(rf"face 1: ({'|'.join(EMOTIONS)}) \d+%")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Two saved reports of the shipped model (sample data), so Evaluate has something to show and compare."""
    from fer_core.evaluate import evaluate_checkpoint

    runs = tmp_path_factory.mktemp("browser") / "runs"
    made = {}
    for split in ("PublicTest", "PrivateTest"):
        made[split] = evaluate_checkpoint(DEFAULT_CHECKPOINT, SAMPLE_DATA, split)
        atomic_write_json(runs / "reports" / f"{DEFAULT_CHECKPOINT.stem}.{split}.none.report.json", made[split])
    return {"runs": runs, **made}


@pytest.fixture(scope="module")
def server(reports: dict) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get update && apt-get install -y chromium)")
    runs = reports["runs"]
    port = free_port()
    (runs.parent / "tmp").mkdir(exist_ok=True)  # uploaded videos and their analyses: none left from an earlier run
    env = {**os.environ, "FER_DATA": str(SAMPLE_DATA), "FER_RUNS": str(runs), "FER_CACHE": str(runs.parent / "cache"),
           "OMP_NUM_THREADS": "1", "TMPDIR": str(runs.parent / "tmp")}
    cmd = [sys.executable, "-m", "streamlit", "run", "dashboard/Home.py", "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    log_path = runs.parent / "streamlit.log"
    with open(log_path, "wb") as log:
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
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "streamlit did not become healthy in 60 s"
            time.sleep(0.3)
        yield url
    finally:
        for run in jobs.list_runs(runs):  # never leave a training job behind a failed test
            if run.active and run.pid:
                os.kill(run.pid, signal.SIGKILL)
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


def screenshot(page, name: str) -> None:
    """The whole page: Streamlit scrolls inside stMain, so grow the viewport to its height, then wait for plotly to draw."""
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(max(height, 1000), 8000)})
    drawn = "[...document.querySelectorAll('[data-testid=stPlotlyChart]')].every(e => e.querySelector('.main-svg'))"
    page.wait_for_function(drawn, timeout=30_000)
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def idle(page) -> None:
    page.wait_for_selector(IDLE, timeout=60_000)
    assert page.get_by_test_id("stException").count() == 0, f"{page.url} shows an exception"


def rerun_after(page, action) -> None:
    """Do something that reruns the script (a widget change), then wait until that rerun has finished."""
    action()
    try:
        page.wait_for_selector("[data-testid='stApp'][data-test-script-state='running']", timeout=3_000)
    except sync_api.TimeoutError:
        pass  # the rerun was over before we looked
    idle(page)


def epoch_shown(page, total: int) -> int:
    text = page.get_by_text(re.compile(rf"^epoch \d+ of {total}$")).first.inner_text(timeout=60_000)
    return int(text.split()[1])


def wait_for_epoch_after(page, epoch: int, total: int) -> int:
    """Block until the page's progress bar (updated by its polling fragment) shows an epoch later than `epoch`."""
    deadline = time.monotonic() + 60
    while (shown := epoch_shown(page, total)) <= epoch:
        assert time.monotonic() < deadline, f"the page still shows epoch {shown} of {total}"
        page.wait_for_timeout(250)
    return shown


def visit(page, url: str, heading: str) -> None:
    page.goto(url)
    expect(page.get_by_role("heading", name=heading).first).to_be_visible(timeout=60_000)
    idle(page)


def fill_train_form(page, **values: str) -> None:
    form = page.get_by_test_id("stForm")
    for label, value in values.items():
        field = form.get_by_label(label, exact=True)
        field.fill(value)
        field.press("Tab")  # number inputs commit on blur (Enter would submit the form)
    form.get_by_role("button", name="Start training").click()


def test_home_and_dataset_pages(page, server: str) -> None:
    visit(page, server, "Facial expression recognition workbench")
    expect(page.get_by_text(str(SAMPLE_DATA)).first).to_be_visible()
    expect(page.get_by_test_id("stPageLink")).to_have_count(4)  # the last element of the page
    screenshot(page, "home")
    with page.expect_download(timeout=180_000) as download:  # the export runs on the click, beside the page run
        page.get_by_role("button", name="ONNX file", exact=True).click()
    assert download.value.suggested_filename == f"{DEFAULT_CHECKPOINT.stem}.onnx"
    import onnx

    meta = {p.key: p.value for p in onnx.load(download.value.path()).metadata_props}
    assert meta["checkpoint"] == DEFAULT_CHECKPOINT.name and json.loads(meta["emotions"]) == list(EMOTIONS)
    page.get_by_test_id("stPageLink").filter(has_text="Dataset").click()  # the link, not a reload: same session
    expect(page.get_by_role("heading", name="Class balance")).to_be_visible(timeout=60_000)
    idle(page)
    expect(page.get_by_text("Disgust is 14.3% of Training here")).to_be_visible()
    expect(page.get_by_text("4 pairs, each PublicTest face beside its Training copy")).to_be_visible()
    expect(page.get_by_test_id("stImage")).to_have_count(4 + 32, timeout=30_000)  # the copies, a page of the grid
    idle(page)
    screenshot(page, "dataset")


def test_train_from_the_form_follow_it_cancel_and_resume(browser, page, server: str, reports: dict) -> None:
    runs = reports["runs"]
    visit(page, f"{server}/train", "Train")
    small = {"Width": "8", "Batch size": "32", "CPU threads (0 = all)": "1"}

    # A tiny job runs to the end while the page polls it.
    fill_train_form(page, **{"Run name": "tiny", "Epochs": "3", **small})
    expect(page.get_by_text("epoch 3 of 3")).to_be_visible(timeout=120_000)
    expect(page.get_by_text(re.compile(r"^tiny .*finished"))).to_be_visible(timeout=30_000)
    expect(page.get_by_role("button", name="Train longer")).to_be_visible()
    idle(page)
    assert jobs.read_run(runs / "tiny").state == "finished" and jobs.read_run(runs / "tiny").config["width"] == 8
    screenshot(page, "train-finished")

    # A long one: progress updates live, survives a reload and a closed browser, then cancel and resume from the page.
    fill_train_form(page, **{"Run name": "long", "Epochs": str(EPOCHS), "Patience (0 = off)": "0", **small})
    first = wait_for_epoch_after(page, 0, EPOCHS)
    page.reload()
    expect(page.get_by_text("Job long is running")).to_be_visible(timeout=60_000)
    wait_for_epoch_after(page, first, EPOCHS)
    page.context.close()
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    visit(page, f"{server}/train", "Train")
    wait_for_epoch_after(page, epoch_shown(page, EPOCHS), EPOCHS)
    screenshot(page, "train-running")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("button", name="Resume")).to_be_visible(timeout=60_000)
    stopped = jobs.read_run(runs / "long")
    assert stopped.state == "stopped" and epoch_shown(page, EPOCHS) == stopped.epoch
    page.get_by_role("button", name="Resume").click()
    wait_for_epoch_after(page, stopped.epoch, EPOCHS)
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("button", name="Resume")).to_be_visible(timeout=60_000)
    assert [r.name for r in jobs.list_runs(runs)] == ["long", "tiny"] and jobs.current_job(runs) is None
    page.context.close()


def test_evaluate_shows_and_compares_saved_reports(page, server: str, reports: dict) -> None:
    visit(page, f"{server}/evaluate", "Evaluate")
    # The metric labelled accuracy, found by its label: DOM order is not a contract while a rerun still renders.
    label = page.get_by_test_id("stMetricLabel").get_by_text("accuracy", exact=True)
    accuracy = page.get_by_test_id("stMetric").filter(has=label).get_by_test_id("stMetricValue")
    expect(accuracy).to_be_visible()
    shipped = json.loads(DEFAULT_CHECKPOINT.with_suffix(".report.json").read_text())
    shipped = shipped[0] if isinstance(shipped, list) else shipped
    assert accuracy.inner_text() == f"{shipped['accuracy']:.1%}"  # it opens on the sidebar model's centre-crop report
    page.get_by_test_id("stSelectbox").filter(has_text="Report").first.click()
    rerun_after(page, page.get_by_role("option").filter(has_text=f"{DEFAULT_CHECKPOINT.stem}.PublicTest").click)
    expect(accuracy).to_have_text(f"{reports['PublicTest']['accuracy']:.1%}")  # the report this test saved
    screenshot(page, "evaluate")
    for tab in ("Confusion matrix", "Calibration", "Misclassified", "Published results"):
        page.get_by_role("tab", name=tab).click()
        idle(page)
        screenshot(page, f"evaluate-{tab.split()[0].lower()}")
    page.get_by_role("tab", name="Misclassified").click()
    expect(page.get_by_text(re.compile(r"^\w+ → \w+ \d+%$")).first).to_be_visible()
    expect(page.get_by_text("A mistake up close")).to_be_visible()  # the first mistake, explained for both classes
    expect(page.get_by_text(re.compile(r"^evidence for \w+ \(true\)$"))).to_be_visible()

    chosen = page.get_by_role("combobox", name="Report", exact=True).input_value()
    split, other = ("PrivateTest", "PublicTest") if "· PrivateTest" in chosen else ("PublicTest", "PrivateTest")
    page.get_by_test_id("stSelectbox").filter(has_text="Compare with").click()
    rerun_after(page, page.get_by_role("option").filter(has_text=f"{DEFAULT_CHECKPOINT.stem}.{other}").click)
    page.get_by_role("tab", name="Compare").click()
    for side, shown in (("A", split), ("B", other)):  # the headings over the two confusion matrices
        label = f"{side}: {DEFAULT_CHECKPOINT.stem}.{shown}.none [reports] · {shown} · TTA none"
        heading = page.get_by_role("strong").filter(has_text=label)
        expect(heading).to_be_visible(timeout=30_000)
    expect(page.locator("[data-testid=stPlotlyChart]:visible")).to_have_count(3)  # per-class F1 and the two confusion matrices
    screenshot(page, "evaluate-compare")


def test_predict_photos_downloads_and_a_broken_file(page, server: str) -> None:
    photo = Path(__import__("skimage").__file__).parent / "data" / "astronaut.png"
    visit(page, f"{server}/predict", "Predict")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        [{"name": "astronaut.png", "mimeType": "image/png", "buffer": photo.read_bytes()},
         {"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n cut off"}])
    caption = page.get_by_text("face 1:", exact=False).first
    expect(caption).to_be_visible(timeout=60_000)
    idle(page)
    assert LABEL.search(caption.inner_text())
    expect(page.get_by_text(re.compile("Cannot use this file")).first).to_be_visible()  # the error, not the table's note
    with page.expect_download() as download:  # two photos: a table of all their faces first
        page.get_by_role("button", name="All faces (CSV)").click()
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0].startswith("path,face,x,y,w,h,angle,side,issues,label,confidence,angry,")  # as fer-predict --csv
    assert len(rows) == 3
    assert rows[1].startswith("astronaut.png,1,") and rows[2].startswith("broken.png,,")
    with page.expect_download() as download:
        page.get_by_role("button", name="Result (JSON)").click()
    result = json.loads(Path(download.value.path()).read_text())
    assert result["file"] == "astronaut.png" and result["faces"] and result["faces"][0]["label"] in EMOTIONS
    assert abs(sum(result["faces"][0]["probs"].values()) - 1) < 1e-4
    screenshot(page, "predict")

    # Another explanation method re-renders the overlay; the page keeps working.
    page.get_by_test_id("stSelectbox").filter(has_text="Explanation").click()
    rerun_after(page, page.get_by_role("option").filter(has_text="Integrated Gradients").click)
    expect(page.get_by_text("face 1:", exact=False).first).to_be_visible()
    screenshot(page, "predict-integrated-gradients")


def test_predict_a_group_photo_with_small_faces(page, server: str) -> None:
    from photos import encode, group_scene

    from fer_core.data import load_csv

    group, _ = group_scene(load_csv(SAMPLE_DATA, cache=False).split("PublicTest")[0].numpy(), 0.04, (1600, 1200))
    visit(page, f"{server}/predict", "Predict")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        [{"name": "group.jpg", "mimeType": "image/jpeg", "buffer": encode(group, "JPEG", quality=92)}])
    expect(page.get_by_text("No face found.", exact=False)).to_be_visible(timeout=60_000)  # 48 px faces: too small
    idle(page)
    rerun_after(page, page.get_by_test_id("stCheckbox").filter(has_text="Small faces").click)
    expect(page.get_by_text(re.compile(r"^\d\d faces: "))).to_be_visible(timeout=60_000)  # a table of them, one up close
    page.get_by_test_id("stSelectbox").filter(has_text="Face up close").click()
    rerun_after(page, page.get_by_role("option").filter(has_text=re.compile(r"^face 3: ")).click)
    expect(page.get_by_text(re.compile(r"^face 3: \w+ \d+%$"))).to_be_visible()
    found = int(re.match(r"(\d+) faces", page.get_by_text(re.compile(r"^\d\d faces: ")).inner_text()).group(1))
    with page.expect_download() as download:
        page.get_by_role("button", name="Faces (CSV)").click()
    rows = Path(download.value.path()).read_text().splitlines()  # a row per face, numbered as on the picture
    assert rows[0].startswith("path,") and len(rows) == found + 1 and rows[3].startswith("group.jpg,3,"), rows[:4]
    screenshot(page, "predict-group")


def test_predict_a_video_timeline_and_its_csv(page, server: str, tmp_path: Path) -> None:
    from photos import face_clip

    face_clip(tmp_path / "clip.mp4")
    visit(page, f"{server}/predict", "Predict")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        [{"name": "clip.mp4", "mimeType": "video/mp4", "buffer": (tmp_path / "clip.mp4").read_bytes()}])
    expect(page.get_by_text("6 frames sampled, one every 0.5 s; a face in 4", exact=False)).to_be_visible(timeout=60_000)
    expect(page.get_by_text("clip.mp4 at 0.00 s (frame 0)")).to_be_visible(timeout=60_000)  # the first frame up close
    idle(page)
    with page.expect_download() as download:
        page.get_by_role("button", name="Timeline (CSV)").click()
    rows = Path(download.value.path()).read_text().splitlines()
    assert rows[0].startswith("frame,time_s,face,x,y,w,h,angle,side,issues,label,confidence,angry,") and len(rows) == 7
    assert [r.split(",")[2] for r in rows[1:]] == ["1", "1", "", "", "1", "1"]  # one face, or none, per sampled frame
    screenshot(page, "predict-video")


def job_logs(reports: dict) -> str:
    """Every video job's log of the server (its TMPDIR), for a failure message: how each one ended."""
    logs = sorted((reports["runs"].parent / "tmp").glob("fer_dashboard_videos/jobs/**/job.log"))
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')}" for p in logs)


def test_predict_a_long_video_in_the_background(page, server: str, reports: dict, tmp_path: Path) -> None:
    from photos import astronaut, write_video

    write_video(tmp_path / "long.mp4", [astronaut().resize((256, 256))] * 80, fps=2)  # 40 s: 80 samples, a job
    visit(page, f"{server}/predict", "Predict")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        [{"name": "long.mp4", "mimeType": "video/mp4", "buffer": (tmp_path / "long.mp4").read_bytes()}])
    expect(page.get_by_text("Finding faces in 80 frames (", exact=False)).to_be_visible(timeout=60_000)
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    screenshot(page, "predict-video-job")
    # Nothing clicked: the progress bar polls the job and the page runs again by itself once it is done.
    expect(page.get_by_text("80 frames sampled, one every 0.5 s; a face in 80", exact=False)).to_be_visible(timeout=90_000)
    expect(page.get_by_text("long.mp4 at 0.00 s (frame 0)")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Finding faces in 80 frames (", exact=False)).to_have_count(0)
    idle(page)
    page.get_by_text("Annotated video", exact=True).click()  # its own job, with its own progress bar
    try:
        expect(page.get_by_text("Drawing the faces on every frame (", exact=False)).to_be_visible(timeout=30_000)
        expect(page.get_by_role("button", name="Annotated video (WebM)")).to_be_visible(timeout=90_000)
    except AssertionError as e:
        raise AssertionError(f"the video jobs' logs:\n{job_logs(reports)}\n{e}") from None
    expect(page.locator("video")).to_have_count(1)
    idle(page)
    screenshot(page, "predict-video-job-done")
