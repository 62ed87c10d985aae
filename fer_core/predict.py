"""Emotions of the faces in real photos: per-face predictions, batching over many files, annotated pictures, CSV rows.

The command line (`python -m fer_core.predict`, `fer-predict`) lives in fer_core.predict_cli.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .checkpoint import LoadedModel, load_model
from .config import DEFAULT_CHECKPOINT, EMOTIONS, IMAGE_SIZE
from .crops import MARGIN, crop_face, face_square
from .evaluate import predict_probs
from .faces import Box, Face, FaceDetector, find_faces, get_detector
from .images import ImageError, ImageSource, load_image
from .quality import assess, source_blockiness
from .transforms import TTA_MODES

if TYPE_CHECKING:
    from .video import VideoPrediction

COLOURS = {"angry": (230, 57, 70), "disgust": (106, 153, 78), "fear": (157, 78, 221), "happy": (255, 190, 11),
           "sad": (58, 134, 255), "surprise": (255, 112, 166), "neutral": (200, 200, 200)}


@dataclass
class FacePrediction:
    """One face: where it is, what the model says, and the 48x48 crop it saw."""

    box: Box  # (x, y, w, h) in the original image's pixels; for a turned face, its size and centre as if upright
    label: str  # the most probable emotion
    probs: dict[str, float]  # softmax over EMOTIONS, in that order, summing to 1
    confidence: float  # probs[label]
    crop: np.ndarray = field(repr=False)  # (48, 48) uint8 greyscale, as given to the model
    margin: float = MARGIN  # the margin the crop was cut with (0 for a whole image): overlay() needs it to map back
    angle: float = 0.0  # degrees counter-clockwise the face is turned in the picture (Face.angle); the crop is upright
    side: bool = False  # seen from the side (Face.side): the model saw few such faces in training
    issues: tuple[str, ...] = ()  # quality.ISSUES the crop raises (blurry, noisy, dark, low contrast, small): trust less

    def to_dict(self) -> dict[str, Any]:
        return {"box": [int(v) for v in self.box], "angle": self.angle, "side": self.side, "issues": list(self.issues),
                "label": self.label, "probs": dict(self.probs), "confidence": self.confidence}


def predict_crops(crops: np.ndarray | torch.Tensor, model: LoadedModel, tta: str = "none") -> np.ndarray:
    """Softmax probabilities (B, 7) for uint8 face crops (B, 48, 48) (or one (48, 48)), batched, without gradients."""
    x = torch.as_tensor(np.ascontiguousarray(crops)) if isinstance(crops, np.ndarray) else crops
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or tuple(x.shape[-2:]) != (IMAGE_SIZE, IMAGE_SIZE) or x.dtype != torch.uint8:
        raise ValueError(f"expected uint8 crops of shape (B, {IMAGE_SIZE}, {IMAGE_SIZE}), got {x.dtype} {tuple(x.shape)}")
    return predict_probs(model, x, tta)  # the evaluation path: same normalisation, centre crop and TTA views


def face_crops(image: Image.Image, detect: bool = True, detector: FaceDetector | None = None,
               small_faces: bool = False) -> tuple[list[Face], np.ndarray]:
    """Faces and their (N, 48, 48) uint8 upright crops in an image; detect=False takes the whole image as one face.
    Without a `detector`, get_detector(small_faces) searches (small_faces: from about 3% of the short side, slower)."""
    faces = find_faces(image, detector or get_detector(small_faces)) if detect else [Face((0, 0, *image.size))]
    crops = [crop_face(image, f.box, crop_margin(detect), f.angle) for f in faces]
    return faces, np.stack(crops) if crops else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)


def crop_margin(detect: bool) -> float:
    """The margin face crops are cut with: MARGIN around detected faces, none for a whole image (the user framed it)."""
    return MARGIN if detect else 0.0


def face_blockiness(image: Image.Image, faces: list[Face], margin: float) -> list[float]:
    """JPEG blockiness of each face's square in the photo itself, on its block grid (quality.source_blockiness)."""
    return source_blockiness(image, [face_square(f.box, margin) for f in faces])


