"""Every cached load of the dashboard: models and datasets once per process, tables and results per input."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st

from fer_core.checkpoint import LoadedModel, load_model
from fer_core.config import DEFAULT_CHECKPOINT, EMOTIONS, REPO_ROOT, DataNotFoundError
from fer_core.data import DataError, FERData, find_ferplus, load_dataset, load_ferplus

if TYPE_CHECKING:
    from fer_core.video import VideoPrediction
    from fer_core.video_job import VideoJobStatus


def example_photo() -> tuple[str, bytes] | None:
    """A portrait to try the Predict page on: scikit-image's bundled astronaut (Eileen Collins, NASA, public domain), read
    from the installed package (no download); None where scikit-image is not installed."""
    spec = importlib.util.find_spec("skimage")
    path = Path(spec.origin).parent / "data" / "astronaut.png" if spec and spec.origin else None
    return ("astronaut.png", path.read_bytes()) if path and path.is_file() else None


@st.cache_data(show_spinner=False)
def example_video() -> tuple[str, bytes] | None:
    """A 4 s clip to try the video path on, made from scikit-image's bundled photos (fer_core.video_out.demo_clip); None
    where scikit-image is not installed."""
    if importlib.util.find_spec("skimage") is None:
        return None
    from fer_core.video_out import demo_clip

    with tempfile.TemporaryDirectory() as tmp:
        return "example.mp4", demo_clip(Path(tmp) / "example.mp4").read_bytes()


def mtime(path: str | Path | None) -> float:
    """The cache key part that makes a rewritten file load again (0 when it is missing: the loader reports that)."""
    try:
        return Path(path).stat().st_mtime if path is not None else 0.0
    except OSError:
        return 0.0


# ---------------------------------------------------------------------------------------------- models and data


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def _model(path: str, stamp: float) -> LoadedModel:
    return load_model(path)


def get_model(path: str | Path | None = None) -> LoadedModel:
    """The checkpoint's model, shared by every session (raises CheckpointError)."""
    path = str(path or DEFAULT_CHECKPOINT)
    return _model(path, mtime(path))


@st.cache_data(show_spinner=False, max_entries=4)
def _onnx_file(path: str, stamp: float, int8: bool) -> bytes:
    from fer_core.export import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "model.onnx"
        export_onnx(path, out, int8=int8)
        return out.read_bytes()


@st.cache_data(show_spinner=False, max_entries=16)
def _export_problem(path: str, stamp: float) -> str | None:
    from fer_core.export import weights_problem

    return weights_problem(_model(path, stamp).model)


def export_problem(path: str | Path) -> str | None:
    """Why the checkpoint cannot be exported (non-finite weights), or None: 16 ms for the ResNet, so once per file."""
    return _export_problem(str(path), mtime(path))


def onnx_file(path: str | Path, int8: bool = False) -> bytes:
    """The checkpoint as a standalone ONNX file (fer_core.export: 3-15 s, checked on the sample faces), once per file;
    the Home page's download buttons call this on a click, off the page run."""
    return _onnx_file(str(path), mtime(path), int8)


# A resource, not cache_data: the full dataset is 80 MB of read-only tensors and cache_data would copy it on every rerun.
@st.cache_resource(show_spinner="Loading the dataset...", max_entries=2)
def _dataset(path: str, stamp: float, labels: str) -> FERData:
    return load_dataset(path, labels=labels)


def get_data(path: str | Path, labels: str = "fer2013") -> FERData:
    """The dataset at path (raises DataNotFoundError / DataError)."""
    return _dataset(str(path), mtime(path), labels)


@st.cache_data(show_spinner=False)
def class_table(path: str, stamp: float) -> pd.DataFrame:
    """One row per (split, emotion): count and share of the split."""
    rows = []
    for split, counts in get_data(path).class_counts().items():
        total = max(sum(counts), 1)
        rows += [{"split": split, "emotion": e, "count": n, "share": n / total} for e, n in zip(EMOTIONS, counts, strict=True)]
    return pd.DataFrame(rows)


@st.cache_data(show_spinner="Looking for faces that Training holds too...", max_entries=2)
def copies(path: str, stamp: float) -> dict[str, dict[str, np.ndarray]]:
    """Per split other than Training, each face against its most similar Training face (fer_core.audit.copies_in):
    similarity, index, exact, same_label, seen; empty without a Training split (about 2 s for FER2013)."""
    from fer_core.audit import copies_in

    data = get_data(path)
    if "Training" not in data.splits:
        return {}
    out = {}
    for split in data.splits:
        if split != "Training":
            c = copies_in(data, split)
            out[split] = {"similarity": c.similarity, "index": c.index, "exact": c.exact, "same_label": c.same_label,
                          "seen": c.seen}
    return out


