"""Every dashboard page under Streamlit's AppTest on the sample data: renders, key widgets, predict, train and evaluate flows."""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from photos import (
    astronaut,
    cameraman,
    coffee,
    encode,
    face_clip,
    group_scene,
    ten_faces,
    turned_astronaut,
    two_people_clip,
    write_video,
)
from PIL import Image

from fer_core import jobs, procs
from fer_core.checkpoint import read_checkpoint
from fer_core.config import DEFAULT_CHECKPOINT, EMOTIONS, REPO_ROOT, SAMPLE_DATA, TrainConfig, atomic_write_json
from fer_core.data import load_dataset, load_ferplus
from fer_core.images import ImageError
from fer_core.metrics import time_to_accuracy
from fer_core.train import RunFolder, bf16_supported

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


@pytest.fixture
def dash(monkeypatch: pytest.MonkeyPatch):
    """The dashboard's own modules, imported as the app imports them (AppTest shares this process's sys.modules)."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "dashboard"))
    return importlib.import_module("loaders"), importlib.import_module("widgets")


def stand_in_checkpoints(tmp_path: Path, dash, monkeypatch: pytest.MonkeyPatch, reports: bool) -> Path:
    """A stand-in for checkpoints/ (which may or may not hold a report by now): a copy of the shipped model, with
    (reports=True) a report file holding a list of two reports and a model card beside it."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    ckpt = folder / DEFAULT_CHECKPOINT.name
    shutil.copy(DEFAULT_CHECKPOINT, ckpt)
    if reports:
        atomic_write_json(ckpt.with_suffix(".report.json"), [make_report("PublicTest"), make_report("PrivateTest")])
        ckpt.with_suffix(".md").write_text("# Model card: stand-in\n\nKnown limits: a test fixture.\n")
    for module in dash:
        monkeypatch.setattr(module, "DEFAULT_CHECKPOINT", ckpt)
    return ckpt


@pytest.fixture
def shipped(tmp_path: Path, dash, monkeypatch: pytest.MonkeyPatch) -> Path:
    return stand_in_checkpoints(tmp_path, dash, monkeypatch, reports=True)


@pytest.fixture
def shipped_bare(tmp_path: Path, dash, monkeypatch: pytest.MonkeyPatch) -> Path:
    return stand_in_checkpoints(tmp_path, dash, monkeypatch, reports=False)


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


_REPORTS: dict[str, dict] = {}


def make_report(split: str) -> dict:
    """The shipped model's real report on a split of the sample (computed once per test process)."""
    from fer_core.evaluate import evaluate_checkpoint

    if split not in _REPORTS:
        _REPORTS[split] = evaluate_checkpoint(DEFAULT_CHECKPOINT, SAMPLE_DATA, split)
    return _REPORTS[split]


def astronaut_png() -> bytes:
    return encode(astronaut(), "PNG")


def test_home_shows_model_data_and_links(runs):
    at = open_page()
    assert {"architecture", "parameters"} <= {m.label for m in at.metric}
    assert str(SAMPLE_DATA) in texts(at.markdown)
    assert len(at.get("page_link")) == 4
    assert at.sidebar.text_input(key="data_path").value == str(SAMPLE_DATA)
    assert at.sidebar.text_input(key="runs_root").value == str(runs)
    assert at.sidebar.selectbox(key="checkpoint").value == str(DEFAULT_CHECKPOINT)


def test_home_offers_the_model_as_onnx_files_made_on_the_click(runs, dash, tmp_path):
    loaders, _ = dash
    at = open_page()
    assert [b.label for b in at.get("download_button")] == ["ONNX file", "ONNX file, int8"]
    assert not at.exception and not any(b.proto.disabled for b in at.get("download_button"))
    ckpt = tmp_path / "mine.pt"  # what a click runs (off the page run): the export of the sidebar's checkpoint
    shutil.copy(DEFAULT_CHECKPOINT.with_name("fer_fast.pt"), ckpt)
    data = loaders.onnx_file(ckpt)
    from fer_core.onnxrt import ort_session

    session = ort_session(data, 1)
    assert session.get_modelmeta().custom_metadata_map["checkpoint"] == "mine.pt"
    from fer_core.checkpoint import load_model
    from fer_core.evaluate import predict_probs

    faces = load_dataset(SAMPLE_DATA).images["PublicTest"][:16]
    want = predict_probs(load_model(ckpt), faces)
    assert np.abs(session.run(None, {"faces": faces.numpy()})[0] - want).max() < 1e-4


def test_home_says_why_a_diverged_model_has_no_onnx_file(runs):
    import torch

    from fer_core.checkpoint import read_checkpoint

    ckpt = read_checkpoint(DEFAULT_CHECKPOINT.with_name("fer_fast.pt"))
    first = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][first] = torch.full_like(ckpt["model"][first], float("nan"))  # as a diverged run leaves it
    (runs / "diverged").mkdir(parents=True)
    torch.save(ckpt, runs / "diverged" / "best.pt")
    at = open_page()
    at.sidebar.selectbox(key="checkpoint").set_value(str(runs / "diverged" / "best.pt")).run()
    assert not at.exception
    buttons = at.get("download_button")
    assert len(buttons) == 2 and all(b.proto.disabled for b in buttons)  # a click could not report the failure
    assert "No ONNX file: 1 weight tensor(s) hold NaN or infinite values" in texts(at.warning)


def test_sidebar_names_every_shipped_model_as_shipped(runs):
    run = runs / "r1"
    run.mkdir(parents=True)
    shutil.copy(DEFAULT_CHECKPOINT.with_name("fer_fast.pt"), run / "best.pt")
    at = open_page()
    shipped = sorted(p.name for p in DEFAULT_CHECKPOINT.parent.glob("*.pt"))
    assert len(shipped) >= 2  # the default and at least one faster alternative ship
    options = at.sidebar.selectbox(key="checkpoint").options
    assert options[0] == f"shipped model ({DEFAULT_CHECKPOINT.name})" and options[-1] == "run r1 (best.pt)"
    assert sorted(options[:-1]) == sorted(f"shipped model ({name})" for name in shipped)


def test_home_shows_the_shipped_report_and_model_card(runs, shipped):
    at = open_page()
    public, private = make_report("PublicTest"), make_report("PrivateTest")
    assert by_label(at.metric, "accuracy").value == f"{public['accuracy']:.1%}"  # the larger evaluation (140 against 70)
    for r in (public, private):
        assert f"**{r['accuracy']:.1%}** accuracy on {r['split']} ({r['n']:,} images, TTA none)" in texts(at.markdown)
    # PublicTest holds 4 faces of the sample's Training split, PrivateTest 1: each line gives the accuracy on the rest
    for r, rest in ((public, 136), (private, 69)):
        assert r["unseen"]["n"] == rest
        assert f"macro F1 {r['macro_f1']:.3f}; {r['unseen']['accuracy']:.1%} on the {rest} faces Training lacks" in texts(
            at.markdown)
    assert [e.label for e in at.expander] == ["Model card"] and "Known limits: a test fixture." in texts(at.markdown)


def test_home_headline_is_the_float32_report_when_an_int8_one_exists(runs, shipped_bare):
    fp32 = make_report("PublicTest")
    int8 = {**fp32, "precision": "int8", "accuracy": fp32["accuracy"] + 0.05}  # even a better int8 figure is not the headline
    atomic_write_json(runs / "reports" / f"{DEFAULT_CHECKPOINT.stem}.PublicTest.none.int8.report.json", int8)
    save_report(runs, "PublicTest")
    at = open_page()
    assert by_label(at.metric, "accuracy").value == f"{fp32['accuracy']:.1%}"
    assert f"**{int8['accuracy']:.1%}** accuracy on PublicTest (140 images, TTA none, int8 inference)" in texts(at.markdown)


def test_home_shows_dashboard_reports_only_while_the_checkpoint_is_unchanged(runs, shipped_bare):
    at = open_page()
    assert by_label(at.metric, "accuracy").value == "-" and "No evaluation report for this checkpoint yet" in texts(at.info)
    out = save_report(runs, "PublicTest")  # where the Evaluate page writes reports of the shipped model
    at.run()
    assert by_label(at.metric, "accuracy").value == f"{make_report('PublicTest')['accuracy']:.1%}"
    older = shipped_bare.stat().st_mtime - 60  # the report predates the weights: it describes a replaced model
    os.utime(out, (older, older))
    at.run()
    assert by_label(at.metric, "accuracy").value == "-"


def test_model_and_dataset_load_once_per_process(runs, dash, shipped_bare, monkeypatch):
    loaders, _ = dash
    calls, load_model, load_dataset = Counter(), loaders.load_model, loaders.load_dataset
    monkeypatch.setattr(loaders, "load_model", lambda path: calls.update([path]) or load_model(path))
    monkeypatch.setattr(loaders, "load_dataset", lambda path, labels: calls.update([path]) or load_dataset(path, labels=labels))
    loaders._model.clear()
    loaders._dataset.clear()
    at = open_page()
    for page in [*PAGES, "views/home.py", *PAGES]:
        at.switch_page(page).run()
        assert not at.exception, page
    open_page("views/dataset.py")  # a second browser session of the same server
    assert calls[str(shipped_bare)] == 1 and calls[str(SAMPLE_DATA)] == 1 and set(calls.values()) == {1}, calls


