"""Shared Streamlit pieces: the sidebar settings every page reads, guards that stop a page with instructions, small views."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import loaders
import plots
from fer_core import jobs
from fer_core.checkpoint import CheckpointError, LoadedModel
from fer_core.config import DEFAULT_CHECKPOINT, SAMPLE_DATA, DataNotFoundError, data_help, resolve_data_path
from fer_core.data import DataError, FERData
from fer_core.metrics import time_to_accuracy
from fer_core.runfolder import RunFolder
from fer_core.transforms import TTA_VIEWS

# Material icons ship with Streamlit's fonts; emoji depend on the viewer's system fonts.
STATE_ICONS = {"starting": ":material/hourglass_top:", "running": ":material/directions_run:",
               "finished": ":material/check_circle:", "stopped": ":material/stop_circle:", "failed": ":material/error:",
               "interrupted": ":material/warning:"}
TTA_HELP = "  \n".join(f"**{mode}**: {views}" for mode, views in TTA_VIEWS.items())


@dataclass(frozen=True)
class Settings:
    """What the sidebar chose; pages read it through settings()."""

    data_path: Path | None  # None when the chosen path does not exist
    data_note: str  # why the data is missing or only the sample ("" = the full data was found)
    runs_root: Path
    checkpoint: Path


def default_data() -> tuple[Path, str]:
    """The full data if it can be found, else the bundled 560-image sample and the instructions."""
    try:
        return resolve_data_path(), ""
    except DataNotFoundError as e:
        return SAMPLE_DATA, str(e)


def _shipped(path: Path) -> bool:
    return path.parent == DEFAULT_CHECKPOINT.parent  # checkpoints/: the default and the other shipped models


def checkpoint_label(path: str) -> str:
    p = Path(path)
    return f"shipped model ({p.name})" if _shipped(p) else f"run {p.parent.name} ({p.name})"


def _short_name(path: Path) -> str:
    """fer_resnet.pt for a shipped model, RUN/best.pt for a run's: what fits a chart legend."""
    return path.name if _shipped(path) else f"{path.parent.name}/{path.name}"


def sidebar() -> Settings:
    """Data path, runs folder and model, shown on every page (the entry script renders it, so values persist)."""
    default, note = default_data()
    with st.sidebar:
        text = st.text_input("Data (FER2013 CSV or image folder)", value=str(default), key="data_path",
                             help="Defaults to $FER_DATA, then ../shared/data/fer2013.csv.gz, then the bundled sample")
        chosen = Path(text.strip()).expanduser() if text.strip() else default
        path: Path | None = chosen
        if not chosen.exists():
            st.error("No data at that path.")
            path, note = None, data_help([chosen])
        elif note and chosen == SAMPLE_DATA:
            st.warning("Full FER2013 not found: using the 560-image sample.")
            with st.expander("How to add the full data"):
                st.code(note, language=None)
        else:
            note = ""
        runs = st.text_input("Runs folder", value=str(jobs.resolve_runs_root()), key="runs_root",
                             help="Training jobs write their run folders here ($FER_RUNS, default ~/fer_runs)")
        runs_root = jobs.resolve_runs_root(runs)
        options = [str(p) for p in loaders.find_checkpoints(runs_root)]
        checkpoint = st.selectbox("Model", options, format_func=checkpoint_label, key="checkpoint",
                                  help="Used by Home and Predict; Evaluate picks its own")
    settings = Settings(data_path=path, data_note=note, runs_root=runs_root, checkpoint=Path(checkpoint or DEFAULT_CHECKPOINT))
    st.session_state["settings"] = settings
    return settings


def settings() -> Settings:
    if "settings" not in st.session_state:  # a page run without the entry script (never in the app itself)
        return sidebar()
    return st.session_state["settings"]


