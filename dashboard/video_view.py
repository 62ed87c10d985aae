"""One uploaded video on the Predict page: emotions over time, the most frequent ones, and any sampled frame up close."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

import loaders
import photo_view
import plots
from fer_core.predict import counted, csv_rows
from fer_core.tracking import MAX_GAP_S
from fer_core.video import VideoError, VideoInfo, VideoPrediction, sampling_interval, smooth, video_info
from fer_core.video_job import ANNOTATED, RESULT, cancel_video_job, read_video_job, start_annotation_job

EVERY_CHOICES = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
INLINE_SAMPLES = 60  # up to this many sampled frames (a few seconds) are analysed in the page run; more, in a job
SMOOTHING = (1, 3, 5, 9, 15)  # samples in the chart's moving mean (1: off)


def timeline_csv(name: str, result: VideoPrediction) -> str:
    """A row per face of each sampled frame (one row with no face where a frame has none): frame, time, face (its
    track, from 1), box, angle, label, confidence, probabilities; `fer-predict --csv`'s layout without the path and error."""
    return photo_view.faces_frame(csv_rows(name, result)).drop(columns=["path", "error"]).to_csv(index=False)


def face_picker(result: VideoPrediction, key: str, thumbs: DeltaGenerator, picker: DeltaGenerator) -> int | None:
    """Where the video shows several faces: a thumbnail of each (tracked across frames; in `thumbs`) and whose timeline
    to show (in `picker`); None stands for the largest face of each frame."""
    counts = result.track_counts()
    firsts = {k: p.crop for f in reversed(result.frames) for p, k in zip(f.faces, f.tracks, strict=True)}
    shown = list(range(min(len(counts), 8)))
    for col, k in zip(thumbs.columns(len(shown) + 1, vertical_alignment="bottom")[:-1], shown, strict=True):
        col.image(firsts[k], caption=f"face {k + 1}", width=72)
    return picker.selectbox("Timeline of", [None, *range(len(counts))], key=f"{key}-track",
                            format_func=lambda k: "the largest face in each frame" if k is None else
                            f"face {k + 1} (in {counts[k]} of {counted(len(result.frames), 'frame')})",
                            help="Faces are followed from frame to frame by where they are; face 1 is seen most")


def about(info: VideoInfo) -> str:
    """Length, size and frame rate, as far as the container says."""
    length = f"{info.duration_s:.1f} s, " if info.duration_s else ""
    return f"{length}{info.width} x {info.height}{f' at {info.fps:g} fps' if info.fps else ''}"


def follow(key: str, folder: Path | None) -> None:
    """Note the job this view shows (None: none), and stop the one it showed before where that one still runs: on two
    cores it would only slow the new one down. A job stopped so is started over if the view comes back to it."""
    previous, superseded = st.session_state.get(f"{key}-job"), st.session_state.setdefault("superseded-jobs", {})
    if previous is not None and previous != str(folder):
        status = read_video_job(previous)
        if cancel_video_job(previous):  # (False where it has ended)
            superseded[previous] = status.pid
    st.session_state[f"{key}-job"] = None if folder is None else str(folder)


def analysis_job(path: str, folder: Path, settings: tuple[str, float, bool, bool, str], step: float, info: VideoInfo,
                 key: str) -> VideoPrediction | None:
    """A long video's analysis, run as a subprocess job in `folder` so that the page stays usable meanwhile: its result
    once it has finished (raises VideoError for an unusable video); until then a live progress bar with a Stop button,
    or why it stopped with a button to start over (None)."""
    follow(key, folder)
    superseded: dict[str, int | None] = st.session_state["superseded-jobs"]
    status = loaders.video_job(path, *settings, step, again=str(folder) in superseded)
    if str(folder) in superseded and (status.pid != superseded[str(folder)] or status.state in ("finished", "failed")):
        del superseded[str(folder)]  # started over, or it had ended before the stop reached it
    if status.state == "finished":
        try:
            return loaders.video_job_result(str(folder), loaders.mtime(folder / RESULT))
        except VideoError as e:  # its files damaged since: nothing to keep
            st.error(f"The saved analysis of this video cannot be read: {e}")
            if st.button("Analyse it again", key=f"{key}-redo", icon=":material/replay:"):
                shutil.rmtree(folder, ignore_errors=True)  # no job there: the next run starts one
                st.rerun()
            return None
    if status.state == "failed":
        raise VideoError(status.message)
    if status.active:
        samples = round(info.duration_s / step) if info.duration_s else None
        st.caption(f"{about(info)}: one frame every {step:g} s")
        job_progress(folder, f"Finding faces in {samples or 'the'} frames", key)
        return None
    st.warning(f"The analysis of this video did not finish: {status.message}")
    if st.button("Analyse it again", key=f"{key}-again", icon=":material/replay:"):
        loaders.video_job(path, *settings, step, again=True)
        st.rerun()
    return None


