"""One uploaded video on the Predict page: emotions over time, the most frequent ones, and any sampled frame up close."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import streamlit as st

import loaders
import plots
import widgets
from fer_core.config import EMOTIONS
from fer_core.video import VideoError, VideoPrediction, sampling_interval, video_info

EVERY_CHOICES = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


def timeline_csv(result: VideoPrediction) -> str:
    """One row per sampled frame: frame, time, faces found, the largest face's label and probabilities (empty if none)."""
    rows = [{"frame": f.index, "time_s": round(f.time_s, 3), "faces": len(f.faces),
             "label": f.faces[0].label if f.faces else "", **{e: f.faces[0].probs[e] if f.faces else None for e in EMOTIONS}}
            for f in result.frames]
    buf = io.StringIO()
    pd.DataFrame(rows).to_csv(buf, index=False, float_format="%.4f")
    return buf.getvalue()


def video_result(name: str, data: bytes, checkpoint: Path, *, every_s: float, detect: bool, tta: str, method: str,
                 target: int | None, alpha: float, key: str, compare: Path | None = None) -> None:
    """Analyse a video (cached per content and settings), chart the timeline, and show one chosen sampled frame as a
    photo result (boxes, probabilities, saliency map, second model)."""
    st.markdown(f"**{name}**")
    path = loaders.video_file(data, name)
    try:
        info = video_info(path)
        step = sampling_interval(info, every_s)
        n = f"{info.duration_s / step:.0f} " if info.duration_s else ""
        with st.spinner(f"Finding faces in {n}frames of {name}...", show_time=True):
            result = loaders.analyse_video(str(path), str(checkpoint), loaders.mtime(checkpoint), detect, tta, step)
    except VideoError as e:
        st.error(f"Cannot use this video: {str(e).removeprefix(f'{path}: ')}")
        return
    with_face = [f for f in result.frames if f.faces]
    length = f"{info.duration_s:.1f} s, " if info.duration_s else ""
    st.caption(f"{length}{info.width} x {info.height}{f' at {info.fps:g} fps' if info.fps else ''}: "
               f"{len(result.frames)} frames sampled, one every {result.every_s:g} s; a face in {len(with_face)}. "
               "Where a frame has several faces, the timeline follows the largest.")
    if not with_face:
        st.warning("No face found in any sampled frame. Faces should be roughly frontal and not tiny; for a video of a "
                   "face filling the frame, turn off **Find faces**.")
        return
    chart = st.empty()  # drawn once the frame is chosen below, with a line at its time
    st.markdown("Most often: " + ", ".join(f"**{e}** {s:.0%}" for e, s in result.summary().items())
                + " of the frames with a face")
    stem, left, middle, right = Path(name).stem, *st.columns(3, vertical_alignment="center")
    left.download_button("Timeline (CSV)", timeline_csv(result), f"{stem}.timeline.csv", "text/csv", key=f"{key}-csv",
                         icon=":material/download:")
    summary = {"file": name, "checkpoint": str(checkpoint), "tta": tta, "detect": detect, **result.to_dict()}
    middle.download_button("Result (JSON)", json.dumps(summary, indent=2), f"{stem}.json", "application/json",
                           key=f"{key}-json", icon=":material/data_object:")
    if right.toggle("Annotated video", key=f"{key}-annotated", help="The video with each sampled frame's boxes and "
                    "labels, held until the next sample (WebM, at most 640 px and 15 frames/s)"):
        with st.spinner("Drawing the faces on every frame...", show_time=True):
            webm = loaders.annotated_video(str(path), str(checkpoint), loaders.mtime(checkpoint), detect, tta, step)
        player = st.columns([3, 2])[0]  # as wide as the frame up close below
        player.video(webm, format="video/webm")
        player.download_button("Annotated video (WebM)", webm, f"{stem}.annotated.webm", "video/webm", key=f"{key}-webm",
                               icon=":material/movie:")
    at = {f.index: f.time_s for f in with_face}
    chosen = next(iter(at)) if len(at) == 1 else st.select_slider(
        "Frame up close", list(at), format_func=lambda i: f"{at[i]:.2f} s", key=f"{key}-frame",
        help="Any sampled frame with a face, analysed and explained like a photo")
    times, probs = result.timeline()
    chart.plotly_chart(plots.emotion_timeline(times, probs, mark=at[chosen]), key=f"{key}-timeline")
    widgets.photo_result(f"{stem}_frame{chosen}.png", loaders.video_frame(str(path), chosen), checkpoint, detect=detect,
                         tta=tta, method=method, target=target, alpha=alpha, key=f"{key}-at", compare=compare,
                         title=f"{name} at {at[chosen]:.2f} s (frame {chosen})")
