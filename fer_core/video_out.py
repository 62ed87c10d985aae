"""Annotated copies of videos (each sampled frame's boxes and labels held until the next) and a demo clip to try on."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .predict import FacePrediction, annotate
from .video import VideoError, VideoPrediction, _open

CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".webm": "VP80"}  # what OpenCV's FFmpeg writes here (no H.264: not in the wheel)

def _overlay(size: tuple[int, int], faces: list[FacePrediction], names: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """Which pixels annotate() draws on a picture of `size` (flat indices) and their BGR values: drawn on black and on
    white, the drawing is where the two agree (it is opaque), so one pair of calls per sampled frame serves every frame
    until the next, and each frame only has those pixels written."""
    dark, light = (np.asarray(annotate(Image.new("RGB", size, c), faces, names)) for c in ((0, 0, 0), (255, 255, 255)))
    where = np.flatnonzero((dark == light).all(axis=2))
    return where, dark.reshape(-1, 3)[where][:, ::-1]


def annotate_video(path: str | os.PathLike, result: VideoPrediction, out: str | os.PathLike, max_side: int | None = None,
                   max_fps: float | None = None, progress: Callable[[float], None] | None = None) -> Path:
    """A copy of the video with each sampled frame's boxes and labels drawn on it and on the frames after it (until
    the next sample): .mp4 (MPEG-4 Part 2), .avi (MJPEG) or .webm (VP8, which browsers play). `max_side` shrinks the
    frames, `max_fps` keeps every k-th frame; the file appears whole (written beside, then renamed). `progress` is
    called with the fraction done every 30 frames where the length is known."""
    import cv2

    out = Path(out)
    if out.suffix.lower() not in CODECS:
        raise ValueError(f"cannot write {out.name}: the annotated video can be {', '.join(CODECS)}")
    cap, info = _open(path)
    keep = max(1, round(info.fps / max_fps)) if max_fps and info.fps else 1
    several = len(result.track_counts()) > 1  # then each face is labelled with its track's number, as in format_video
    samples = sorted(((f.index, f.faces, [str(k + 1) for k in f.tracks] if several else None) for f in result.frames),
                     key=lambda sample: sample[0])
    nxt, index, names = 0, -1, None
    faces: list[FacePrediction] = []
    part = out.with_name(f".{out.stem}.part{out.suffix}")
    writer: Any = None
    size, drawn, fresh = (0, 0), None, False
    try:
        while cap.grab():
            index += 1
            while nxt < len(samples) and samples[nxt][0] <= index:  # a sample's faces hold from its frame on
                _, faces, names = samples[nxt]
                fresh, nxt = True, nxt + 1
            if index % keep:
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                break
            h, w = frame.shape[:2]  # the decoded size (a rotated phone video may differ from what the container says)
            if writer is None:
                scale = min(1.0, max_side / max(w, h)) if max_side else 1.0
                size = (max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2))  # even sides: codecs
                out.parent.mkdir(parents=True, exist_ok=True)
                writer = cv2.VideoWriter(str(part), cv2.VideoWriter.fourcc(*CODECS[out.suffix.lower()]),
                                         (info.fps or 1 / result.every_s) / keep, size)
                if not writer.isOpened():
                    raise VideoError(f"{out}: OpenCV cannot write this video here")
            if fresh:
                sx, sy = size[0] / w, size[1] / h
                drawn = _overlay(size, [replace(f, box=(round(f.box[0] * sx), round(f.box[1] * sy), max(1, round(
                    f.box[2] * sx)), max(1, round(f.box[3] * sy)))) for f in faces], names) if faces else None
                fresh = False
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA) if (w, h) != size else np.ascontiguousarray(frame)
            if drawn is not None:
                frame.reshape(-1, 3)[drawn[0]] = drawn[1]  # a view of the contiguous frame: only the drawn pixels
            writer.write(frame)
            if progress is not None and info.frame_count and index % 30 == 0:
                progress(min(1.0, index / info.frame_count))
    except BaseException:
        part.unlink(missing_ok=True)  # nothing half-written is left behind
        raise
    finally:
        cap.release()
        if writer is not None:
            writer.release()
    if writer is None:
        part.unlink(missing_ok=True)
        raise VideoError(f"{path}: no frame could be decoded (an empty or damaged video)")
    part.replace(out)
    return out


def demo_clip(path: str | os.PathLike, seconds: float = 4.0, size: tuple[int, int] = (640, 360), fps: float = 10.0) -> Path:
    """A clip to try the video path on, made from scikit-image's bundled photos (no download): the astronaut's head
    (Eileen Collins, NASA; a real face) gliding to and fro across a cup of coffee (a real scene), as .mp4."""
    import cv2
    from skimage import data as skdata

    w, h = size
    scene = np.asarray(Image.fromarray(skdata.coffee()).resize((w, h)))[:, :, ::-1]
    side = h // 2
    head = np.asarray(Image.fromarray(skdata.astronaut()).crop((130, 20, 330, 220)).resize((side, side)))[:, :, ::-1]
    out = Path(path)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*CODECS[".mp4"]), fps, (w, h))
    n = max(1, round(seconds * fps))
    for i in range(n):
        frame = scene.copy()
        x = int((w - side) * (0.5 + 0.5 * np.sin(2 * np.pi * i / n)))
        frame[h // 4 : h // 4 + side, x : x + side] = head
        writer.write(np.ascontiguousarray(frame))
    writer.release()
    return out
