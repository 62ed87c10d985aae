"""Emotions over time in a video: frames sampled at a fixed interval, their faces found and classified in batches."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .checkpoint import LoadedModel
from .config import EMOTIONS, IMAGE_SIZE
from .faces import FollowingDetector, get_detector
from .images import MAX_PIXELS
from .predict import (
    FacePrediction,
    _to_predictions,
    counted,
    crop_margin,
    default_model,
    face_blockiness,
    face_crops,
    predict_crops,
)
from .tracking import assign_tracks
from .transforms import TTA_MODES

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".ogv")
DEFAULT_EVERY_S = 0.5
MAX_SAMPLES = 600  # a long video is sampled more sparsely, so that one analysis stays within ~a minute on 2 cores
CHUNK = 16  # sampled frames whose faces go through the model together
WHOLE_FRAME_EVERY_S = 1.0  # between whole-frame face searches, the last sample's faces are followed (faces.FollowingDetector)
SEEK_GAP_S = 5.0  # samples this far apart are reached by seeking (a keyframe, then decoding forward), not by decoding all
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own stderr lines ("moov atom not found"): VideoError says it


class VideoError(ValueError):
    """A file that cannot be used as a video; the message says why and what would work."""


def is_video(path: str | os.PathLike) -> bool:
    """Whether a file name has one of the video suffixes (VIDEO_SUFFIXES)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video (frame_count and fps are 0 where it does not say)."""

    width: int
    height: int
    fps: float
    frame_count: int

    @property
    def duration_s(self) -> float | None:
        return self.frame_count / self.fps if self.fps > 0 and self.frame_count > 0 else None

    def to_dict(self) -> dict[str, Any]:
        d = self.duration_s
        return {"width": self.width, "height": self.height, "fps": round(self.fps, 3), "frame_count": self.frame_count,
                "duration_s": None if d is None else round(d, 3)}


@dataclass
class FrameFaces:
    """The faces of one sampled frame, largest first, and which track (person) each belongs to."""

    index: int  # frame number in the video, from 0
    time_s: float
    faces: list[FacePrediction]
    tracks: list[int]  # per face: 0 is the face seen in most frames (fer_core.tracking)

    def face(self, track: int | None = None) -> FacePrediction | None:
        """The largest face (track None) or that track's face; None where there is none."""
        if track is None:
            return self.faces[0] if self.faces else None
        return next((f for f, k in zip(self.faces, self.tracks, strict=True) if k == track), None)

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.index, "time_s": round(self.time_s, 3),
                "faces": [{**f.to_dict(), "track": k} for f, k in zip(self.faces, self.tracks, strict=True)]}