@st.cache_data(show_spinner=False, max_entries=2)
def ferplus_votes(path: str, stamp: float) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Per split, the FER+ majority label of each image (-1: FER+ dropped it) and its (N, 7) vote shares, aligned with
    the data's images; None without a vote file beside a CSV, or with one that does not match it row for row."""
    votes_path = find_ferplus(Path(path))
    if votes_path is None or Path(path).is_dir():
        return None
    data, votes = get_data(path), load_ferplus(votes_path)
    usage = np.asarray(votes.usage)
    out = {}
    for split in data.splits:
        rows = np.flatnonzero(usage == split)
        if len(rows) != len(data.labels[split]):
            return None  # votes from another file: agreement would be meaningless
        out[split] = (votes.labels[rows].numpy(), votes.dist[rows].numpy())
    return out


@st.cache_data(show_spinner=False)
def ferplus_agreement(path: str, stamp: float) -> pd.DataFrame | None:
    """Counts of FER2013 label (rows) against FER+ majority label (columns, plus 'dropped'); None without votes."""
    votes = ferplus_votes(path, stamp)
    if votes is None:
        return None
    data = get_data(path)
    cols = [*EMOTIONS, "dropped"]
    table = np.zeros((len(EMOTIONS), len(cols)), dtype=np.int64)
    for split, (plus, _) in votes.items():
        plus = np.where(plus < 0, len(EMOTIONS), plus)  # FER+ rejected the image (no majority, not a face...)
        np.add.at(table, (data.labels[split].numpy(), plus), 1)
    return pd.DataFrame(table, index=list(EMOTIONS), columns=cols)


# ---------------------------------------------------------------------------------------------- reports and runs


REPORT_KEYS = ("split", "n", "tta", "accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "ece",
               "reliability", "log_loss")  # what every view of a report reads; predictions (the gallery) are optional


@st.cache_data(show_spinner=False, max_entries=64)
def _report(path: str, stamp: float) -> tuple[list[dict[str, Any]], str]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:  # a half-copied or hand-edited file must not take the page down
        return [], f"{path}: not readable JSON ({e})"
    items = data if isinstance(data, list) else [data]
    good = [{"labels": list(EMOTIONS), **r} for r in items if isinstance(r, dict) and all(k in r for k in REPORT_KEYS)]
    return good, "" if len(good) == len(items) else f"{path}: {len(items) - len(good)} entries are not evaluation reports"


def get_reports(path: str | Path) -> list[dict[str, Any]]:
    """The report(s) in a *.report.json file (one dict, or a list of them); [] when it is not a readable report."""
    return _report(str(path), mtime(path))[0]


def report_problem(path: str | Path) -> str:
    """Why (part of) a report file was skipped, or ""."""
    return _report(str(path), mtime(path))[1]


def find_reports(runs_root: Path, first: Path | None = None) -> list[Path]:
    """Saved reports: beside the shipped checkpoints, in run folders and in RUNS/reports, newest first; with `first`,
    that checkpoint's reports lead, its centre-crop report (STEM.report.json) at the top."""
    found = list(DEFAULT_CHECKPOINT.parent.glob("*.report.json"))
    if runs_root.is_dir():
        found += list(runs_root.glob("*/*.report.json"))
    newest = sorted(set(found), key=mtime, reverse=True)
    if first is None:
        return newest
    own = set(report_paths(first, runs_root))
    return sorted(newest, key=lambda p: (p not in own, p.name != f"{first.stem}.report.json"))  # stable: newest first within


def report_paths(checkpoint: Path, runs_root: Path) -> list[Path]:
    """Report files of one checkpoint, newest first: beside it (STEM.report.json, STEM.*.report.json), and those the
    dashboard wrote into RUNS/reports for it since the file last changed (older ones describe weights that were replaced)."""
    stem = checkpoint.stem
    paths = [*checkpoint.parent.glob(f"{stem}.report.json"), *checkpoint.parent.glob(f"{stem}.*.report.json")]
    made = report_out(checkpoint, runs_root, "*", "*")
    if made.parent != checkpoint.parent:
        paths += [p for p in made.parent.glob(made.name) if mtime(p) >= mtime(checkpoint)]
    return sorted(set(paths), key=mtime, reverse=True)


def model_reports(checkpoint: Path, runs_root: Path) -> list[dict[str, Any]]:
    """The reports in `report_paths`' files, newest first."""
    return [r for p in report_paths(checkpoint, runs_root) for r in get_reports(p)]


def find_checkpoints(runs_root: Path) -> list[Path]:
    """The default shipped model first, the other shipped ones (checkpoints/*.pt), then each run's best.pt, newest first."""
    shipped = sorted(p for p in DEFAULT_CHECKPOINT.parent.glob("*.pt") if p != DEFAULT_CHECKPOINT)
    runs = sorted(runs_root.glob("*/best.pt"), key=mtime, reverse=True) if runs_root.is_dir() else []
    return [DEFAULT_CHECKPOINT, *shipped, *runs]


