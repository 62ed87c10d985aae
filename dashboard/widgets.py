"""Shared Streamlit pieces: the sidebar settings every page reads, guards that stop a page with instructions, small views."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import streamlit as st

import loaders
import plots
from fer_core import jobs, procs
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


def short_name(path: Path) -> str:
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


def onnx_downloads(checkpoint: Path) -> None:
    """Two buttons that download the model as a standalone ONNX file (float32, int8), made on the click off the page
    run (loaders.onnx_file); a model that cannot be exported says why here, since a click could not."""
    problem = loaders.export_problem(checkpoint)
    help_ = ("For other programs: one file run by ONNX Runtime alone (`fer-export`, README). Input: uint8 48x48 face "
             "crops; output: the 7 probabilities. Made on the click (a few seconds) and checked against this model on "
             "the sample faces.")
    for col, int8, label in zip(st.columns(2), (False, True), ("ONNX file", "ONNX file, int8"), strict=True):
        col.download_button(label, partial(loaders.onnx_file, checkpoint, int8=int8),
                            f"{checkpoint.stem}{'.int8' if int8 else ''}.onnx", "application/octet-stream",
                            icon=":material/download:", disabled=bool(problem), help=help_ + (
                                " int8: about a quarter of the size, 2-3x faster, ~99% the same answers." if int8 else ""))
    if problem:
        st.warning(f"No ONNX file: {problem}.")


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


def image_grid(images: np.ndarray | Sequence[np.ndarray], captions: Sequence[str], columns: int = 8,
               width: int | Literal["stretch"] = 96) -> None:
    """Small greyscale faces in rows of `columns`, each with a caption ("stretch": as wide as its column)."""
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
        if not info.active:
            with st.popover("Delete", icon=":material/delete:", help="Delete this run's folder: checkpoints, curves, log"):
                st.markdown(f"Delete **{info.name}** and its checkpoints? This cannot be undone.")
                if st.button("Delete run", key=f"{key}-delete", type="primary"):
                    jobs.delete_run(info.path, info.path.parent)
                    st.rerun()
    except (jobs.JobError, OSError) as e:
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
    try:
        rows, problem = RunFolder(run_dir).read_metrics(), ""
    except ValueError as e:
        rows, problem = [], str(e)
    best = info.best_epoch if info.best_epoch is not None and info.best_epoch >= 0 else None
    unseen = next((r["val_acc_unseen"] for r in rows if r.get("epoch") == best and "val_acc_unseen" in r), None)
    cols = st.columns(4)
    cols[0].metric("best val accuracy", f"{info.best_acc:.1%}" if (info.best_acc or -1) >= 0 else "-",
                   help=None if best is None else f"epoch {best + 1}" + (
                       f"; {unseen:.1%} on the validation faces Training lacks" if unseen is not None else ""))
    cols[1].metric("ETA", _duration(max(eta, 0.0)) if eta is not None else "-")
    cols[2].metric("images/s", f"{info.last['images_per_s']:.0f}" if "images_per_s" in info.last else "-")
    cols[3].metric("last val loss", f"{info.last['val_loss']:.3f}" if "val_loss" in info.last else "-")
    if problem:
        st.warning(f"No curves: {problem}")
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


def job_outcome(job: dict) -> tuple[str, str]:
    """("done", ""), ("failed", the log's last lines) or ("running", its last line) for a job the page started and keeps
    in session state as {"out", "log", "pid", "started"}: done once `out` was written after the start."""
    out, log = Path(job["out"]), Path(job["log"])
    alive = procs.pid_alive(job["pid"])  # asked first: a job that writes `out` and ends after the look at `out` is done
    if out.exists() and loaders.mtime(out) >= job["started"] - 1:
        return "done", ""
    if not alive:
        return "failed", "\n".join(procs.log_tail(log, 5))
    return "running", next(iter(procs.log_tail(log, 1)), "")
