"""Every dashboard page under Streamlit's AppTest on the sample data: renders, key widgets, predict, train and evaluate flows."""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core import jobs
from fer_core.config import DEFAULT_CHECKPOINT, REPO_ROOT, SAMPLE_DATA, TrainConfig, atomic_write_json

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks:UserWarning")  # Captum's notice for guided methods
ENTRY = str(REPO_ROOT / "dashboard" / "Home.py")
PAGES = ["views/dataset.py", "views/train.py", "views/evaluate.py", "views/predict.py"]
TINY = TrainConfig(data=str(SAMPLE_DATA), model="small", width=8, epochs=1, batch_size=32, warmup_epochs=0, threads=1, patience=0)


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sample as the data and an empty runs folder, through the environment the sidebar reads."""
    monkeypatch.setenv("FER_DATA", str(SAMPLE_DATA))
    monkeypatch.setenv("FER_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=60)  # the first run loads torch models: far over the 3 s default
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def by_label(widgets: Iterable, label: str):
    return next(w for w in widgets if w.label == label)


def captions(at: AppTest) -> list[str]:
    return [c for img in at.get("image") for c in img.captions]


def texts(elements: Iterable) -> str:
    return "\n".join(str(e.value) for e in elements)


def astronaut_png() -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG")
    return buf.getvalue()


def test_home_shows_model_data_and_links(runs):
    at = open_page()
    assert {"architecture", "parameters"} <= {m.label for m in at.metric}
    assert str(SAMPLE_DATA) in texts(at.markdown)
    assert len(at.get("page_link")) == 4
    assert at.sidebar.text_input(key="data_path").value == str(SAMPLE_DATA)
    assert at.sidebar.text_input(key="runs_root").value == str(runs)
    assert at.sidebar.selectbox(key="checkpoint").value == str(DEFAULT_CHECKPOINT)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(runs, page):
    at = open_page(page)
    assert at.title[0].value == Path(page).stem.capitalize()


def test_dataset_page_charts_and_sample_grid(runs):
    at = open_page("views/dataset.py")
    assert len(at.get("plotly_chart")) == 2  # class balance and FER+ agreement (votes sit beside the sample)
    assert "Disgust is 14.3% of Training here" in texts(at.info)
    assert len(captions(at)) == 32 and captions(at)[0] == "#150"  # happy is class 3: rows 150.. of the 350 training images
    at.selectbox(key="grid-emotion").set_value("disgust").run()
    at.number_input(key="grid-page").set_value(2).run()
    assert captions(at)[:2] == ["#82", "#83"] and len(captions(at)) == 18
    at.segmented_control(key="balance-value").set_value("count").run()
    assert not at.exception


def test_missing_data_and_broken_checkpoint_show_errors_not_tracebacks(runs, tmp_path):
    (runs / "broken").mkdir(parents=True)
    (runs / "broken" / "best.pt").write_bytes(b"not a checkpoint")
    at = open_page()
    at.sidebar.text_input(key="data_path").set_value(str(tmp_path / "nowhere.csv")).run()
    assert "No data at that path" in texts(at.sidebar.error) and "not found" in texts(at.error)
    at.switch_page("views/dataset.py").run()
    assert not at.exception and "dataset was not found" in texts(at.error)
    at.sidebar.selectbox(key="checkpoint").set_value(str(runs / "broken" / "best.pt")).run()
    at.switch_page("views/predict.py").run()
    assert not at.exception and "Cannot load the model" in texts(at.error)


def test_predict_flow_with_a_real_photo_and_a_broken_file(runs):
    at = open_page("views/predict.py")
    at.file_uploader(key="uploads").set_value([("astronaut.png", astronaut_png(), "image/png"),
                                               ("broken.png", b"\x89PNG\r\n\x1a\n cut off", "image/png")]).run()
    assert not at.exception
    assert any(c.startswith("face 1: ") for c in captions(at)), captions(at)
    assert "Cannot use this file" in texts(at.error)
    assert len(at.get("download_button")) == 2 and len(at.get("plotly_chart")) == 1
    from fer_core.explain import METHODS

    for method in METHODS:  # every explanation method renders on the shared cached model
        at.selectbox(key="method").set_value(method).run()
        assert not at.exception, method
    at.selectbox(key="target").set_value("sad").run()
    at.slider(key="alpha").set_value(0.9).run()
    at.toggle(key="detect").set_value(False).run()
    assert not at.exception and any(c.startswith("face 1: ") for c in captions(at))


def test_predict_from_the_camera(runs):
    at = open_page("views/predict.py")
    at.toggle(key="use-camera").set_value(True).run()
    buf = io.BytesIO()
    Image.fromarray(np.asarray(Image.open(io.BytesIO(astronaut_png())))).save(buf, format="JPEG")
    at.camera_input(key="camera").set_value(("camera.jpg", buf.getvalue(), "image/jpeg")).run()
    assert not at.exception and "**camera.jpg**" in texts(at.markdown)


def submit_train_form(at: AppTest, name: str) -> None:
    by_label(at.text_input, "Run name").set_value(name)
    by_label(at.number_input, "Width").set_value(8)
    by_label(at.number_input, "Epochs").set_value(2)
    by_label(at.number_input, "Batch size").set_value(32)
    by_label(at.number_input, "CPU threads (0 = all)").set_value(1)
    by_label(at.button, "Start training").click().run()


def test_train_form_starts_a_tiny_job_and_shows_it_finished(runs):
    at = open_page("views/train.py")
    submit_train_form(at, "ui-tiny")
    assert not at.exception and not at.error, texts(at.error)
    info = jobs.wait_job(runs / "ui-tiny", timeout=120)
    assert info.state == "finished" and info.epoch == 2 and info.config["width"] == 8
    at.run()
    assert at.selectbox(key="train-run").value == "ui-tiny"
    assert "finished" in texts(at.markdown) and len(at.get("plotly_chart")) == 1
    assert by_label(at.metric, "best val accuracy").value != "-"
    assert by_label(at.button, "Train longer") is not None and len(at.dataframe) == 1


def test_train_page_one_job_at_a_time_cancel_and_resume(runs):
    job = jobs.start_job(TINY.replace(epochs=200), runs, name="long")
    try:
        at = open_page("views/train.py")
        assert "long" in texts(at.info) and at.selectbox(key="train-run").value == "long"
        submit_train_form(at, "second")
        assert "already running: long" in texts(at.error)
        deadline = time.monotonic() + 60
        while not (info := jobs.read_run(job.run_dir)).state == "running":
            assert time.monotonic() < deadline, info
            time.sleep(0.2)
        at.run()
        by_label(at.button, "Cancel").click().run()
        assert jobs.wait_job(job.run_dir, timeout=60).state == "stopped"
    finally:
        if jobs.read_run(job.run_dir).active:
            os.kill(job.pid, signal.SIGKILL)
    at.run()
    assert "stopped" in texts(at.markdown)
    by_label(at.button, "Resume").click().run()
    assert jobs.read_run(job.run_dir).active
    jobs.cancel_job(job.run_dir)
    assert jobs.wait_job(job.run_dir, timeout=60).state == "stopped"


def save_report(runs: Path, split: str) -> Path:
    from fer_core.evaluate import evaluate_checkpoint

    out = runs / "reports" / f"fer_vgg.{split}.none.report.json"
    atomic_write_json(out, evaluate_checkpoint(DEFAULT_CHECKPOINT, SAMPLE_DATA, split))
    return out


def test_evaluate_page_browses_and_compares_saved_reports(runs):
    first, second = save_report(runs, "PublicTest"), save_report(runs, "PrivateTest")
    at = open_page("views/evaluate.py")
    assert len(at.tabs) == 6 and {"accuracy", "macro F1", "ECE"} <= {m.label for m in at.metric}
    assert len(at.get("plotly_chart")) == 3  # confusion, reliability, published results
    gallery = captions(at)
    assert gallery and all("→" in c for c in gallery)
    at.selectbox(key="gal-true").set_value("happy").run()
    assert all(c.startswith("happy →") for c in captions(at))
    at.segmented_control(key="main-norm").set_value("counts").run()
    keys = at.selectbox(key="report_a").options
    assert len(keys) == 2
    at.selectbox(key="report_b").set_value(f"{first}#0" if at.selectbox(key="report_a").value.startswith(str(second))
                                           else f"{second}#0").run()
    assert not at.exception and len(at.get("plotly_chart")) == 6  # plus per-class F1 and two confusion matrices


def test_evaluate_form_runs_the_cli_and_shows_the_new_report(runs):
    at = open_page("views/evaluate.py")
    assert "No saved reports yet" in texts(at.info)
    by_label(at.selectbox, "Split").set_value("PrivateTest")
    by_label(at.button, "Evaluate").click().run()
    out = runs / "reports" / "fer_vgg.PrivateTest.none.report.json"
    deadline = time.monotonic() + 120
    while "eval_job" in at.session_state:
        assert not at.exception and time.monotonic() < deadline
        time.sleep(0.5)
        at.run()  # AppTest never ticks run_every timers: rerun by hand
    assert out.exists() and at.selectbox(key="report_a").value == f"{out}#0"
    assert not at.exception and "accuracy" in {m.label for m in at.metric}