def model_or_error(checkpoint: Path) -> LoadedModel | None:
    """The model, or None after an error saying what to do."""
    try:
        return loaders.get_model(checkpoint)
    except CheckpointError as e:
        st.error(f"Cannot load the model: {e}")
        st.info("Pick another model in the sidebar, train one on the Train page, or restore the shipped checkpoint "
                "with `git checkout checkpoints/`.")
        return None


def model_or_stop(checkpoint: Path) -> LoadedModel:
    """The model; without one the page stops after the error."""
    model = model_or_error(checkpoint)
    if model is None:
        st.stop()
    return model


def data_or_stop(s: Settings, labels: str = "fer2013") -> FERData:
    if s.data_path is None:
        st.error("The dataset was not found.")
        st.code(s.data_note, language=None)
        st.stop()
    try:
        return loaders.get_data(s.data_path, labels)
    except (DataNotFoundError, DataError, OSError) as e:
        st.error(f"Cannot read the dataset: {e}")
        st.code(data_help(), language=None)
        st.stop()


def image_grid(images: np.ndarray | Sequence[np.ndarray], captions: Sequence[str], columns: int = 8, width: int = 96) -> None:
    """Small greyscale faces in rows of `columns`, each with a caption."""
    for start in range(0, len(images), columns):
        cols = st.columns(columns)
        for col, img, cap in zip(cols, images[start : start + columns], captions[start : start + columns], strict=False):
            col.image(np.asarray(img), caption=cap, width=width)