@dataclass
class VideoPrediction:
    """Every sampled frame of a video with its faces; a timeline follows one track, or the largest face of each frame."""

    info: VideoInfo
    every_s: float  # the sampling interval used (longer than asked where the video is long: MAX_SAMPLES)
    frames: list[FrameFaces]
    truncated: bool = False  # stopped at MAX_SAMPLES before the end of a video whose length was unknown

    def track_counts(self) -> list[int]:
        """In how many sampled frames each track appears (track 0 first: the most)."""
        counts: dict[int, int] = {}
        for f in self.frames:
            for k in f.tracks:
                counts[k] = counts.get(k, 0) + 1
        return [counts[k] for k in sorted(counts)]

    def timeline(self, track: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Times (N,) and the probabilities (N, 7) of the largest face (track None) or of one track's face, a row of
        NaN where a frame has none."""
        probs = np.full((len(self.frames), len(EMOTIONS)), np.nan)
        for i, f in enumerate(self.frames):
            if (face := f.face(track)) is not None:
                probs[i] = [face.probs[e] for e in EMOTIONS]
        return np.array([f.time_s for f in self.frames]), probs

    def summary(self, track: int | None = None) -> dict[str, float]:
        """Share of the frames with that face (the largest, or the track's) in which each emotion is its label, most
        frequent first."""
        labels = [face.label for f in self.frames if (face := f.face(track)) is not None]
        shares = {e: labels.count(e) / len(labels) for e in EMOTIONS} if labels else {}
        return dict(sorted(((e, s) for e, s in shares.items() if s > 0), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict[str, Any]:
        return {"video": self.info.to_dict(), "every_s": self.every_s, "truncated": self.truncated,
                "summary": self.summary(), "tracks": self.track_counts(), "frames": [f.to_dict() for f in self.frames]}


def _open(path: str | os.PathLike) -> tuple[Any, VideoInfo]:
    import cv2

    p = Path(path)
    if not p.is_file():
        raise VideoError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"{p}: cannot read this file as a video (OpenCV's FFmpeg decoder could not open it; "
                         f"common formats: {', '.join(VIDEO_SUFFIXES)})")
    fps, count = cap.get(cv2.CAP_PROP_FPS), cap.get(cv2.CAP_PROP_FRAME_COUNT)
    info = VideoInfo(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                     fps if math.isfinite(fps) and 0 < fps < 1000 else 0.0,
                     int(count) if math.isfinite(count) and count > 0 else 0)
    if info.width * info.height > MAX_PIXELS:
        cap.release()
        raise VideoError(f"{p}: frames of {info.width} x {info.height} pixels exceed the limit of "
                         f"{MAX_PIXELS / 1e6:g} megapixels")
    return cap, info


def video_info(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate and length of a video; raises VideoError where it cannot be opened."""
    cap, info = _open(path)
    cap.release()
    return info


def sampling_interval(info: VideoInfo, every_s: float = DEFAULT_EVERY_S, max_samples: int = MAX_SAMPLES) -> float:
    """The interval actually used: every_s, or longer so that a video of known length gives at most max_samples."""
    if not every_s > 0:
        raise ValueError(f"every_s must be positive, not {every_s}")
    d = info.duration_s
    return max(every_s, d / max_samples) if d else every_s


def _rgb(bgr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))  # OpenCV decodes to BGR


def sample_frames(path: str | os.PathLike, every_s: float = DEFAULT_EVERY_S,
                  max_samples: int = MAX_SAMPLES) -> Iterator[tuple[int, float, Image.Image]]:
    """(frame index, time in s, RGB image) of the first frame at most half a frame before each multiple of the interval."""
    cap, info = _open(path)
    step, n = sampling_interval(info, every_s, max_samples), 0
    sparse = step >= SEEK_GAP_S and info.fps and info.frame_count  # sparse samples of a long video: seek, do not decode all
    try:
        for sample in (_seek_frames if sparse else _decode_frames)(cap, info, step, max_samples):
            yield sample
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise VideoError(f"{path}: no frame could be decoded (an empty or damaged video)")


def _decode_frames(cap: Any, info: VideoInfo, step: float, max_samples: int) -> Iterator[tuple[int, float, Image.Image]]:
    import cv2

    n, index, next_t, half_frame = 0, -1, 0.0, 0.5 / info.fps if info.fps else 0.0
    while n < max_samples and cap.grab():
        index += 1
        ms = cap.get(cv2.CAP_PROP_POS_MSEC)  # the timestamp of the frame just grabbed (variable frame rates too)
        t = ms / 1000 if math.isfinite(ms) and (ms > 0 or index == 0) else (index / info.fps if info.fps else 0.0)
        if t + half_frame < next_t:
            continue
        ok, bgr = cap.retrieve()
        if not ok or bgr is None:
            return
        yield index, t, _rgb(bgr)
        n += 1
        next_t = (math.floor((t + half_frame) / step) + 1) * step


def _seek_frames(cap: Any, info: VideoInfo, step: float, max_samples: int) -> Iterator[tuple[int, float, Image.Image]]:
    import cv2

    for index in dict.fromkeys(round(k * step * info.fps) for k in range(max_samples)):  # in order, no repeats
        if index >= info.frame_count:
            return
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)  # FFmpeg seeks to the keyframe before and decodes up to the frame
        ok, bgr = cap.read()
        if not ok or bgr is None:
            return
        yield index, index / info.fps, _rgb(bgr)


def read_frame(path: str | os.PathLike, index: int) -> Image.Image:
    """One frame of a video as an RGB image (e.g. a sampled frame, to show or explain it)."""
    import cv2

    cap, info = _open(path)
    try:
        if index < 0 or (info.frame_count and index >= info.frame_count):
            raise VideoError(f"{path}: no frame {index} (the video has {info.frame_count})")
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = cap.read()
    finally:
        cap.release()
    if not ok or bgr is None:
        raise VideoError(f"{path}: frame {index} could not be decoded")
    return _rgb(bgr)