def _to_predictions(faces: list[Face], crops: np.ndarray, probs: np.ndarray, margin: float,
                    blockiness: list[float] | None = None) -> list[FacePrediction]:
    out = []
    quality = assess(crops, [face_square(f.box, margin)[2] for f in faces], blockiness) if faces else []
    for (box, angle, side), crop, p, q in zip(faces, crops, probs, quality, strict=True):
        k = int(p.argmax())
        out.append(FacePrediction(box=(int(box[0]), int(box[1]), int(box[2]), int(box[3])), label=EMOTIONS[k],
                                  probs={e: float(v) for e, v in zip(EMOTIONS, p, strict=True)},
                                  confidence=float(p[k]), crop=crop, margin=margin, angle=float(angle), side=bool(side),
                                  issues=q.issues))
    return out


@lru_cache(maxsize=2)
def _cached_model(path: str, mtime: float) -> LoadedModel:
    return load_model(path)


def default_model() -> LoadedModel:
    """The shipped checkpoint, loaded once (reloaded when the file changes)."""
    return _cached_model(str(DEFAULT_CHECKPOINT), DEFAULT_CHECKPOINT.stat().st_mtime if DEFAULT_CHECKPOINT.exists() else 0.0)


def predict_image(source: ImageSource, model: LoadedModel | None = None, detect: bool = True, tta: str = "none",
                  detector: FaceDetector | None = None, small_faces: bool = False) -> list[FacePrediction]:
    """One prediction per face found (largest first); [] when none is found. Bad input raises ImageError."""
    model = model if model is not None else default_model()
    image = load_image(source)
    boxes, crops = face_crops(image, detect, detector, small_faces)
    if not boxes:
        return []
    margin = crop_margin(detect)
    return _to_predictions(boxes, crops, predict_crops(crops, model, tta), margin, face_blockiness(image, boxes, margin))


def iter_predictions(paths: Iterable[str | os.PathLike], model: LoadedModel, detect: bool = True, tta: str = "none",
                     chunk_size: int = 32, small_faces: bool = False, load: Callable[[str], Image.Image] = load_image
                     ) -> Iterator[tuple[str, list[FacePrediction] | str]]:
    """(path, faces) or (path, error) per file, in order; the faces of `chunk_size` files go through the model together.
    `load` opens each path (load_image, or a reader that also keeps what the caller needs again: see predict_cli)."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
    names = [str(p) for p in paths]
    for start in range(0, len(names), chunk_size):
        found: list[tuple[str, list[Face], np.ndarray, list[float]] | tuple[str, str]] = []
        for path in names[start : start + chunk_size]:
            try:
                image = load(path)
                faces, cut = face_crops(image, detect, small_faces=small_faces)
                found.append((path, faces, cut, face_blockiness(image, faces, crop_margin(detect))))
            except ImageError as e:
                found.append((path, str(e).removeprefix(f"{path}: ")))  # the caller already has the path
            except Exception as e:  # noqa: BLE001 - one unexpected failure must not stop the other files
                found.append((path, f"{type(e).__name__}: {e}"))
        crops = [item[2] for item in found if len(item) == 4]
        probs = predict_crops(np.concatenate(crops), model, tta) if crops else np.zeros((0, len(EMOTIONS)), np.float32)
        offset = 0
        for item in found:
            if len(item) == 2:
                yield item
                continue
            path, faces, face_crops_, blocks = item
            yield path, _to_predictions(faces, face_crops_, probs[offset : offset + len(faces)], crop_margin(detect), blocks)
            offset += len(faces)


def predict_files(paths: Iterable[str | os.PathLike], model: LoadedModel | None = None, detect: bool = True,
                  tta: str = "none", small_faces: bool = False) -> list[dict[str, Any]]:
    """One JSON-ready dict per file: {"path", "faces": [...]} or {"path", "error"}; a bad file never stops the others."""
    return [{"path": path, "error": result} if isinstance(result, str) else
            {"path": path, "faces": [p.to_dict() for p in result]}
            for path, result in iter_predictions(paths, model if model is not None else default_model(), detect, tta,
                                                 small_faces=small_faces)]


def face_names(faces: Sequence[object]) -> list[str] | None:
    """The faces' numbers (1, 2...) to draw beside their labels where there are several, as the text output names them."""
    return [str(k + 1) for k in range(len(faces))] if len(faces) > 1 else None


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def turned_corners(box: Box, angle: float) -> list[tuple[float, float]]:
    """The corners of a box turned by `angle` degrees counter-clockwise about its centre (as FacePrediction.angle)."""
    x, y, w, h = box
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    cx, cy = x + w / 2, y + h / 2
    corners = ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))
    return [(cx + dx * c + dy * s, cy - dx * s + dy * c) for dx, dy in corners]