def test_model_cache_is_keyed_by_path_and_mtime(tmp_path, dash):
    loaders, _ = dash
    ckpt = tmp_path / "best.pt"
    shutil.copy(DEFAULT_CHECKPOINT, ckpt)
    first = loaders.get_model(ckpt)
    assert loaders.get_model(ckpt) is first and loaders.get_model(DEFAULT_CHECKPOINT) is not first
    later = ckpt.stat().st_mtime + 10  # a retrained checkpoint written over the old one
    os.utime(ckpt, (later, later))
    second = loaders.get_model(ckpt)
    assert second is not first and loaders.get_model(ckpt) is second


def test_analyse_photo_boxes_faces_on_a_lossless_copy(dash):
    from fer_core.predict import COLOURS

    loaders, _ = dash
    photo = astronaut_png()
    faces, png = loaders.analyse_photo(photo, str(DEFAULT_CHECKPOINT), loaders.mtime(DEFAULT_CHECKPOINT), True, False, "none")
    original, annotated = np.asarray(Image.open(io.BytesIO(photo))), np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert len(faces) >= 1 and annotated.shape == original.shape
    x, y, w, h = faces[0].box
    assert tuple(annotated[y + h // 2, x]) == COLOURS[faces[0].label]  # the box's left edge, in the label's colour
    assert (annotated[:20, :20] == original[:20, :20]).all()  # elsewhere the photo is untouched
    with pytest.raises(ImageError):
        loaders.analyse_photo(b"GIF89a not really", str(DEFAULT_CHECKPOINT), 0.0, True, False, "none")


KEY_WIDGETS = {"views/dataset.py": ("selectbox", "Emotion"), "views/train.py": ("button", "Start training"),
               "views/evaluate.py": ("button", "Evaluate"),
               "views/predict.py": ("file_uploader", "Photos or videos (several at once)")}


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(runs, page):
    at = open_page(page)
    assert at.title[0].value == Path(page).stem.capitalize()
    kind, label = KEY_WIDGETS[page]
    assert label in [w.label for w in at.get(kind)], f"{page} has no {kind} {label!r}"
    assert [w.label for w in at.sidebar.text_input] == ["Data (FER2013 CSV or image folder)", "Runs folder"]


def test_dataset_page_shows_the_test_faces_training_holds_too(runs):
    from fer_core.audit import copies_in

    at = open_page("views/dataset.py")
    assert ("**PublicTest**: 4 of 140 faces (2.9%): 2 pixel for pixel, 2 as near copies; 0 of them carry another label"
            in texts(at.markdown))
    assert "**PrivateTest**: 1 of 70 faces (1.4%): 0 pixel for pixel, 1 as near copies" in texts(at.markdown)
    c = copies_in(load_dataset(SAMPLE_DATA), "PublicTest")
    pairs = [cap for cap in captions(at) if "Training #" in cap]
    order = sorted(np.flatnonzero(c.seen), key=lambda i: c.similarity[i])  # the least similar first
    assert [cap.split(" ")[0] for cap in pairs] == [f"#{i}" for i in order]
    assert [cap.split(" · ")[1] for cap in pairs] == [f"Training #{c.index[i]}" for i in order]
    assert sum(" · exact · " in cap for cap in pairs) == 2 and f"{c.similarity[order[0]]:.3f}" in pairs[0]
    # the sidebar model's report says how much easier the copies are
    shipped = json.loads((REPO_ROOT / "checkpoints" / "fer_resnet.report.json").read_text())["unseen"]
    assert f"the sidebar's model: {shipped['seen_accuracy']:.1%} on PublicTest's copies" in texts(at.caption)
    at.toggle(key="copies-other").set_value(True).run()
    assert not [cap for cap in captions(at) if "Training #" in cap] and "0 pairs" in texts(at.caption)
    at.toggle(key="copies-other").set_value(False).run()
    at.selectbox(key="copies-emotion").set_value(EMOTIONS[int(load_dataset(SAMPLE_DATA).labels["PublicTest"][order[0]])]).run()
    assert [cap for cap in captions(at) if "Training #" in cap][0].startswith(f"#{order[0]} ")
    assert not at.exception


def test_dataset_page_charts_and_sample_grid(runs):
    at = open_page("views/dataset.py")
    assert len(at.get("plotly_chart")) == 3  # class balance, FER+ agreement (votes sit beside the sample), copies
    assert "Disgust is 14.3% of Training here" in texts(at.info)
    table = at.dataframe[0].value  # shares per split (what the chart shows), emotions in dataset order
    assert list(table.index) == list(EMOTIONS)
    assert list(table.columns) == [f"{s} share" for s in ("Training", "PublicTest", "PrivateTest")]
    assert table.loc["disgust", "Training share"] == pytest.approx(50 / 350)
    assert table["PublicTest share"].sum() == pytest.approx(1)
    ids = lambda: [c.split(" ")[0] for c in captions(at) if "Training #" not in c]  # not the copies' pairs
    assert len(ids()) == 32 and ids()[0] == "#150"  # happy is class 3: rows 150.. of the 350 training images
    votes = load_ferplus(SAMPLE_DATA.with_name("fer2013new.csv"))  # the sample's FER+ votes, aligned row by row
    train = [i for i, u in enumerate(votes.usage) if u == "Training"]
    plus, shares = votes.labels[train].numpy(), votes.dist[train].numpy()
    for c in captions(at):  # each face's FER+ majority and its vote share
        if "Training #" in c:
            continue
        i = int(c.split(" ")[0][1:])
        assert c.endswith(f"FER+ {EMOTIONS[plus[i]]} {shares[i, plus[i]]:.0%}" if plus[i] >= 0 else "FER+ dropped")
    at.toggle(key="grid-disagree").set_value(True).run()  # only the faces FER+ relabels or drops
    happy = np.flatnonzero(load_dataset(SAMPLE_DATA).labels["Training"].numpy() == EMOTIONS.index("happy"))
    noisy = [f"#{i}" for i in happy if plus[i] != EMOTIONS.index("happy")]
    assert 0 < len(noisy) < len(happy) and ids() == noisy[:32]
    assert f"FER+ relabels or drops {len(noisy)} of the {len(happy)} Training faces labelled happy" in texts(at.caption)
    at.toggle(key="grid-disagree").set_value(False).run()
    at.selectbox(key="grid-emotion").set_value("disgust").run()
    at.number_input(key="grid-page").set_value(2).run()
    assert ids()[:2] == ["#82", "#83"] and len(ids()) == 18
    at.segmented_control(key="balance-value").set_value("count").run()
    table = at.dataframe[0].value  # the table follows the chart's toggle
    assert table.loc["disgust", "Training count"] == 50 and table["PublicTest count"].sum() == 140
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
    assert "Trust this one less" not in texts(at.caption)  # a sharp, well-lit portrait
    assert "Cannot use this file" in texts(at.error)
    assert len(at.get("download_button")) == 4 and len(at.get("plotly_chart")) == 1  # the table's CSV, PNG, CSV, JSON
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


def test_predict_a_tilted_face_is_shown_upright_with_its_angle(runs):
    at = open_page("views/predict.py")
    at.file_uploader(key="uploads").set_value([("tilted.png", encode(turned_astronaut(30)[0], "PNG"), "image/png")]).run()
    assert not at.exception
    (caption,) = [c for c in captions(at) if c.startswith("face 1: ")]
    angle = float(re.search(r"\(turned ([+-]\d+)°, shown upright\)", caption).group(1))
    assert 20 < angle < 40 and caption.startswith("face 1: happy")


def test_predict_a_grainy_face_says_to_trust_it_less(runs):
    from fer_core.perturb import perturb

    face = perturb(load_dataset(SAMPLE_DATA).split("PublicTest")[0][:1], "noise-25")[0].numpy()
    at = open_page("views/predict.py")
    at.toggle(key="detect").set_value(False).run()
    at.file_uploader(key="uploads").set_value([("grainy.png", encode(Image.fromarray(face), "PNG"), "image/png")]).run()
    assert not at.exception
    (warning,) = [c for c in at.caption if "Trust this one less" in c.value]
    assert warning.value.endswith("Trust this one less: noisy") and warning.help.startswith("Noisy (grainy")


def test_predict_a_face_seen_from_the_side_says_so(runs):
    at = open_page("views/predict.py")
    at.file_uploader(key="uploads").set_value([("side.png", encode(cameraman(), "PNG"), "image/png")]).run()
    assert not at.exception and not at.warning
    (caption,) = [c for c in captions(at) if c.startswith("face 1: ")]
    assert caption.endswith("(seen from the side: less reliable)")


def test_predict_small_faces_in_a_group_photo(runs):
    from fer_core.data import load_csv

    group, _ = group_scene(load_csv(SAMPLE_DATA, cache=False).split("PublicTest")[0].numpy(), 0.04, (1600, 1200))
    at = open_page("views/predict.py")
    at.file_uploader(key="uploads").set_value([("group.jpg", encode(group, "JPEG", quality=92), "image/jpeg")]).run()
    assert not at.exception and "for small faces (a group photo), turn on **Small faces**" in texts(at.warning)
    at.toggle(key="small-faces").set_value(True).run()
    table = at.dataframe[0].value  # many faces: a table of them all, and one face up close
    assert not at.exception and not at.warning and len(table) >= 20  # (29: 26 of the 40 faces, 3 false)
    assert list(table["face"][:3]) == ["face 1", "face 2", "face 3"] and f"**{len(table)} faces**: " in texts(at.markdown)
    (shown,) = [c for c in captions(at) if re.match(r"face \d+: ", c)]  # one face up close: the first, largest
    assert shown.startswith(f"face 1: {table['emotion'][0]} " + "{:.0%}".format(table["confidence"][0]))
    at.selectbox(key="photo0-face").set_value(4).run()
    assert [c for c in captions(at) if re.match(r"face \d+: ", c)][0].startswith(f"face 5: {table['emotion'][4]} ")
    at.toggle(key="small-faces").set_value(False).run()  # the chosen face is gone with the faces: no error
    assert not at.exception
    at.toggle(key="small-faces").set_value(True).run()
    at.toggle(key="detect").set_value(False).run()
    assert at.toggle(key="small-faces").disabled and len([c for c in captions(at) if c.startswith("face ")]) == 1


def test_predict_suggests_small_faces_where_the_faces_found_are_small(runs):
    from fer_core.data import load_csv

    hint = "often missed by the default search: **Small faces** also looks for faces from about 3%"
    group, _ = group_scene(load_csv(SAMPLE_DATA, cache=False).split("PublicTest")[0].numpy(), 0.08, (1600, 1200))
    at = open_page("views/predict.py")
    at.file_uploader(key="uploads").set_value([("portrait.png", astronaut_png(), "image/png")]).run()
    assert not at.exception and hint not in texts(at.caption)  # her face is 19% of the short side
    at.file_uploader(key="uploads").set_value([("group.png", encode(group, "PNG"), "image/png")]).run()
    assert not at.exception and at.dataframe and hint in texts(at.caption)  # some of the 96 px (8%) faces are found
    default = len(at.dataframe[0].value)
    at.toggle(key="small-faces").set_value(True).run()
    assert hint not in texts(at.caption) and len(at.dataframe[0].value) > default  # (34 faces against 20)


def test_predict_compares_a_second_model_on_the_same_faces(runs, tmp_path):
    from fer_core.checkpoint import load_model
    from fer_core.predict import predict_image

    fast = DEFAULT_CHECKPOINT.with_name("fer_fast.pt")
    at = open_page("views/predict.py")
    at.toggle(key="use-example").set_value(True).run()
    assert not at.exception and len(at.get("plotly_chart")) == 1  # one model: one set of bars per face
    at.selectbox(key="compare").set_value(str(fast)).run()
    assert not at.exception
    traces = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert [t["name"] for t in traces] == [DEFAULT_CHECKPOINT.name, "fer_fast.pt"]
    face = predict_image(astronaut(), load_model(fast))[0]  # the second model on its own, through the library
    assert traces[1]["x"] == pytest.approx([face.probs[e] for e in EMOTIONS], abs=1e-5)
    verdict = next(c.value for c in at.caption if "says" in c.value)
    assert verdict.endswith(f"fer_fast.pt says {face.label} {face.confidence:.0%}")

    broken = tmp_path / "broken.pt"  # a second model that cannot load: an error, and the page goes on with one model
    broken.write_bytes(b"not a checkpoint")
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "bad").mkdir()
    shutil.copy(broken, runs / "bad" / "best.pt")
    at.run()
    at.selectbox(key="compare").set_value(str(runs / "bad" / "best.pt")).run()
    assert not at.exception and "Cannot load the model" in texts(at.error) and len(at.get("plotly_chart")) == 1


def test_predict_example_photo_needs_no_upload(runs):
    at = open_page("views/predict.py")
    assert "turn on an example" in texts(at.info)
    at.toggle(key="use-example").set_value(True).run()
    assert not at.exception and "**astronaut.png**" in texts(at.markdown)
    assert [c.rsplit(" ", 1)[0] for c in captions(at) if c.startswith("face ")] == ["face 1: happy"], captions(at)  # she smiles
    at.toggle(key="use-example").set_value(False).run()
    assert "**astronaut.png**" not in texts(at.markdown)


def test_example_photo_without_scikit_image_says_what_to_install(runs, dash, monkeypatch):
    loaders, _ = dash
    monkeypatch.setattr(loaders.importlib.util, "find_spec", lambda name: None)
    assert loaders.example_photo() is None
    at = open_page("views/predict.py")
    at.toggle(key="use-example").set_value(True).run()
    assert not at.exception and "scikit-image, which is not installed" in texts(at.warning)


def submit_train_form(at: AppTest, name: str) -> None:
    by_label(at.text_input, "Run name").set_value(name)
    by_label(at.number_input, "Width").set_value(8)
    by_label(at.number_input, "Epochs").set_value(2)
    by_label(at.number_input, "Batch size").set_value(32)
    by_label(at.number_input, "CPU threads (0 = all)").set_value(1)
    by_label(at.button, "Start training").click().run()


def test_train_form_starts_a_tiny_job_and_shows_it_finished(runs):
    at = open_page("views/train.py")
    by_label(at.number_input, "FER+ soft labels").set_value(0.3)  # the sample's fer2013new.csv lies beside it
    by_label(at.number_input, "Weight average").set_value(0.99)
    by_label(at.number_input, "Photo degradation").set_value(0.3)
    by_label(at.number_input, "JPEG compression").set_value(0.2)
    submit_train_form(at, "ui-tiny")
    assert not at.exception and not at.error, texts(at.error)
    info = jobs.wait_job(runs / "ui-tiny", timeout=120)
    assert info.state == "finished" and info.epoch == 2 and info.config["width"] == 8
    assert info.config["soft_labels"] == 0.3 and info.config["ema"] == 0.99 and info.config["degrade"] == 0.3
    assert info.config["jpeg"] == 0.2
    assert read_checkpoint(runs / "ui-tiny" / "last.pt")["ema"]["updates"] > 0
    assert info.config["precision"] == ("bf16" if bf16_supported() else "fp32")  # the form's default follows the CPU
    at.run()
    assert at.selectbox(key="train-run").value == "ui-tiny"
    assert "finished" in texts(at.markdown) and len(at.get("plotly_chart")) == 1
    best = by_label(at.metric, "best val accuracy")
    rows = RunFolder(runs / "ui-tiny").read_metrics()
    at_best = next(r for r in rows if r["epoch"] == info.best_epoch)
    assert best.value == f"{info.best_acc:.1%}"
    assert best.proto.help == (f"epoch {info.best_epoch + 1}; {at_best['val_acc_unseen']:.1%} on the validation faces "
                               "Training lacks")
    line = next(c.value for c in at.caption if c.value.startswith("Time to PublicTest accuracy"))
    for target in (0.60, 0.65):
        hit = time_to_accuracy(RunFolder(runs / "ui-tiny").read_metrics(), target)
        assert (f"{target:.0%} at epoch {hit[0]} after" if hit else f"{target:.0%} not yet") in line
    assert by_label(at.button, "Train longer") is not None and len(at.dataframe) == 1
    by_label(at.button, "Delete run").click().run()  # in the Delete popover
    assert not at.exception and not at.error, texts(at.error)
    assert not (runs / "ui-tiny").exists() and "No runs in" in texts(at.info)


def test_train_form_finds_a_learning_rate_in_a_separate_process(runs):
    at = open_page("views/train.py")
    by_label(at.number_input, "Width").set_value(8)
    by_label(at.number_input, "Batch size").set_value(32)
    by_label(at.number_input, "CPU threads (0 = all)").set_value(1)
    by_label(at.button, "Find learning rate").click().run()
    assert not at.exception and not at.error, texts(at.error)
    job = at.session_state["lrfind_job"]
    out = Path(job["out"])
    assert out.parent == runs / jobs.LRFIND_DIR and "Finding a learning rate" in texts(at.info)
    deadline = time.monotonic() + 120
    while procs.pid_alive(job["pid"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    at.run()
    result = json.loads(out.read_text())
    assert result["config"]["width"] == 8 and result["config"]["batch_size"] == 32 and result["config"]["model"] == "small"
    assert len(result["lr"]) > 10 and result["suggested"] == pytest.approx(result["lowest"] / 10)
    assert f"suggested peak learning rate **{result['suggested']:.2g}**" in texts(at.markdown)
    assert len(at.get("plotly_chart")) == 1 and jobs.list_runs(runs) == []  # the finder's folder is not a run


def test_a_flat_learning_rate_curve_is_flagged_with_the_command_for_more_steps(runs, tmp_path):
    from fer_core.lrfind import suggest

    lrs = list(np.geomspace(1e-3, 3.0, 300))
    smoothed = list(1.9 - 0.03 * np.sin(np.linspace(0, 9, 300)))  # the shape of the ResNet-48's 300-step curve: flat
    cfg = TrainConfig(data=str(SAMPLE_DATA), model="resnet", width=48)
    atomic_write_json(tmp_path / "flat.json", {"lr": lrs, "loss": smoothed, "smoothed": smoothed, **suggest(lrs, smoothed),
                                               "config": cfg.to_dict()})
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.session_state["lrfind_result"] = str(tmp_path / "flat.json")
    at.run()
    at.switch_page("views/train.py").run()
    assert not at.exception and "The loss hardly fell" in texts(at.warning)
    command = next(c.value for c in at.code if "fer_core.lrfind" in c.value)
    assert "--model resnet --width 48" in command and command.endswith("--steps 1000")
    assert not [b for b in at.button if b.label.startswith("Run 1000")]  # no runs folder known for this result
    # A result the page's own finder wrote: the longer test starts from the page, as a separate process
    at.session_state["lrfind_root"] = str(runs)
    at.run()
    by_label(at.button, "Run 1000 steps").click().run()
    assert not at.exception and not at.error, texts(at.error)
    job = at.session_state["lrfind_job"]
    try:
        assert "Finding a learning rate" in texts(at.info) and Path(job["out"]).parent == runs / jobs.LRFIND_DIR
        argv = Path(f"/proc/{job['pid']}/cmdline").read_bytes().split(b"\0")
        assert argv[argv.index(b"--steps") + 1] == b"1000" and b"resnet" in argv
    finally:
        os.kill(job["pid"], signal.SIGTERM)


def test_a_running_finder_shows_its_last_step_past_a_warning(runs, tmp_path):
    log = tmp_path / "lrfind.log"
    log.write_text("step  120  lr 3.10e-02  smoothed loss 1.874\nUserWarning: something printed mid-run\n")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # stands for a live finder
    try:
        at = AppTest.from_file(ENTRY, default_timeout=60)
        at.session_state["lrfind_job"] = {"pid": sleeper.pid, "out": str(tmp_path / "never.json"), "log": str(log),
                                          "started": time.time(), "root": str(runs)}
        at.run()
        at.switch_page("views/train.py").run()
        assert not at.exception
        shown = texts(at.info)
        assert "Finding a learning rate" in shown and ": step  120  lr 3.10e-02" in shown, shown
        assert "loading the data" not in shown
    finally:
        sleeper.kill()
        sleeper.wait()


def test_train_form_follows_the_chosen_recipe(runs):
    at = open_page("views/train.py")
    assert (by_label(at.selectbox, "Recipe").value, by_label(at.selectbox, "Model").value) == ("try", "small")
    by_label(at.selectbox, "Recipe").set_value("hour").run()
    labels = ("Width", "Epochs", "FER+ soft labels", "Patience (0 = off)")
    form = {label: by_label(at.number_input, label).value for label in labels}
    assert form == {"Width": 32, "Epochs": 20, "FER+ soft labels": 0.3, "Patience (0 = off)": 0}
    assert by_label(at.selectbox, "Model").value == "vgg"
    submit_train_form(at, "ui-hour")  # smaller and shorter, the recipe's other fields kept
    assert not at.exception and not at.error, texts(at.error)
    info = jobs.wait_job(runs / "ui-hour", timeout=120)
    assert info.state == "finished", info
    assert (info.config["model"], info.config["width"], info.config["soft_labels"], info.config["patience"]) == ("vgg", 8, 0.3, 0)


def test_train_form_distils_from_an_ensemble_of_teachers(runs, fast_checkpoint):
    at = open_page("views/train.py")
    by_label(at.multiselect, "Teachers").set_value([str(fast_checkpoint)])
    by_label(at.number_input, "Teacher weight").set_value(0.0)  # a teacher with no weight: refused, nothing started
    submit_train_form(at, "ui-kd0")
    assert "unused with distill 0" in texts(at.error) and not (runs / "ui-kd0").exists()
    by_label(at.multiselect, "Teachers").set_value([str(fast_checkpoint), str(DEFAULT_CHECKPOINT)])
    by_label(at.number_input, "Teacher weight").set_value(0.6)
    submit_train_form(at, "ui-kd")
    assert not at.exception and not at.error, texts(at.error)
    info = jobs.wait_job(runs / "ui-kd", timeout=180)
    assert info.state == "finished", info
    assert (info.config["teacher"], info.config["distill"]) == (f"{fast_checkpoint},{DEFAULT_CHECKPOINT.resolve()}", 0.6)


def test_train_form_fine_tunes_from_a_checkpoint(runs, fast_checkpoint):
    fast = fast_checkpoint  # the smallest shipped model
    at = open_page("views/train.py")
    by_label(at.selectbox, "Start from").set_value(str(fast))
    by_label(at.number_input, "Learning rate").set_value(0.005)
    by_label(at.number_input, "Limit training images (0 = all)").set_value(64)
    submit_train_form(at, "ui-finetune")  # asks for width 8: the checkpoint's architecture wins
    assert not at.exception and not at.error, texts(at.error)
    info = jobs.wait_job(runs / "ui-finetune", timeout=180)
    assert info.state == "finished", info
    shipped = read_checkpoint(fast)["config"]
    assert shipped["width"] != 8  # what the form asked for
    assert info.config["init"] == str(fast)
    # its teacher was a file on the machine that trained it (the job failed elsewhere): fine-tuning does not distil
    assert shipped["teacher"] and info.config["teacher"] == ""
    assert (info.config["model"], info.config["width"]) == (shipped["model"], shipped["width"])
    # The form's values win even where they equal the defaults (the checkpoint says bf16, seed 4, lr 0.01); what
    # the form does not show comes from the checkpoint's recipe.
    assert shipped["precision"] == "bf16" and info.config["precision"] == ("bf16" if bf16_supported() else "fp32")
    assert (info.config["lr"], info.config["soft_labels"], info.config["limit"]) == (0.005, 0.0, 64)
    assert (info.config["seed"], info.config["weight_decay"]) == (shipped["seed"], shipped["weight_decay"])
    assert info.best_acc > 0.5  # the shipped model's start: 140 sample faces, chance is 0.14


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


def wait_for_evaluation(at: AppTest, seconds: float) -> None:
    """Rerun the page until the evaluation job it started has finished (AppTest never ticks run_every timers)."""
    deadline = time.monotonic() + seconds
    while "eval_job" in at.session_state:
        assert not at.exception and time.monotonic() < deadline
        time.sleep(0.5)
        at.run()


def save_report(runs: Path, split: str) -> Path:
    out = runs / "reports" / f"{DEFAULT_CHECKPOINT.stem}.{split}.none.report.json"
    atomic_write_json(out, make_report(split))
    return out


def test_evaluate_page_browses_and_compares_saved_reports(runs, shipped_bare):
    first, second = save_report(runs, "PublicTest"), save_report(runs, "PrivateTest")
    at = open_page("views/evaluate.py")
    assert len(at.tabs) == 7 and {"accuracy", "macro F1", "ECE"} <= {m.label for m in at.metric}
    assert len(at.get("plotly_chart")) == 4  # confusion, reliability, a mistake's probabilities, published results
    gallery = [c for c in captions(at) if not c.startswith("evidence for")]  # the grid, not the mistake up close
    assert gallery and all("→" in c for c in gallery)
    at.selectbox(key="gal-true").set_value("happy").run()
    assert all(c.startswith("happy →") for c in captions(at) if not c.startswith("evidence for"))
    at.segmented_control(key="main-norm").set_value("counts").run()
    keys = at.selectbox(key="report_a").options
    assert len(keys) == 2
    at.selectbox(key="report_b").set_value(f"{first}#0" if at.selectbox(key="report_a").value.startswith(str(second))
                                           else f"{second}#0").run()
    assert not at.exception and len(at.get("plotly_chart")) == 7  # plus per-class F1 and two confusion matrices
    assert any(c.value.startswith("No image-by-image test: the reports do not score the same images") for c in at.caption)
    shown = at.selectbox(key="report_a").value.rsplit("#", 1)[0]
    Path(shown).with_name(Path(shown).name.removesuffix(".json") + ".log").write_text("evaluation log")
    by_label(at.button, "Delete").click().run()  # the Delete report popover: the report and its log go
    assert not at.exception and not Path(shown).exists() and not Path(shown.removesuffix(".json") + ".log").exists()
    box = at.selectbox(key="report_a")
    assert len(box.options) == 1 and box.value == f"{first if shown == str(second) else second}#0"


def test_evaluate_compare_tests_two_models_on_the_same_images(runs, shipped_bare):
    from fer_core.compare import compare_reports, verdict
    from fer_core.evaluate import evaluate_checkpoint

    first = save_report(runs, "PublicTest")
    fast = evaluate_checkpoint(DEFAULT_CHECKPOINT.parent / "fer_fast.pt", SAMPLE_DATA, "PublicTest")
    second = runs / "reports" / "fer_fast.PublicTest.none.report.json"
    atomic_write_json(second, fast)
    at = open_page("views/evaluate.py")
    at.selectbox(key="report_a").set_value(f"{first}#0").run()
    at.selectbox(key="report_b").set_value(f"{second}#0").run()
    assert not at.exception
    expected = compare_reports(make_report("PublicTest"), fast)
    assert verdict(expected) in texts(at.markdown)
    table = next(d.value for d in at.dataframe if "B right" in d.value)
    assert table.loc["A right", "B wrong"] == expected["only_a"] and table.loc["A wrong", "B right"] == expected["only_b"]
    assert int(table.to_numpy().sum()) == expected["n"] == 140


def test_evaluate_scores_the_faces_training_lacks_apart(runs, shipped_bare):
    from fer_core.compare import compare_unseen, verdict
    from fer_core.evaluate import evaluate_checkpoint

    first = save_report(runs, "PublicTest")
    r = make_report("PublicTest")
    u = r["unseen"]
    assert u["seen_n"] == 4 and u["n"] == 136  # the sample's PublicTest faces with a copy in its Training faces
    at = open_page("views/evaluate.py")
    at.selectbox(key="report_a").set_value(f"{first}#0").run()
    assert (f"**Faces Training lacks:** {u['accuracy']:.1%} accuracy, macro F1 {u['macro_f1']:.1%} on the 136 faces"
            in texts(at.markdown))
    y, yhat = np.asarray(r["predictions"]["y_true"]), np.asarray(r["predictions"]["y_pred"])
    seen = np.isin(np.arange(len(y)), u["seen_index"])
    for choice, faces in (("not in Training", ~seen), ("in Training too", seen), ("all", True)):
        at.selectbox(key="gal-faces").set_value(choice).run()
        wrong = int(((y != yhat) & faces).sum())
        assert f"{wrong:,} of {int((y != yhat).sum()):,} misclassified images" in texts(at.caption), choice
        assert len([c for c in captions(at) if not c.startswith("evidence for")]) == min(wrong, 32)
    # Two models compared on all the faces, and on those Training lacks
    fast = evaluate_checkpoint(DEFAULT_CHECKPOINT.parent / "fer_fast.pt", SAMPLE_DATA, "PublicTest")
    second = runs / "reports" / "fer_fast.PublicTest.none.report.json"
    atomic_write_json(second, fast)
    at.run()
    at.selectbox(key="report_b").set_value(f"{second}#0").run()
    assert (f"The published figures count the test faces that Training holds too, as this report's {r['accuracy']:.1%} "
            f"does (4 of its 140 faces); on the other 136 this model scores {u['accuracy']:.1%}.") in texts(at.caption)
    unseen = compare_unseen(r, fast)
    assert unseen is not None and unseen["n"] == 136
    assert f"**Without the faces Training holds too:** {verdict(unseen)}" in texts(at.markdown)
    assert not at.exception


def test_evaluate_overview_scores_the_report_against_the_ferplus_votes(runs, shipped_bare, tmp_path):
    from fer_core.evaluate import evaluate_checkpoint

    save_report(runs, "PublicTest")
    at = open_page("views/evaluate.py")
    relabelled = evaluate_checkpoint(DEFAULT_CHECKPOINT, SAMPLE_DATA, "PublicTest", labels="ferplus")  # another code path
    line = next(c.value for c in at.caption if c.value.startswith("Label noise"))
    assert f"on the {relabelled['n']:,} images FER+ keeps, this model scores {relabelled['accuracy']:.1%} against" in line
    atomic_write_json(save_report(runs, "PublicTest"), {**make_report("PublicTest"), "data": "/nowhere.csv"})
    at.sidebar.text_input(key="data_path").set_value(str(REPO_ROOT / "tests")).run()  # no images, no votes: no line
    at.switch_page("views/evaluate.py").run()
    assert not at.exception and not any(c.value.startswith("Label noise") for c in at.caption)
    assert "Gallery unavailable" in texts(at.info)
    broken = tmp_path / "data"
    broken.mkdir()
    (broken / "fer2013.csv").write_text("a,b\n1,2\n")  # a CSV that cannot load, with real votes beside it
    shutil.copy(SAMPLE_DATA.with_name("fer2013new.csv"), broken)
    at.sidebar.text_input(key="data_path").set_value(str(broken / "fer2013.csv")).run()
    at.switch_page("views/evaluate.py").run()
    assert not at.exception and not any(c.value.startswith("Label noise") for c in at.caption)


def test_evaluate_explains_a_mistake_for_the_chosen_and_the_true_class(runs, shipped_bare):
    save_report(runs, "PublicTest")
    r = make_report("PublicTest")
    y, yhat, conf = (np.asarray(r["predictions"][k]) for k in ("y_true", "y_pred", "confidence"))
    at = open_page("views/evaluate.py")
    pick = at.selectbox(key="gal-pick")
    wrong = np.flatnonzero(y != yhat)
    assert pick.options[0] == f"1. {EMOTIONS[y[pick.value]]} → {EMOTIONS[yhat[pick.value]]} {conf[pick.value]:.0%}"
    assert pick.value == wrong[np.argmax(conf[wrong])]  # the grid's first face: the most confident mistake
    traces = [d for c in at.get("plotly_chart") for d in json.loads(c.proto.spec)["data"]]
    bars = [d for d in traces if d.get("type") == "bar" and d.get("y") == list(EMOTIONS)]
    assert len(bars) == 1  # the face's probabilities
    probs = dict(zip(bars[0]["y"], bars[0]["x"], strict=True))
    assert max(probs, key=probs.get) == EMOTIONS[yhat[pick.value]]  # recomputed: the same answer as the report's
    assert probs[EMOTIONS[yhat[pick.value]]] == pytest.approx(conf[pick.value], abs=1e-4)

    at.selectbox(key="gal-true").set_value("sad").run()  # another filter: the picker follows the grid
    i = at.selectbox(key="gal-pick").value
    assert y[i] == EMOTIONS.index("sad") and yhat[i] != y[i]
    at.selectbox(key="gal-method").set_value("saliency").run()
    assert not at.exception
    assert {f"evidence for {EMOTIONS[yhat[i]]} (chosen)", "evidence for sad (true)"} <= set(captions(at))


def test_evaluate_says_why_a_mistake_cannot_be_explained_without_its_checkpoint(runs, shipped_bare):
    out = save_report(runs, "PublicTest")
    atomic_write_json(out, {**make_report("PublicTest"), "checkpoint": "/nowhere/gone.pt"})
    at = open_page("views/evaluate.py")
    assert not at.exception and captions(at)  # the gallery still shows the mistakes
    assert "(/nowhere/gone.pt) is not here" in texts(at.info)


def test_evaluate_shows_and_compares_the_reports_of_the_shipped_file(runs, shipped):
    at = open_page("views/evaluate.py")
    keys = [f"{shipped.with_suffix('.report.json')}#{i}" for i in (0, 1)]  # one file holding a list of two reports
    assert at.selectbox(key="report_a").value == keys[0]
    assert by_label(at.metric, "accuracy").value == f"{make_report('PublicTest')['accuracy']:.1%}"
    assert not [b for b in at.button if b.label == "Delete"]  # the shipped reports cannot be deleted from the page
    at.selectbox(key="report_b").set_value(keys[1]).run()
    assert not at.exception
    compared = next(d.value for d in at.dataframe if "difference" in d.value).set_index("metric")  # the Compare tab's table
    stem = DEFAULT_CHECKPOINT.stem
    a, b = (f"{x}: {stem} [checkpoints] · {split} · TTA none" for x, split in (("A", "PublicTest"), ("B", "PrivateTest")))
    assert compared.loc["accuracy", a] == make_report("PublicTest")["accuracy"]
    assert compared.loc["accuracy", b] == make_report("PrivateTest")["accuracy"]
    assert compared.loc["macro F1", "difference"] == pytest.approx(
        make_report("PrivateTest")["macro_f1"] - make_report("PublicTest")["macro_f1"])


def test_evaluate_opens_on_the_sidebar_models_report(runs, shipped):
    """Newer reports of other models or of TTA do not push the sidebar model's centre-crop report off the top."""
    time.sleep(0.05)  # newer mtimes than the shipped report's
    atomic_write_json(shipped.with_name("fer_other.report.json"), make_report("PublicTest"))
    atomic_write_json(shipped.with_name(f"{shipped.stem}.tencrop.report.json"), make_report("PublicTest"))
    run = runs / "r1"
    run.mkdir(parents=True)
    shutil.copy(shipped, run / "best.pt")
    atomic_write_json(run / "best.PublicTest.none.report.json", make_report("PrivateTest"))
    at = open_page("views/evaluate.py")
    assert at.selectbox(key="report_a").value == f"{shipped.with_suffix('.report.json')}#0"
    assert at.selectbox(key="report_a").options[2].startswith(f"{shipped.stem}.tencrop")  # then the model's other reports
    at.sidebar.selectbox(key="checkpoint").set_value(str(run / "best.pt")).run()
    at.switch_page("views/evaluate.py").run()
    assert not at.exception and at.selectbox(key="report_a").value == f"{run / 'best.PublicTest.none.report.json'}#0"


def test_unreadable_report_files_are_skipped_with_a_warning(runs, shipped_bare):
    (runs / "reports").mkdir(parents=True)
    (runs / "reports" / "cut.report.json").write_text('{"split": "PublicTe')  # a copy that was interrupted
    (runs / "reports" / "other.report.json").write_text('{"hello": "world"}')
    at = open_page("views/evaluate.py")
    assert "No saved reports yet" in texts(at.info)
    assert "cut.report.json: not readable JSON" in texts(at.warning) and "other.report.json: 1 entries" in texts(at.warning)
    save_report(runs, "PublicTest")
    at.run()
    assert not at.exception and len(at.selectbox(key="report_a").options) == 1
    assert by_label(at.metric, "accuracy").value == f"{make_report('PublicTest')['accuracy']:.1%}"


@pytest.mark.parametrize("precision, corruption", [("fp32", "none"), ("int8", "none"), ("fp32", "occlude-eyes")])
def test_evaluate_form_runs_the_cli_and_shows_the_new_report(runs, shipped_bare, precision, corruption):
    at = open_page("views/evaluate.py")
    assert "No saved reports yet" in texts(at.info)
    by_label(at.selectbox, "Split").set_value("PrivateTest")
    by_label(at.selectbox, "Inference").set_value(precision)
    by_label(at.selectbox, "Corruption").set_value(corruption)
    by_label(at.button, "Evaluate").click().run()
    tag = "none" + (".int8" if precision == "int8" else "") + ("" if corruption == "none" else f".{corruption}")
    out = runs / "reports" / f"{DEFAULT_CHECKPOINT.stem}.PrivateTest.{tag}.report.json"
    wait_for_evaluation(at, 120)
    assert out.exists() and at.selectbox(key="report_a").value == f"{out}#0"
    assert not at.exception and "accuracy" in {m.label for m in at.metric}
    assert json.loads(out.read_text())["precision"] == precision
    assert any(" · int8 · " in o for o in at.selectbox(key="report_a").options) == (precision == "int8")
    assert json.loads(out.read_text()).get("corruption", "none") == corruption
    assert any(" · occlude-eyes · " in o for o in at.selectbox(key="report_a").options) == (corruption != "none")


def test_evaluate_every_corruption_and_plot_how_the_model_holds_up(runs, shipped_bare):
    from fer_core.compare import robustness
    from fer_core.perturb import PERTURBATIONS

    at = open_page("views/evaluate.py")
    by_label(at.selectbox, "Split").set_value("PrivateTest")
    by_label(at.selectbox, "Corruption").set_value("all")
    by_label(at.button, "Evaluate").click().run()
    out = runs / "reports" / f"{DEFAULT_CHECKPOINT.stem}.PrivateTest.none.all.report.json"
    wait_for_evaluation(at, 180)
    saved = json.loads(out.read_text())
    assert [r.get("corruption", "none") for r in saved] == list(PERTURBATIONS)  # clean first, then every corruption
    assert at.selectbox(key="report_a").value == f"{out}#0" and not at.exception
    assert len(at.get("plotly_chart")) >= 1 and "No corrupted evaluations" not in texts(at.info)
    table = next(d.value for d in at.dataframe if "McNemar p" in d.value.columns)
    expected = robustness(saved)
    assert list(table["corruption"]) == [r["corruption"] for r in expected]
    assert np.allclose(table["drop (points)"], [r["drop"] for r in expected])
    blur = expected[[r["corruption"] for r in expected].index("blur-2")]
    assert blur["drop"] < -5 and blur["accuracy"] == saved[list(PERTURBATIONS).index("blur-2")]["accuracy"]
    at.selectbox(key="report_a").set_value(f"{out}#3").run()  # any report of the set finds the others
    assert not at.exception and "No corrupted evaluations" not in texts(at.info)


def test_robustness_tab_shows_another_precisions_set_of_the_same_faces(runs, shipped):
    """The float32 report has no corrupted evaluations, the onnx ones (what the CLI advises: 3x faster) stand in."""
    from fer_core.compare import robustness
    from fer_core.evaluate import robustness_reports

    onnx_set = robustness_reports(DEFAULT_CHECKPOINT, SAMPLE_DATA, "PublicTest", precision="onnx",
                                  corruptions=["none", "blur-2", "noise-25"])
    atomic_write_json(runs / "reports" / f"{DEFAULT_CHECKPOINT.stem}.PublicTest.none.onnx.all.report.json", onnx_set)
    at = open_page("views/evaluate.py")
    assert at.selectbox(key="report_a").value == f"{shipped.with_suffix('.report.json')}#0"  # float32, PublicTest
    assert not at.exception and "No corrupted evaluations" not in texts(at.info)
    assert f"{DEFAULT_CHECKPOINT.name} was scored under corruptions with onnx inference only" in texts(at.caption)
    table = next(d.value for d in at.dataframe if "McNemar p" in d.value.columns)
    assert np.allclose(table["accuracy"], [r["accuracy"] for r in robustness(onnx_set)])


def test_robustness_tab_evaluates_a_clean_only_model_under_every_corruption_on_a_click(runs, shipped):
    at = open_page("views/evaluate.py")
    assert not at.exception and "No corrupted evaluations of this model yet" in texts(at.info)
    report = json.loads(shipped.with_suffix(".report.json").read_text())[0]  # the selected one: PublicTest of the sample
    by_label(at.button, f"Evaluate {Path(report['checkpoint']).name} under every corruption").click().run()
    assert not at.exception and "eval_job" in at.session_state
    out = Path(at.session_state["eval_job"]["out"])
    assert out == runs / "reports" / f"{Path(report['checkpoint']).stem}.PublicTest.none.all.report.json"
    wait_for_evaluation(at, 240)
    saved = json.loads(out.read_text())
    assert len(saved) == 12 and [r["predictions"]["y_true"] for r in saved[:1]] == [report["predictions"]["y_true"]]
    assert not at.exception and "No corrupted evaluations" not in texts(at.info)
    assert any("McNemar p" in d.value.columns for d in at.dataframe)


@pytest.mark.slow
def test_home_and_dataset_pages_on_the_full_data(full_data_path, tmp_path, monkeypatch):
    from fer_core.data import find_ferplus

    monkeypatch.setenv("FER_DATA", str(full_data_path))
    monkeypatch.setenv("FER_RUNS", str(tmp_path / "runs"))
    at = AppTest.from_file(ENTRY, default_timeout=600)  # parsing the full CSV into the (test-private) cache takes a while
    at.run()
    assert not at.exception and not at.sidebar.warning  # the full data, not the sample fallback
    at.switch_page("views/dataset.py").run()
    assert not at.exception
    assert "Training 28,709" in texts(at.caption)
    assert "Disgust is 1.5% of Training here (436 images)" in texts(at.info)
    assert len(at.get("plotly_chart")) == (3 if find_ferplus(full_data_path) else 2)  # with the copies' chart
    assert "**PublicTest**: 871 of 3,589 faces (24.3%): 280 pixel for pixel, 591 as near copies" in texts(at.markdown)


def test_train_page_compares_runs_by_epoch_and_by_minutes(runs):
    from fer_core.train import fit

    for name, lr in (("lr-high", 0.1), ("lr-low", 0.01)):  # two real (tiny) runs on the sample
        fit(TINY.replace(epochs=2, lr=lr), runs / name)
    at = open_page("views/train.py")
    assert "Compare runs" in texts(at.subheader)
    assert sorted(at.multiselect(key="compare-runs").value) == ["lr-high", "lr-low"]

    def traces() -> dict[str, dict]:
        spec = json.loads(next(c for c in at.get("plotly_chart") if c.proto.id.endswith("compare-chart")).proto.spec)
        return {t["name"]: t for t in spec["data"]}

    for name in ("lr-high", "lr-low"):
        rows = RunFolder(runs / name).read_metrics()
        assert traces()[name]["x"] == [1, 2] and traces()[name]["y"] == [r["val_acc"] for r in rows]
    at.segmented_control(key="compare-by").set_value("minutes").run()
    rows = RunFolder(runs / "lr-low").read_metrics()
    minutes = np.cumsum([r["train_seconds"] for r in rows]) / 60
    assert traces()["lr-low"]["x"] == pytest.approx(list(minutes))
    at.multiselect(key="compare-runs").set_value(["lr-high"]).run()
    assert not at.exception and list(traces()) == ["lr-high"]

    with open(runs / "lr-high" / "metrics.jsonl", "a") as f:
        f.write("{not json\n")  # a damaged file: a warning, not a traceback, and the other run still plots
    at.multiselect(key="compare-runs").set_value(["lr-high", "lr-low"]).run()
    assert not at.exception and list(traces()) == ["lr-low"]
    assert "lr-high/metrics.jsonl, line 3: not valid JSON" in texts(at.warning)


def test_training_curves_plot_each_epochs_numbers_on_whole_epoch_ticks(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "dashboard"))
    plots = importlib.import_module("plots")
    rows = [{"epoch": e, "train_loss": 2 - e / 2, "val_loss": 1.9 - e / 3, "train_acc": 0.2 + e / 10, "val_acc": 0.25}
            for e in range(3)]
    fig = plots.curves(rows)
    by_panel = {(t.xaxis, t.name): t for t in fig.data}
    assert list(by_panel["x", "train"].x) == [1, 2, 3] and list(by_panel["x", "val"].y) == [r["val_loss"] for r in rows]
    assert list(by_panel["x2", "train"].y) == [r["train_acc"] for r in rows]
    assert fig.layout.xaxis.dtick == fig.layout.xaxis2.dtick == 1  # no "epoch 1.5" ticks on a short run
    long = plots.curves([{**rows[0], "epoch": e} for e in range(100)])
    assert long.layout.xaxis.dtick is None  # plotly's own spacing for a long run
    assert len(fig.data) == 4  # no line for the faces Training lacks where a run did not log them
    logged = plots.curves([{**r, "val_acc_unseen": 0.2 + r["epoch"] / 20} for r in rows])
    unseen = next(t for t in logged.data if t.name == "val, faces Training lacks")
    assert unseen.xaxis == "x2" and list(unseen.y) == pytest.approx([0.2, 0.25, 0.3]) and unseen.line.dash == "dot"


def timeline_of(at: AppTest) -> list[dict]:
    """The traces of the first chart on the page (a video's timeline)."""
    return json.loads(at.get("plotly_chart")[0].proto.spec)["data"]


def test_predict_a_video_timeline_frames_up_close_and_broken_videos(runs, tmp_path):
    from fer_core.checkpoint import load_model
    from fer_core.predict import predict_image
    from fer_core.video import predict_video, read_frame

    face_clip(tmp_path / "clip.mp4")
    write_video(tmp_path / "cups.mp4", [coffee()] * 10, fps=10)
    expected = predict_video(tmp_path / "clip.mp4", load_model())  # the library on its own, every 0.5 s
    at = open_page("views/predict.py")
    at.file_uploader(key="uploads").set_value([("clip.mp4", (tmp_path / "clip.mp4").read_bytes(), "video/mp4"),
                                               ("notes.mp4", b"not a video", "video/mp4"),
                                               ("cups.mp4", (tmp_path / "cups.mp4").read_bytes(), "video/mp4")]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Cannot use this video: cannot read this file as a video" in texts(at.error)
    assert "No face found in any sampled frame" in texts(at.warning)
    assert "3.0 s, 512 x 512 at 10 fps: 6 frames sampled, one every 0.5 s; a face in 4." in texts(at.caption)
    timeline = timeline_of(at)
    assert [t["name"] for t in timeline] == list(EMOTIONS)
    times, probs = expected.timeline()
    for k, trace in enumerate(timeline):
        assert trace["x"] == pytest.approx(times.tolist())
        assert [v for v in trace["y"] if v is not None] == pytest.approx(probs[~np.isnan(probs[:, k]), k].tolist(), abs=1e-5)
    top, share = next(iter(expected.summary().items()))
    assert f"Most often: **{top}** {share:.0%}" in texts(at.markdown)
    frame = at.select_slider(key="video0-frame")
    assert frame.options == ["0.00 s", "0.50 s", "2.00 s", "2.50 s"]  # the sampled frames with a face
    frame.set_value(20).run()  # the mirrored portrait, analysed and explained as a photo
    assert not at.exception and "**clip.mp4 at 2.00 s (frame 20)**" in texts(at.markdown)
    shapes = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["shapes"]
    assert [s["x0"] for s in shapes] == [2.0]  # the timeline marks the frame shown
    (face,) = predict_image(read_frame(tmp_path / "clip.mp4", 20), load_model())
    assert f"face 1: {face.label} {face.confidence:.0%}" in captions(at)
    assert {b.label for b in at.get("download_button")} >= {"Timeline (CSV)", "Image (PNG)"}
    at.select_slider(key="video0-smooth").set_value(3).run()  # the chart only: a moving mean over 3 samples
    from fer_core.video import smooth

    smoothed = smooth(probs, 3)
    assert [v for v in timeline_of(at)[3]["y"] if v is not None] == pytest.approx(
        smoothed[~np.isnan(smoothed[:, 3]), 3].tolist(), abs=1e-5)
    at.toggle(key="video0-annotated").set_value(True).run()
    assert not at.exception and "Annotated video (WebM)" in [b.label for b in at.get("download_button")]
    at.select_slider(key="every").set_value(1.0).run()  # a coarser timeline: 0, 1 and 2 s
    assert not at.exception and "3 frames sampled, one every 1 s; a face in 2." in texts(at.caption)


def test_video_timeline_csv_and_uploads_kept_on_disk(runs, dash, tmp_path, monkeypatch):
    import csv

    import video_view

    from fer_core.checkpoint import load_model
    from fer_core.video import predict_video, video_info

    loaders, _ = dash
    face_clip(tmp_path / "clip.mp4")
    result = predict_video(tmp_path / "clip.mp4", load_model(), every_s=1.0)
    rows = list(csv.DictReader(io.StringIO(video_view.timeline_csv("clip.mp4", result))))
    assert [(int(r["frame"]), float(r["time_s"]), r["face"]) for r in rows] == [(0, 0, "1"), (10, 1, ""), (20, 2, "1")]
    assert rows[0]["label"] == result.frames[0].faces[0].label and rows[1]["label"] == rows[1]["happy"] == ""
    assert float(rows[2]["happy"]) == pytest.approx(result.frames[2].faces[0].probs["happy"], abs=1e-4)
    webm = tmp_path / "annotated.webm"  # the preview the page plays: VP8, 15 frames/s of the 10, i.e. all 30 frames
    webm.write_bytes(loaders.annotated_video(str(tmp_path / "clip.mp4"), str(DEFAULT_CHECKPOINT), 0.0, True, False, "none", 1.0,
                                             result))
    assert video_info(webm) == video_info(tmp_path / "clip.mp4")
    (tmp_path / "a file").write_text("in the way\n")
    monkeypatch.setattr(loaders, "VIDEO_DIR", tmp_path / "a file" / "uploads")  # cannot be made: an error, no traceback
    at = open_page("views/predict.py")
    at.file_uploader(key="uploads").set_value([("clip.mp4", (tmp_path / "clip.mp4").read_bytes(), "video/mp4")]).run()
    assert not at.exception and "Cannot store this video for reading" in texts(at.error)
    monkeypatch.setattr(loaders, "VIDEO_DIR", tmp_path / "uploads")
    monkeypatch.setattr(loaders, "KEEP_VIDEOS", 2)
    data = (tmp_path / "clip.mp4").read_bytes()
    first = loaders.video_file(data, "Clip.MP4")
    assert first.suffix == ".mp4" and first.read_bytes() == data and loaders.video_file(data, "other.mp4") == first
    os.utime(first, (1e9, 1e9))  # the oldest upload
    second = loaders.video_file(data + b"2", "v.avi")
    assert first.exists() and second.suffix == ".avi"
    third = loaders.video_file(data + b"3", "v.avi")  # one too many: the oldest goes
    assert sorted((tmp_path / "uploads").iterdir()) == sorted([second, third]) and not first.exists()


def test_a_longer_video_is_analysed_in_a_job_with_live_progress(runs, dash, tmp_path, monkeypatch):
    import video_view

    from fer_core.checkpoint import load_model
    from fer_core.video import predict_video, video_info
    from fer_core.video_job import cancel_video_job, read_video_job, wait_video_job

    loaders, _ = dash
    monkeypatch.setattr(loaders, "VIDEO_DIR", tmp_path / "uploads")
    monkeypatch.setattr(loaders, "KEEP_JOBS", 2)
    monkeypatch.setattr(video_view, "INLINE_SAMPLES", 3)  # the 3 s clip's 6 samples count as long here
    stale = [tmp_path / "uploads" / "jobs" / name for name in ("old", "older")]
    for age, folder in enumerate(stale, start=1):
        folder.mkdir(parents=True)
        os.utime(folder, (1e9 - age, 1e9 - age))
    face_clip(tmp_path / "clip.mp4")
    at = open_page("views/predict.py")
    at.file_uploader(key="uploads").set_value([("clip.mp4", (tmp_path / "clip.mp4").read_bytes(), "video/mp4")]).run()
    assert not at.exception and "video0-frame" not in [s.key for s in at.select_slider]
    assert texts(at.caption) == "3.0 s, 512 x 512 at 10 fps: one frame every 0.5 s"  # what is known before the result
    (bar,) = at.get("progress")
    assert bar.proto.text.startswith("Finding faces in 6 frames (") and "the page stays usable" in bar.proto.text
    assert "Stop" in [b.label for b in at.button]
    jobs = sorted((tmp_path / "uploads" / "jobs").iterdir())
    assert len(jobs) == 2 and stale[0] in jobs and not stale[1].exists()  # the oldest other analysis went
    job = next(j for j in jobs if j not in stale)
    assert wait_video_job(job, timeout=120).state == "finished"
    at.run()  # the page runs again (the progress bar does that by itself in a browser)
    assert not at.exception and not at.get("progress")
    assert "3.0 s, 512 x 512 at 10 fps: 6 frames sampled, one every 0.5 s; a face in 4." in texts(at.caption)
    times, probs = predict_video(tmp_path / "clip.mp4", load_model()).timeline()
    assert timeline_of(at)[3]["x"] == pytest.approx(times.tolist())
    assert [v for v in timeline_of(at)[3]["y"] if v is not None] == pytest.approx(
        probs[~np.isnan(probs[:, 3]), 3].tolist(), abs=1e-5)
    at.select_slider(key="video0-frame").set_value(20).run()  # frames up close work from the job's result too
    assert not at.exception and "**clip.mp4 at 2.00 s (frame 20)**" in texts(at.markdown)
    saved = (job / "result.json").read_bytes()
    (job / "result.json").write_text("{")  # damaged since: said, and analysed again on request
    at.run()
    assert not at.exception and "The saved analysis of this video cannot be read" in texts(at.error)
    at.button(key="video0-redo").click().run()
    assert not at.exception and at.get("progress") and read_video_job(job).active
    assert wait_video_job(job, timeout=120).state == "finished" and (job / "result.json").read_bytes() == saved
    at.run()
    assert not at.exception and "6 frames sampled" in texts(at.caption)
    at.toggle(key="video0-annotated").set_value(True).run()  # the annotated copy: a job of its own
    assert not at.exception and at.get("progress")[0].proto.text.startswith("Drawing the faces on every frame (")
    assert wait_video_job(job / "annotated", timeout=120).state == "finished"
    at.run()
    assert not at.exception and not at.get("progress") and "Annotated video (WebM)" in [
        b.label for b in at.get("download_button")]
    assert video_info(job / "annotated" / "annotated.webm") == video_info(tmp_path / "clip.mp4")  # all 30 frames, 10 fps
    at.toggle(key="video0-annotated").set_value(False).run()

    at.select_slider(key="every").set_value(0.25).run()  # other settings: another job
    assert "Finding faces in 12 frames" in at.get("progress")[0].proto.text
    quarter = max((tmp_path / "uploads" / "jobs").iterdir(), key=os.path.getmtime)
    first = read_video_job(quarter)
    at.select_slider(key="every").set_value(1.0).run()  # 3 samples, analysed in the page: the job it left is stopped
    assert not at.exception and "3 frames sampled, one every 1 s" in texts(at.caption)
    assert wait_video_job(quarter, timeout=120).state == "stopped"
    at.select_slider(key="every").set_value(0.25).run()  # back to it: started over by itself
    assert not at.exception and not at.warning and "Finding faces in 12 frames" in at.get("progress")[0].proto.text
    assert read_video_job(quarter).pid != first.pid
    at.button(key="video0-stop").click().run()  # stopped from the page: it stays stopped until asked again
    wait_video_job(quarter, timeout=120)
    at.run()
    assert not at.exception and "The analysis of this video did not finish: stopped" in texts(at.warning)
    at.button(key="video0-again").click().run()
    assert not at.exception and "Finding faces in 12 frames" in at.get("progress")[0].proto.text
    assert read_video_job(quarter).active
    cancel_video_job(quarter)  # leave nothing running


def test_predict_a_video_of_two_people_picks_whose_timeline(runs, tmp_path):
    from fer_core.checkpoint import load_model
    from fer_core.video import predict_video

    two_people_clip(tmp_path / "two.mp4")
    expected = predict_video(tmp_path / "two.mp4", load_model())
    at = open_page("views/predict.py")
    at.file_uploader(key="uploads").set_value([("two.mp4", (tmp_path / "two.mp4").read_bytes(), "video/mp4")]).run()
    assert not at.exception and "; 2 faces, each followed from frame to frame" in texts(at.caption)
    assert captions(at)[:2] == ["face 1", "face 2"]  # a thumbnail of each person
    largest = expected.timeline()[1]
    assert np.abs(largest - expected.timeline(track=1)[1]).max() > 1e-3  # the two people's numbers differ
    assert [v for v in timeline_of(at)[3]["y"]] == pytest.approx(largest[:, 3].tolist(), abs=1e-5)
    at.selectbox(key="video0-track").set_value(1).run()  # face 2: the person on the right throughout
    assert not at.exception
    right = max(range(2), key=lambda j: expected.frames[-1].faces[j].box[0])
    assert expected.frames[-1].tracks[right] == 1 and expected.frames[-1].faces[0].box[0] > 320  # largest on the right
    at.select_slider(key="video0-frame").set_value(expected.frames[-1].index).run()
    assert [c.split(":")[0] for c in captions(at)[2:] if c] == ["face 2", "face 1"]  # the frame up close: tracks' names
    assert [v for v in timeline_of(at)[3]["y"]] == pytest.approx(expected.timeline(track=1)[1][:, 3].tolist(), abs=1e-5)
    top, share = next(iter(expected.summary(1).items()))
    assert f"Most often (face 2): **{top}** {share:.0%}" in texts(at.markdown) and "frames with face 2" in texts(at.markdown)


def test_predict_several_photos_at_a_glance(runs):
    from fer_core.checkpoint import load_model
    from fer_core.predict import predict_image

    sheet = encode(ten_faces()[0], "PNG")
    at = open_page("views/predict.py")
    at.file_uploader(key="uploads").set_value([("ten.png", sheet, "image/png"), ("astronaut.png", astronaut_png(), "image/png"),
                                               ("coffee.png", encode(coffee(), "PNG"), "image/png"),
                                               ("broken.png", b"\x89PNG\r\n\x1a\n cut off", "image/png")]).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["file"]) == ["ten.png"] * 10 + ["astronaut.png", "coffee.png", "broken.png"]
    faces = predict_image(ten_faces()[0], load_model())  # the library on its own
    assert list(table["emotion"][:10]) == [f.label for f in faces]
    assert table["confidence"][:10].tolist() == pytest.approx([f.confidence for f in faces], abs=1e-4)  # to 4 places
    assert table["note"].tolist()[-2] == "no face found" and table["note"].tolist()[-1].startswith("cannot use this file")
    counts = Counter(table["emotion"].dropna())
    assert "**4 photos, 11 faces**: " + ", ".join(f"{e} {counts[e]}" for e in EMOTIONS if e in counts) in texts(at.markdown)
    assert "All faces (CSV)" in [b.label for b in at.get("download_button")]
    at.file_uploader(key="uploads").set_value([("astronaut.png", astronaut_png(), "image/png")]).run()
    assert not at.exception and not at.dataframe  # one photo: no summary table


def test_predict_example_video_needs_no_upload(runs, dash):
    from fer_core.video import video_info

    loaders, _ = dash
    at = open_page("views/predict.py")
    at.toggle(key="use-example-video").set_value(True).run()
    assert not at.exception and "**example.mp4**" in texts(at.markdown)
    assert "4.0 s, 640 x 360 at 10 fps: 8 frames sampled, one every 0.5 s; a face in 8." in texts(at.caption)
    name, data = loaders.example_video()
    path = loaders.video_file(data, name)
    assert video_info(path).frame_count == 40 and at.select_slider(key="every").value == 0.5
    at.toggle(key="use-example-video").set_value(False).run()
    assert "**example.mp4**" not in texts(at.markdown)


def test_a_page_job_that_writes_its_result_and_ends_between_two_looks_is_done(tmp_path, dash, monkeypatch):
    _, widgets = dash
    job = {"out": str(tmp_path / "out.json"), "log": str(tmp_path / "job.log"), "pid": os.getpid(), "started": time.time()}

    def ends_now(pid):  # the job writes its result and ends after the page looked for the result, before the pid
        Path(job["out"]).write_text("{}")
        return False

    monkeypatch.setattr(procs, "pid_alive", ends_now)
    assert widgets.job_outcome(job) == ("done", "")
    Path(job["out"]).unlink()
    (tmp_path / "job.log").write_text("$ python -m fer_core.lrfind\nerror: no data\n")
    monkeypatch.setattr(procs, "pid_alive", lambda pid: False)
    assert widgets.job_outcome(job) == ("failed", "$ python -m fer_core.lrfind\nerror: no data")