def annotated(path: str, result: VideoPrediction, settings: tuple[str, float, bool, bool, str], step: float,
              job: Path | None, key: str) -> bytes | None:
    """The annotated WebM preview: drawn in the page run where the analysis was (a short video), else in a job of its
    own beside the analysis job's, with a progress bar meanwhile (None until it is there)."""
    if job is None:
        with st.spinner("Drawing the faces on every frame...", show_time=True):
            return loaders.annotated_video(path, *settings, step, result)
    folder = job / "annotated"
    status = start_annotation_job(path, folder, job, loaders.ANNOTATED_SIDE, loaders.ANNOTATED_FPS)
    if status.state == "finished":
        return (folder / ANNOTATED).read_bytes()
    if status.active:
        job_progress(folder, "Drawing the faces on every frame", f"{key}-annotated")
    elif status.state == "failed":
        st.error(f"Cannot draw on this video: {status.message}")
    else:
        st.warning(f"The annotated video was not finished: {status.message}")
        if st.button("Draw it again", key=f"{key}-annotated-again", icon=":material/replay:"):
            start_annotation_job(path, folder, job, loaders.ANNOTATED_SIDE, loaders.ANNOTATED_FPS, again=True)
            st.rerun()
    return None


@st.fragment(run_every=0.5)
def job_progress(folder: Path, doing: str, key: str) -> None:
    """The running job's progress, redrawn twice a second on its own; the whole page runs again once it has ended."""
    status = read_video_job(folder)
    if not status.active:
        st.rerun()
    done = "starting" if status.state == "starting" else f"{status.done:.0%}"
    took = f", {time.time() - status.started:.0f} s" if status.started else ""
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    left.progress(status.done, text=f"{doing} ({done}{took}); the page stays usable meanwhile")
    if right.button("Stop", key=f"{key}-stop", icon=":material/stop:"):
        cancel_video_job(folder)
        st.rerun()