def annotate(image: Image.Image, predictions: list[FacePrediction], names: Sequence[str] | None = None) -> Image.Image:
    """A copy of the image with each face's box, label and confidence drawn on it, after its name where `names` are
    given (face_names: its number, where there are several). Labels are no wider than about twice their face."""
    out = image.convert("RGB")  # always a new image: the caller's stays untouched
    draw = ImageDraw.Draw(out)
    long_side = max(out.size)
    width = max(2, round(long_side / 300))
    for k, p in enumerate(predictions):
        font = _font(max(11, min(round(long_side / 45), round(max(p.box[2:]) / 4))))  # small faces: smaller labels
        x, y, w, h = p.box
        colour = COLOURS.get(p.label, (255, 255, 255))
        if p.angle:  # the face's square, turned with it; the label goes above the corners' bounds
            corners = turned_corners(p.box, p.angle)
            draw.polygon(corners, outline=colour, width=width)
            xs, ys = [c[0] for c in corners], [c[1] for c in corners]
            x, y = math.floor(min(xs)), math.floor(min(ys))
            w, h = math.ceil(max(xs)) - x, math.ceil(max(ys)) - y
        else:
            draw.rectangle((x, y, x + w - 1, y + h - 1), outline=colour, width=width)
        text = f"{names[k] + ': ' if names else ''}{p.label} {p.confidence:.0%}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        pad = max(2, width)
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        ty = y - th if y - th >= 0 else min(y + h, out.size[1] - th)  # above the box, or below it at the top edge
        draw.rectangle((x, ty, x + tw, ty + th), fill=colour)
        draw.text((x + pad - left, ty + pad - top), text, fill=(0, 0, 0), font=font)
    return out


def counted(n: int, noun: str) -> str:
    """ "1 face", "3 faces": a count with its noun (regular plurals)."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def tally(faces: Sequence[FacePrediction]) -> str:
    """How many faces show each emotion, in the dataset's order ("angry 12, disgust 7"); "" for no face."""
    return ", ".join(f"{e} {n}" for e in EMOTIONS if (n := sum(f.label == e for f in faces)))


CSV_COLUMNS = ["path", "frame", "time_s", "face", "x", "y", "w", "h", "angle", "side", "issues", "label", "confidence",
               *EMOTIONS, "error"]


def csv_rows(path: str, result: list[FacePrediction] | VideoPrediction | str) -> list[dict[str, Any]]:
    """CSV_COLUMNS rows for one input: a row per face (per face of each sampled frame for a video, `face` being its
    track), a row with no face where there is none, or a row with the error."""
    if isinstance(result, str):
        return [{"path": path, "error": result}]
    frames = [(None, None, list(enumerate(result)))] if isinstance(result, list) else [
        (f.index, round(f.time_s, 3), list(zip(f.tracks, f.faces, strict=True))) for f in result.frames]
    rows: list[dict[str, Any]] = []
    for frame, t, faces in frames:
        where = {"path": path, "frame": frame, "time_s": t}
        rows += [{**where, "face": k + 1, **dict(zip("xywh", p.box, strict=True)), "angle": p.angle, "side": int(p.side),
                  "issues": ";".join(p.issues), "label": p.label, "confidence": round(p.confidence, 4),
                  **{e: round(v, 4) for e, v in p.probs.items()}}
                 for k, p in faces]
        rows += [] if faces else [where]
    return rows


def main(argv: list[str] | None = None) -> int:
    """The fer-predict command line (fer_core.predict_cli), also run as `python -m fer_core.predict`."""
    from .predict_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