def pager(n_items: int, per_page: int, key: str, container: st.delta_generator.DeltaGenerator | None = None) -> slice:
    """A page-number input; returns the slice of items on the chosen page."""
    pages = max(1, -(-n_items // per_page))
    page = (container or st).number_input(f"Page (of {pages})", 1, pages, 1, key=key)
    return slice((page - 1) * per_page, page * per_page)


# ---------------------------------------------------------------------------------------------- training runs


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    h, rem = divmod(int(seconds), 3600)
    return f"{h}h {rem // 60:02d}m" if h else f"{rem // 60}m {rem % 60:02d}s"


def runs_table(runs: list[jobs.RunInfo]) -> None:
    when = lambda t: pd.Timestamp(t, unit="s", tz="UTC").tz_convert(None) if t else None
    df = pd.DataFrame([{"run": r.name, "state": r.state, "epoch": f"{r.epoch}/{r.epochs}",
                        "best val acc": r.best_acc if (r.best_acc or -1) >= 0 else None, "model": r.config.get("model"),
                        "width": r.config.get("width"), "started": when(r.started), "updated": when(r.updated)} for r in runs])
    st.dataframe(df, hide_index=True, column_config={
        "best val acc": st.column_config.NumberColumn(format="percent"),
        "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm"),
        "updated": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")})


def _run_actions(info: jobs.RunInfo) -> None:
    key = f"run-{info.name}"
    try:
        if info.active:
            if st.button("Cancel", key=f"{key}-cancel", icon=":material/stop:", help="Saves and exits after the batch"):
                jobs.cancel_job(info.path)
                st.toast(f"Stopping {info.name} after the current batch")
        elif info.resumable and st.button("Resume", key=f"{key}-resume", icon=":material/play_arrow:"):
            jobs.resume_job(info.path)
            st.rerun()
        elif info.state == "finished":
            more = st.number_input("Total epochs", info.epochs + 1, 10_000, info.epochs + 10, key=f"{key}-epochs")
            if st.button("Train longer", key=f"{key}-longer", icon=":material/fast_forward:"):
                jobs.resume_job(info.path, epochs=int(more))
                st.rerun()
    except jobs.JobError as e:
        st.error(str(e))


TIME_TO_TARGETS = (0.60, 0.65, 0.68)  # the accuracies a run's time-to-accuracy line reports


def _time_to_accuracy_line(rows: list[dict]) -> str:
    parts = []
    for target in TIME_TO_TARGETS:
        hit = time_to_accuracy(rows, target)
        parts.append(f"{target:.0%} at epoch {hit[0]} after {_duration(hit[1])}" if hit else f"{target:.0%} not yet")
    return "Time to PublicTest accuracy (SGD steps, evaluations not counted): " + " · ".join(parts)


def _run_panel(run_dir: Path) -> None:
    info = jobs.read_run(run_dir)
    st.markdown(f"**{info.name}** {STATE_ICONS.get(info.state, '')} {info.state}" + (f": {info.message}" if info.message else ""))
    if info.epochs:
        st.progress(min(info.epoch / info.epochs, 1.0), text=f"epoch {info.epoch} of {info.epochs}")
    # status.json gives the ETA at the last epoch's end; count down from there between epochs.
    eta = info.eta_s - (time.time() - (info.updated or time.time())) if info.active and info.eta_s is not None else None
    cols = st.columns(4)
    cols[0].metric("best val accuracy", f"{info.best_acc:.1%}" if (info.best_acc or -1) >= 0 else "-",
                   help=f"epoch {info.best_epoch + 1}" if info.best_epoch is not None and info.best_epoch >= 0 else None)
    cols[1].metric("ETA", _duration(max(eta, 0.0)) if eta is not None else "-")
    cols[2].metric("images/s", f"{info.last['images_per_s']:.0f}" if "images_per_s" in info.last else "-")
    cols[3].metric("last val loss", f"{info.last['val_loss']:.3f}" if "val_loss" in info.last else "-")
    try:
        rows = RunFolder(run_dir).read_metrics()
    except ValueError as e:
        rows = []
        st.warning(f"No curves: {e}")
    if rows:
        st.caption(_time_to_accuracy_line(rows))
        st.plotly_chart(plots.curves(rows), key=f"curves-{info.name}")
    else:
        st.caption("Loss and accuracy curves appear after the first epoch.")
    _run_actions(info)
    with st.expander("Log"):
        log = run_dir / jobs.LOG_FILE
        st.code("\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else "(no log)", language=None)


COMPARE_BY = {"epoch": "epoch", "minutes": "minutes of SGD"}


def runs_compare(runs_root: Path, runs: list[jobs.RunInfo]) -> None:
    """Several runs' validation accuracy on one chart (shown once two runs have finished an epoch)."""
    names = [r.name for r in runs if r.epoch]
    if len(names) < 2:
        return
    st.subheader("Compare runs")
    c = st.columns([3, 1])
    picked = c[0].multiselect("Runs", names, default=names[:3], key="compare-runs", placeholder="pick runs to compare")
    by = c[1].segmented_control("Against", list(COMPARE_BY), format_func=COMPARE_BY.__getitem__, default="epoch",
                                key="compare-by")
    series = {}
    for name in picked:
        try:
            series[name] = RunFolder(runs_root / name).read_metrics()
        except ValueError as e:
            st.warning(f"Left out of the chart: {e}")
    if series:
        st.plotly_chart(plots.compare_runs(series, by or "epoch"), key="compare-chart")


def runs_view(runs_root: Path, chosen: str) -> None:
    """The chosen run (progress, metrics, curves, actions) and the table of all runs, refreshed every 2 s while a job runs."""
    polling = any(r.active for r in jobs.list_runs(runs_root))

    @st.fragment(run_every="2s" if polling else None)
    def view() -> None:
        runs = jobs.list_runs(runs_root)
        if polling and not any(r.active for r in runs):
            st.rerun()  # the job ended: a full rerun redraws the page without the timer
        _run_panel(runs_root / chosen)
        st.subheader("All runs")
        runs_table(runs)
        runs_compare(runs_root, runs)

    view()


# ---------------------------------------------------------------------------------------------- photos


def method_select(container: st.delta_generator.DeltaGenerator, key: str) -> str:
    """The explanation-method picker: short names in the box (a full label does not fit a narrow column), the details
    of each in its help."""
    from fer_core.explain import METHODS

    short = {m: label.partition(" (")[0] for m, label in METHODS.items()}
    details = "  \n".join(f"**{short[m]}** {label.removeprefix(short[m]).strip()}" for m, label in METHODS.items())
    choice = container.selectbox("Explanation", list(METHODS), format_func=lambda m: short[m], key=key, help=details)
    return choice if choice is not None else next(iter(METHODS))  # (never None: the box has no empty choice)


def _face_name(names: list[str] | None, j: int) -> str:
    return names[j] if names and j < len(names) else f"face {j + 1}"


def photo_result(name: str, data: bytes, checkpoint: Path, *, detect: bool, small_faces: bool, tta: str, method: str,
                 target: int | None, alpha: float, key: str, compare: Path | None = None, title: str | None = None,
                 face_names: list[str] | None = None) -> None:
    """One uploaded photo: annotated picture with downloads, and per face an attribution overlay and probability bars
    (beside those of a second model, `compare`, on the same face crops). `name` names the downloads; `title`, where
    given, is shown instead of it; `face_names` names the faces in detection order (default: face 1, face 2...). With
    more than MANY_FACES faces, a table of them all and one face up close, chosen there."""
    from fer_core.explain import CAVEATS, overlay
    from fer_core.images import ImageError

    st.markdown(f"**{title or name}**")
    stamp = loaders.mtime(checkpoint)
    drawn = tuple(n.removeprefix("face ") for n in face_names) if face_names else None  # the numbers on the picture
    try:
        faces, picture_png = loaders.analyse_photo(data, str(checkpoint), stamp, detect, small_faces, tta, drawn)
    except ImageError as e:
        st.error(f"Cannot use this file: {e}")
        return
    if not faces:
        st.warning("No face found. Faces should be roughly frontal (tilted up to about 45° is fine); "
                   + ("" if small_faces else "for small faces (a group photo), turn on **Small faces**; ")
                   + "for a photo that is already a face crop, turn off **Find faces**.")
        st.image(picture_png, width=480)
        return
    picture, details = st.columns([3, 2])
    picture.image(picture_png, width="stretch")
    stem = Path(name).stem
    result = {"file": name, "checkpoint": str(checkpoint), "tta": tta, "detect": detect, "small_faces": small_faces,
              "faces": [f.to_dict() for f in faces]}
    left, right = picture.columns(2)
    left.download_button("Annotated image (PNG)", picture_png, f"{stem}.annotated.png", "image/png", key=f"{key}-png",
                         icon=":material/download:")
    right.download_button("Result (JSON)", json.dumps(result, indent=2), f"{stem}.json", "application/json", key=f"{key}-json",
                          icon=":material/data_object:")
    with details:
        shown = list(range(len(faces)))
        if len(faces) > MANY_FACES:  # every face's map and chart would be a long scroll (and Occlusion a long wait)
            shown = [many_faces(faces, face_names, key)]
        for j in shown:
            face = faces[j]
            heat = loaders.explain_crop(face.crop, str(checkpoint), stamp, method, target)
            crop_col, bars_col = st.columns([2, 3], vertical_alignment="center")
            turned = f" (turned {face.angle:+.0f}°, shown upright)" if face.angle else ""
            caption = f"{_face_name(face_names, j)}: {face.label} {face.confidence:.0%}{turned}"
            crop_col.image(overlay(face.crop, heat, alpha=alpha), caption=caption, width="stretch")
            if not heat.any():  # Grad-CAM keeps only positive evidence; a weak or unsure model may have none to show
                crop_col.caption("This method found no positive evidence for the class here; try another method.")
            if compare is None:
                bars_col.plotly_chart(plots.probabilities(face.probs), key=f"{key}-probs{j}")
                continue
            other = loaders.face_probs(face.crop, str(compare), loaders.mtime(compare), tta)
            names = (_short_name(checkpoint), _short_name(compare))
            bars_col.plotly_chart(plots.probabilities_pair(face.probs, other, names), key=f"{key}-probs{j}")
            best = max(other, key=lambda e: other[e])
            bars_col.caption(f"{'Agree' if best == face.label else 'Disagree'}: {names[1]} says {best} {other[best]:.0%}")
        if caveat := CAVEATS.get(method):
            st.caption(caveat)


MANY_FACES = 6  # a photo with more faces shows a table of them and one face up close


def many_faces(faces: Sequence[Any], names: list[str] | None, key: str) -> int:
    """The faces of a crowded photo as a table (name, emotion, confidence, and the tilt where a face is turned) and
    counts per emotion; the index of the face chosen to be shown up close (the first, largest, until another is chosen).
    Boxes and probabilities are in the JSON download."""
    from fer_core.config import EMOTIONS

    labels = [_face_name(names, j) for j in range(len(faces))]
    counts = {e: sum(f.label == e for f in faces) for e in EMOTIONS}
    st.markdown(f"**{len(faces)} faces**: " + ", ".join(f"{e} {n}" for e, n in counts.items() if n))
    table = pd.DataFrame({"face": labels, "emotion": [f.label for f in faces], "confidence": [f.confidence for f in faces],
                          "tilt": [f.angle for f in faces]})
    table = table if table["tilt"].any() else table.drop(columns="tilt")
    st.dataframe(table, hide_index=True, height=248, key=f"{key}-faces", column_config={
        "confidence": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
        "tilt": st.column_config.NumberColumn(format="%+.0f°", help="Turned in the picture's plane (counter-clockwise)")})
    return st.selectbox("Face up close", range(len(faces)), key=f"{key}-face",
                        format_func=lambda j: f"{labels[j]}: {faces[j].label} {faces[j].confidence:.0%}",
                        help="Its saliency map and probabilities below; the numbers are those drawn on the picture")


def faces_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """fer_core.predict.csv_rows() as a table with its CSV_COLUMNS (the CLI's --csv layout); whole numbers stay whole
    where some rows have none (a photo without a face, an error)."""
    from fer_core.predict import CSV_COLUMNS

    table = pd.DataFrame(rows, columns=CSV_COLUMNS)
    whole = {c: "Int64" for c in ("frame", "face", "x", "y", "w", "h")}
    return table.astype({**whole, "label": object, "error": object}).fillna({"label": "", "error": ""})


def photos_summary(photos: Sequence[tuple[str, bytes]], checkpoint: Path, *, detect: bool, small_faces: bool,
                   tta: str) -> None:
    """Several photos at once: one table row per face (or per photo without one, or that cannot be read), the counts
    per emotion, and the whole table as CSV (as `fer-predict --csv` writes it); each photo's own view follows below."""
    from fer_core.config import EMOTIONS
    from fer_core.images import ImageError
    from fer_core.predict import csv_rows

    rows: list[dict[str, Any]] = []
    for name, data in photos:
        try:
            faces, _ = loaders.analyse_photo(data, str(checkpoint), loaders.mtime(checkpoint), detect, small_faces, tta)
        except ImageError as e:
            rows += csv_rows(name, f"cannot use this file: {e}")
            continue
        rows += csv_rows(name, faces)
    table = faces_frame(rows).drop(columns=["frame", "time_s"])
    found = table["label"][table["label"] != ""].value_counts()
    st.markdown(f"**{len(photos)} photos, {int(table['face'].notna().sum())} faces**: "
                + (", ".join(f"{e} {found[e]}" for e in EMOTIONS if e in found) or "no face found"))
    shown = table.assign(note=table["error"].mask((table["error"] == "") & table["face"].isna(), "no face found"))
    shown = shown.rename(columns={"path": "file", "label": "emotion"})
    st.dataframe(shown[["file", "face", "emotion", "confidence", "x", "y", "w", "h", "note"]], hide_index=True,
                 column_config={"confidence": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)})
    st.download_button("All faces (CSV)", table.to_csv(index=False), "faces.csv", "text/csv", key="photos-csv",
                       icon=":material/download:")