def report_out(checkpoint: Path, runs_root: Path, split: str, tta: str) -> Path:
    """Where the dashboard writes a new report: beside a run's checkpoint, else in RUNS/reports (never in the repo)."""
    name = f"{checkpoint.stem}.{split}.{tta}.report.json"
    if (checkpoint.parent / "status.json").exists():
        return checkpoint.parent / name
    return runs_root / "reports" / name


def report_data(report: dict[str, Any], fallback: Path | None) -> tuple[str, str, list[Path]]:
    """A report's data file as recorded, the labels it was scored on, and where to look for that data: the recorded file
    if it is still there, then the sidebar's path."""
    source = str(report.get("data", ""))
    labels = "ferplus" if source.endswith("(FER+ labels)") else "fer2013"
    source = source.removesuffix(" (FER+ labels)")
    candidates = [Path(source)] if source and Path(source).exists() else []
    candidates += [fallback] if fallback is not None else []
    return source, labels, candidates


def report_votes(report: dict[str, Any], fallback: Path | None) -> tuple[np.ndarray, np.ndarray] | None:
    """FER+ majority labels and vote shares aligned with a FER2013-labelled report's images, from the votes beside its
    data file or the sidebar's; None where there are none (or the report was scored on FER+ labels already)."""
    _, labels, candidates = report_data(report, fallback)
    if labels == "ferplus":
        return None
    for path in candidates:
        try:
            votes = ferplus_votes(str(path), mtime(path)) if path.exists() else None
        except (DataError, DataNotFoundError, OSError):
            continue  # an unreadable data file (or votes file) beside: no line rather than a traceback
        if votes and report["split"] in votes and len(votes[report["split"]][0]) == report["n"]:
            return votes[report["split"]]
    return None


def split_images(report: dict[str, Any], fallback: Path | None) -> tuple[np.ndarray | None, str]:
    """The report's split images (aligned with its predictions) from its own data file, else the sidebar's; or a reason."""
    source, labels, candidates = report_data(report, fallback)
    for path in candidates:
        try:
            data = get_data(path, labels)
        except (DataError, DataNotFoundError, OSError):
            continue  # the sidebar's path may be anything the user typed: try the next, then say what is missing
        if report["split"] in data.images and len(data.images[report["split"]]) == report["n"]:
            return data.images[report["split"]].numpy(), ""
    return None, f"the {report['split']} images this report was made on ({source or 'unknown data'}) are not available"


# ---------------------------------------------------------------------------------------------- photos
# fer_core.predict / explain pull in OpenCV and Captum (about a second of imports): only the Predict page pays for them.


PICTURE_SIDE = 2048  # the annotated photo is shown and downloaded at most this large: a 50 MP upload stays a few MB


@st.cache_data(show_spinner=False, max_entries=32)
def analyse_photo(data: bytes, checkpoint: str, stamp: float, detect: bool, small_faces: bool, tta: str,
                  names: tuple[str, ...] | None = None) -> tuple[list[Any], bytes]:
    """FacePredictions for an uploaded file and the photo as PNG (boxed and labelled when faces were found: after
    `names`, or numbered where there are several), cached so moving a slider neither detects faces nor encodes a large
    photo again (raises ImageError)."""
    from fer_core.images import load_image
    from fer_core.predict import annotate, face_names, predict_image

    image = load_image(data)
    faces = predict_image(image, get_model(checkpoint), detect=detect, tta=tta, small_faces=small_faces)
    picture = annotate(image, faces, list(names) if names else face_names(faces)) if faces else image.copy()
    picture.thumbnail((PICTURE_SIDE, PICTURE_SIDE))  # after drawing: boxes and labels scale with the photo
    buf = io.BytesIO()
    picture.save(buf, format="PNG", compress_level=1)  # level 1: 3-4x faster than the default, ~10% larger
    return faces, buf.getvalue()


@st.cache_data(show_spinner=False, max_entries=256)
def explain_crop(crop: np.ndarray, checkpoint: str, stamp: float, method: str, target: int | None) -> np.ndarray:
    """(48, 48) attribution map in [0, 1] for one face crop."""
    from fer_core.explain import explain

    return explain(get_model(checkpoint), crop, method=method, target=target)


@st.cache_data(show_spinner=False, max_entries=256)
def face_probs(crop: np.ndarray, checkpoint: str, stamp: float, tta: str) -> dict[str, float]:
    """Class probabilities of one (48, 48) face crop, by emotion name."""
    from fer_core.predict import predict_crops

    return {e: float(p) for e, p in zip(EMOTIONS, predict_crops(crop, get_model(checkpoint), tta)[0], strict=True)}