def video_result(name: str, data: bytes, checkpoint: Path, *, every_s: float, detect: bool, small_faces: bool, tta: str,
                 method: str, target: int | None, alpha: float, key: str, compare: Path | None = None) -> None:
    """Analyse a video (cached per content and settings), chart the timeline, and show one chosen sampled frame as a
    photo result (boxes, probabilities, saliency map, second model)."""
    st.markdown(f"**{name}**")
    try:
        path = loaders.video_file(data, name)  # OpenCV reads files: the upload is kept on disk by its content
    except OSError as e:
        st.error(f"Cannot store this video for reading (in {loaders.VIDEO_DIR}): {e.strerror or e}")
        return
    settings = (str(checkpoint), loaders.mtime(checkpoint), detect, small_faces, tta)
    try:
        info = video_info(path)
        step = sampling_interval(info, every_s)
        samples = round(info.duration_s / step) if info.duration_s else None
        job = None if samples is not None and samples <= INLINE_SAMPLES else loaders.video_job_folder(str(path), *settings, step)
        if job is None:
            follow(key, None)
            with st.spinner(f"Finding faces in {samples} frames of {name}...", show_time=True):
                result = loaders.analyse_video(str(path), *settings, step)
        elif (found := analysis_job(str(path), job, settings, step, info, key)) is None:
            return
        else:
            result = found
    except VideoError as e:
        st.error(f"Cannot use this video: {str(e).removeprefix(f'{path}: ')}")
        return
    with_face = [f for f in result.frames if f.faces]
    people = len(result.track_counts())
    st.caption(f"{about(info)}: {len(result.frames)} frames sampled, one every {result.every_s:g} s; a face in {len(with_face)}"
               + (f"; {people} faces, each followed from frame to frame (one gone for over {MAX_GAP_S:g} s returns as a new one)."
                  if people > 1 else "."))
    if not with_face:
        st.warning("No face found in any sampled frame. Faces should be roughly frontal; "
                   + ("" if small_faces else "for small faces, turn on **Small faces**; ")
                   + "for a video of a face filling the frame, turn off **Find faces**.")
        return
    thumbs, controls = st.container(), st.columns(2)  # the thumbnails above both controls
    track = face_picker(result, key, thumbs, controls[1]) if people > 1 else None
    window = controls[0].select_slider(
        "Smoothing", SMOOTHING, key=f"{key}-smooth", format_func=lambda w: "off" if w == 1 else
        f"{w} samples ({w * result.every_s:g} s)", help="A moving mean over neighbouring samples, for the chart only: "
        "single frames are noisy (a blink, motion blur); the frames up close and the downloads keep each frame's own numbers")
    chart = st.empty()  # drawn once the frame is chosen below, with a line at its time
    who = "" if people == 1 else " (the largest face)" if track is None else f" (face {track + 1})"
    st.markdown(f"Most often{who}: " + ", ".join(f"**{e}** {s:.0%}" for e, s in result.summary(track).items())
                + f" of the frames with {'a face' if track is None else f'face {track + 1}'}")
    stem, left, middle, right = Path(name).stem, *st.columns(3, vertical_alignment="center")
    left.download_button("Timeline (CSV)", timeline_csv(name, result), f"{stem}.timeline.csv", "text/csv", key=f"{key}-csv",
                         icon=":material/download:")
    summary = {"file": name, "checkpoint": str(checkpoint), "tta": tta, "detect": detect, "small_faces": small_faces,
               **result.to_dict()}
    middle.download_button("Result (JSON)", json.dumps(summary, indent=2), f"{stem}.json", "application/json",
                           key=f"{key}-json", icon=":material/data_object:")
    if right.toggle("Annotated video", key=f"{key}-annotated", help="The video with each sampled frame's boxes and "
                    "labels, held until the next sample (WebM, at most 640 px and 15 frames/s)"):
        if (webm := annotated(str(path), result, settings, step, job, key)) is not None:
            player = st.columns([3, 2])[0]  # as wide as the frame up close below
            player.video(webm, format="video/webm")
            player.download_button("Annotated video (WebM)", webm, f"{stem}.annotated.webm", "video/webm",
                                   key=f"{key}-webm", icon=":material/movie:")
    frames = {f.index: f for f in result.frames if f.face(track) is not None}
    chosen = next(iter(frames)) if len(frames) == 1 else st.select_slider(
        "Frame up close", list(frames), format_func=lambda i: f"{frames[i].time_s:.2f} s", key=f"{key}-frame",
        help="Any sampled frame with a face, analysed and explained like a photo")
    times, probs = result.timeline(track)
    probs = smooth(probs, window)
    chart.plotly_chart(plots.emotion_timeline(times, probs, mark=frames[chosen].time_s), key=f"{key}-timeline")
    photo_view.photo_result(f"{stem}_frame{chosen}.png", loaders.video_frame(str(path), chosen), checkpoint, detect=detect,
                         small_faces=small_faces, tta=tta, method=method, target=target, alpha=alpha, key=f"{key}-at",
                         compare=compare, title=f"{name} at {frames[chosen].time_s:.2f} s (frame {chosen})",
                         face_numbers=[str(k + 1) for k in frames[chosen].tracks])  # the same detection: same order