def predict_video(path: str | os.PathLike, model: LoadedModel | None = None, every_s: float = DEFAULT_EVERY_S,
                  detect: bool = True, tta: str = "none", max_samples: int = MAX_SAMPLES,
                  progress: Callable[[float], None] | None = None, small_faces: bool = False) -> VideoPrediction:
    """Faces and emotions of the frames sampled every `every_s` seconds; raises VideoError for an unusable file.
    small_faces: faces from about 3% of the frame's short side are searched for too (get_detector), more slowly.

    `progress`, where given, is called with the fraction done after each batch (by time, where the length is known)
    and with 1.0 at the end."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
    model = model if model is not None else default_model()
    info = video_info(path)
    step = sampling_interval(info, every_s, max_samples)
    detector = FollowingDetector(get_detector(small_faces), round(WHOLE_FRAME_EVERY_S / step)) if detect else None
    found: list[tuple[int, float, list[FacePrediction]]] = []  # (frame index, time, faces) per sampled frame
    batch: list[tuple[int, float, list[Any], np.ndarray, list[float]]] = []

    def flush() -> None:
        crops = [c for *_, c, _ in batch if len(c)]
        probs = predict_crops(np.concatenate(crops), model, tta) if crops else np.zeros((0, len(EMOTIONS)))
        offset = 0
        for index, t, faces, c, blocks in batch:
            found.append((index, t, _to_predictions(faces, c, probs[offset : offset + len(faces)], crop_margin(detect),
                                                    blocks)))
            offset += len(faces)
        batch.clear()
        if progress is not None and info.duration_s:
            progress(min(1.0, (found[-1][1] + step) / info.duration_s))

    for index, t, image in sample_frames(path, step, max_samples):
        faces, crops = face_crops(image, detect, detector)
        blocks = face_blockiness(image, faces, crop_margin(detect))  # on the frame's own pixels, as for a photo
        batch.append((index, t, faces, crops.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), blocks))
        if len(batch) == CHUNK:
            flush()
    if batch:
        flush()
    if progress is not None:
        progress(1.0)
    tracks = assign_tracks([[f.box for f in faces] for _, _, faces in found], [t for _, t, _ in found])
    frames = [FrameFaces(index, t, faces, ids) for (index, t, faces), ids in zip(found, tracks, strict=True)]
    return VideoPrediction(info, step, frames, truncated=len(frames) >= max_samples and info.duration_s is None)


def smooth(probs: np.ndarray, window: int) -> np.ndarray:
    """A timeline's probabilities (N, 7) averaged over a centred window of `window` samples (1: unchanged); rows of NaN
    (no face) are left out of every mean and stay NaN, so a gap stays a gap and each row still sums to 1."""
    if window < 1:
        raise ValueError(f"window must be at least 1 sample, not {window}")
    out, valid, half = np.full_like(probs, np.nan, dtype=np.float64), ~np.isnan(probs).any(axis=1), window // 2
    for i in np.flatnonzero(valid):
        lo, hi = max(0, i - half), min(len(probs), i + half + 1)
        out[i] = probs[lo:hi][valid[lo:hi]].mean(axis=0)
    return out


def format_video(path: str, result: VideoPrediction) -> str:
    """Human-readable lines for one video: what was sampled, the most frequent emotions (per tracked face where there
    are several), then one line per frame."""
    info, with_face = result.info, sum(bool(f.faces) for f in result.frames)
    length = f"{info.duration_s:.1f} s, " if info.duration_s else ""
    rate = f" at {info.fps:g} fps" if info.fps else ""
    lines = [f"{path}: video, {length}{info.width} x {info.height}{rate}; {len(result.frames)} frames sampled, one every "
             f"{result.every_s:g} s{' (stopped at the limit)' if result.truncated else ''}; a face in {with_face}"]
    counts = result.track_counts()
    shares = lambda track: ", ".join(f"{e} {s:.0%}" for e, s in result.summary(track).items())  # noqa: E731
    if len(counts) == 1:
        lines.append(f"  most often: {shares(0)}")
    for k, n in enumerate(counts if len(counts) > 1 else []):  # several tracked faces: one line each, most seen first
        lines.append(f"  face {k + 1}, in {counted(n, 'frame')}, most often: {shares(k)}")
    for f in result.frames:
        faces = [f"{'' if len(counts) == 1 else f'face {k + 1} '}{p.label} {p.confidence:.0%}"
                 for p, k in sorted(zip(f.faces, f.tracks, strict=True), key=lambda pk: pk[1])]
        lines.append(f"  {f.time_s:7.2f} s  " + ("; ".join(faces) if faces else "no face"))
    return "\n".join(lines)