# ---------------------------------------------------------------------------------------------- videos
VIDEO_DIR = Path(tempfile.gettempdir()) / "fer_dashboard_videos"  # uploads, and their analyses in jobs/
KEEP_VIDEOS = 8  # uploaded videos kept on disk (OpenCV reads files, not bytes); older ones are deleted
KEEP_JOBS = 16  # analyses of long videos kept (a folder each); the oldest that is not running goes


def video_file(data: bytes, name: str) -> Path:
    """An uploaded video saved where OpenCV can read it, named by its content: written once, the newest few kept."""
    path = VIDEO_DIR / f"{hashlib.sha1(data).hexdigest()[:24]}{Path(name).suffix.lower()}"
    if not path.exists():
        VIDEO_DIR.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{path.name}.{os.getpid()}.part")
        part.write_bytes(data)
        part.replace(path)  # another session never sees half a file
        for old in sorted((p for p in VIDEO_DIR.iterdir() if p.is_file()), key=mtime, reverse=True)[KEEP_VIDEOS:]:
            old.unlink(missing_ok=True)
    return path


def video_job_folder(path: str, checkpoint: str, stamp: float, detect: bool, small_faces: bool, tta: str,
                     every_s: float) -> Path:
    """Where the analysis of a saved video (whose name is its content) with these settings lives: one folder each."""
    key = json.dumps([Path(path).name, checkpoint, stamp, detect, small_faces, tta, every_s])
    return VIDEO_DIR / "jobs" / hashlib.sha1(key.encode()).hexdigest()[:24]


def video_job(path: str, checkpoint: str, stamp: float, detect: bool, small_faces: bool, tta: str, every_s: float,
              again: bool = False) -> VideoJobStatus:
    """The analysis of a saved video (whose name is its content) with these settings as a subprocess job in
    video_job_folder(...), started where there is none; its status. A job that did not finish is started over only
    when `again`."""
    import shutil

    from fer_core.video_job import read_video_job, start_video_job

    folder = video_job_folder(path, checkpoint, stamp, detect, small_faces, tta, every_s)
    status = start_video_job(path, folder, checkpoint, every_s, detect, tta, again=again, small_faces=small_faces)
    others = sorted((p for p in folder.parent.iterdir() if p.is_dir() and p != folder), key=mtime, reverse=True)
    for old in others[KEEP_JOBS - 1:]:
        if not read_video_job(old).active:
            shutil.rmtree(old, ignore_errors=True)
    return status


@st.cache_data(show_spinner=False, max_entries=8)
def video_job_result(folder: str, stamp: float) -> VideoPrediction:
    """A finished job's analysis (raises VideoError where its files are damaged); `stamp` is its result's mtime."""
    from fer_core.video_job import load_result

    return load_result(folder)


@st.cache_data(show_spinner=False, max_entries=8)
def analyse_video(path: str, checkpoint: str, stamp: float, detect: bool, small_faces: bool, tta: str,
                  every_s: float) -> VideoPrediction:
    """Faces and emotions of a saved video's sampled frames (raises VideoError); `path` names its content."""
    from fer_core.video import predict_video

    return predict_video(path, get_model(checkpoint), every_s, detect=detect, tta=tta, small_faces=small_faces)


ANNOTATED_SIDE, ANNOTATED_FPS = 640, 15  # the annotated preview: VP8 encodes ~60 ms per 720p frame on one core


@st.cache_data(show_spinner=False, max_entries=4)
def annotated_video(path: str, checkpoint: str, stamp: float, detect: bool, small_faces: bool, tta: str, every_s: float,
                    _result: VideoPrediction) -> bytes:
    """The video with its faces boxed and labelled, as WebM (VP8, which browsers play), at most 640 px and 15 fps;
    `_result` is its analysis with the settings before it (which alone make the cache key)."""
    from fer_core.video_out import annotate_video

    with tempfile.TemporaryDirectory() as tmp:
        return annotate_video(path, _result, Path(tmp) / "annotated.webm", ANNOTATED_SIDE, ANNOTATED_FPS).read_bytes()


@st.cache_data(show_spinner=False, max_entries=64)
def video_frame(path: str, index: int) -> bytes:
    """One frame of a saved video as PNG bytes (to analyse and explain it as a photo)."""
    from fer_core.video import read_frame

    buf = io.BytesIO()
    read_frame(path, index).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def report_checkpoint(report: dict[str, Any]) -> Path | None:
    """The checkpoint a report was made with, where it is still here (shipped reports name it relative to the repo)."""
    name = str(report.get("checkpoint") or "")
    return next((p for p in (Path(name), REPO_ROOT / name) if name and p.is_file()), None)
