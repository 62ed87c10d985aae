"""Emotions of the faces in real photos: per-face predictions, batching over many files, annotated pictures and the CLI
(which also takes videos, through fer_core.video).

    python -m fer_core.predict [--checkpoint PATH] [--no-detect] [--tta none|flip|tencrop|multiscale]
                               [--precision fp32|int8|onnx|onnx-int8] [--json] [--csv FILE] [--annotate OUTDIR]
                               [--every SECONDS] PATH...
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .checkpoint import CheckpointError, LoadedModel, load_model
from .config import DEFAULT_CHECKPOINT, EMOTIONS, IMAGE_SIZE, cli_prog, set_threads
from .evaluate import predict_probs
from .faces import MARGIN, RELIABLE_FROM, Box, Face, FaceDetector, crop_face, find_faces, get_detector, has_small_faces
from .images import ImageError, ImageSource, load_image
from .quantize import INFERENCE_PRECISIONS
from .transforms import TTA_MODES, TTA_VIEWS

if TYPE_CHECKING:
    from .video import VideoPrediction

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
NO_FACE_HINT = ("no face found; try --small-faces (faces from about 3% of the short side) or --no-detect (the whole image "
                "is one face)")
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

    def to_dict(self) -> dict[str, Any]:
        return {"box": [int(v) for v in self.box], "angle": self.angle, "label": self.label, "probs": dict(self.probs),
                "confidence": self.confidence}


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


def _to_predictions(faces: list[Face], crops: np.ndarray, probs: np.ndarray, margin: float) -> list[FacePrediction]:
    out = []
    for (box, angle), crop, p in zip(faces, crops, probs, strict=True):
        k = int(p.argmax())
        out.append(FacePrediction(box=(int(box[0]), int(box[1]), int(box[2]), int(box[3])), label=EMOTIONS[k],
                                  probs={e: float(v) for e, v in zip(EMOTIONS, p, strict=True)},
                                  confidence=float(p[k]), crop=crop, margin=margin, angle=float(angle)))
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
    return _to_predictions(boxes, crops, predict_crops(crops, model, tta), crop_margin(detect))


def iter_predictions(paths: Iterable[str | os.PathLike], model: LoadedModel, detect: bool = True, tta: str = "none",
                     chunk_size: int = 32, small_faces: bool = False) -> Iterator[tuple[str, list[FacePrediction] | str]]:
    """(path, faces) or (path, error) per file, in order; the faces of `chunk_size` files go through the model together."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
    names = [str(p) for p in paths]
    for start in range(0, len(names), chunk_size):
        found: list[tuple[str, list[Face], np.ndarray] | tuple[str, str]] = []
        for path in names[start : start + chunk_size]:
            try:
                found.append((path, *face_crops(load_image(path), detect, small_faces=small_faces)))
            except ImageError as e:
                found.append((path, str(e).removeprefix(f"{path}: ")))  # the caller already has the path
            except Exception as e:  # noqa: BLE001 - one unexpected failure must not stop the other files
                found.append((path, f"{type(e).__name__}: {e}"))
        crops = [item[2] for item in found if len(item) == 3]
        probs = predict_crops(np.concatenate(crops), model, tta) if crops else np.zeros((0, len(EMOTIONS)), np.float32)
        offset = 0
        for item in found:
            if len(item) == 2:
                yield item
                continue
            path, faces, face_crops_ = item
            yield path, _to_predictions(faces, face_crops_, probs[offset : offset + len(faces)], crop_margin(detect))
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


# ---------------------------------------------------------------------------------------------- CLI


def expand_paths(paths: Iterable[str | os.PathLike]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files as given plus the images inside folders (recursively, sorted); and (folder, error) for empty folders."""
    files, problems = [], []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            files.extend(found)
            if not found:
                problems.append((str(p), f"no images found in this folder (looked for {', '.join(IMAGE_SUFFIXES)})"))
        else:
            files.append(str(p))  # a named file is always tried, whatever its extension
    return files, problems


def tally(faces: Sequence[FacePrediction]) -> str:
    """How many faces show each emotion, in the dataset's order ("angry 12, disgust 7"); "" for no face."""
    return ", ".join(f"{e} {n}" for e in EMOTIONS if (n := sum(f.label == e for f in faces)))


def format_faces(path: str, faces: list[FacePrediction]) -> str:
    """Human-readable lines for one file."""
    if not faces:
        return f"{path}: {NO_FACE_HINT}"
    lines = [f"{path}: 1 face" if len(faces) == 1 else f"{path}: {len(faces)} faces ({tally(faces)})"]
    for i, f in enumerate(faces, 1):
        others = sorted(((p, e) for e, p in f.probs.items() if e != f.label), reverse=True)[:2]
        rest = ", ".join(f"{e} {p:.0%}" for p, e in others)
        turned = f" turned {f.angle:+g} deg" if f.angle else ""
        lines.append(f"  face {i} at {tuple(f.box)}{turned}: {f.label} {f.confidence:.0%} ({rest})")
    return "\n".join(lines)


def _annotated_path(path: str, outdir: Path, used: set[str], suffix: str = ".jpg") -> Path:
    stem, n = Path(path).stem, 0
    while (name := f"{stem}{f'_{n}' if n else ''}.annotated{suffix}") in used:
        n += 1  # two inputs with the same name in different folders
    used.add(name)
    outdir.mkdir(parents=True, exist_ok=True)
    return outdir / name


def _save_annotated(path: str, faces: list[FacePrediction], outdir: Path, used: set[str]) -> Path:
    out = _annotated_path(path, outdir, used)
    annotate(load_image(path), faces, face_names(faces)).save(out, quality=90)
    return out


def _results(files: list[str], model: LoadedModel, args: argparse.Namespace
             ) -> Iterator[tuple[str, list[FacePrediction] | VideoPrediction | str]]:
    """Results in input order: the images batched through iter_predictions, each video on its own."""
    from .video import VideoError, is_video, predict_video

    images = iter_predictions([f for f in files if not is_video(f)], model, detect=not args.no_detect, tta=args.tta,
                              small_faces=args.small_faces)
    for path in files:
        if not is_video(path):
            yield next(images)
            continue
        try:
            yield path, predict_video(path, model, args.every, detect=not args.no_detect, tta=args.tta,
                                      small_faces=args.small_faces)
        except VideoError as e:
            yield path, str(e).removeprefix(f"{path}: ")


CSV_COLUMNS = ["path", "frame", "time_s", "face", "x", "y", "w", "h", "angle", "label", "confidence", *EMOTIONS, "error"]


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
        rows += [{**where, "face": k + 1, **dict(zip("xywh", p.box, strict=True)), "angle": p.angle, "label": p.label,
                  "confidence": round(p.confidence, 4), **{e: round(v, 4) for e, v in p.probs.items()}} for k, p in faces]
        rows += [] if faces else [where]
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=cli_prog("fer_core.predict"),
                                description="Find the faces in photos and videos and predict their emotions.")
    from .video import DEFAULT_EVERY_S, VIDEO_SUFFIXES

    p.add_argument("paths", nargs="+", metavar="PATH",
                   help=f"image files or folders (searched recursively for images), or videos ({', '.join(VIDEO_SUFFIXES)})")
    p.add_argument("--checkpoint", default=None, help=f"model checkpoint (default: {DEFAULT_CHECKPOINT})")
    p.add_argument("--no-detect", action="store_true", help="classify each whole image as one face")
    p.add_argument("--small-faces", action="store_true",
                   help="also look for faces from about 3%% of the short side (turned ones from about 6%%), not only "
                        "from about 6-10%% (16%% turned): group photos; 3-5x slower, more false faces on textured surfaces")
    p.add_argument("--tta", default="none", choices=TTA_MODES,
                   help="test-time augmentation: " + "; ".join(f"{k}: {v}" for k, v in TTA_VIEWS.items()))
    p.add_argument("--precision", default="fp32", choices=INFERENCE_PRECISIONS,
                   help="fp32 (exact) or int8 (quantized copy: ~3x faster per face, ~99%% the same answers); "
                        "onnx / onnx-int8: the same in ONNX Runtime (2-3x faster again on an AVX2 CPU)")
    p.add_argument("--json", action="store_true", help="print one JSON line per input file")
    p.add_argument("--annotate", metavar="OUTDIR", default=None,
                   help="write annotated copies of the images (.jpg) and videos (.mp4) here")
    p.add_argument("--csv", metavar="FILE", default=None,
                   help="also write every face as a CSV row (file, frame and time for videos, face, box, angle, label, "
                        "probabilities; errors too), as each input is done")
    p.add_argument("--every", type=float, default=DEFAULT_EVERY_S, metavar="SECONDS",
                   help="videos: classify the faces of one frame every SECONDS (default %(default)s; long videos are "
                        "sampled more sparsely, at most 600 frames)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = all cores)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if not args.every > 0:
        print(f"error: --every must be a positive number of seconds, not {args.every}", file=sys.stderr)
        return 2
    set_threads(args.threads)
    try:
        model = load_model(args.checkpoint, args.precision)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        table = open(args.csv, "w", newline="") if args.csv else None  # noqa: SIM115 - closed below
    except OSError as e:
        print(f"error: cannot write {args.csv}: {e.strerror or e}", file=sys.stderr)
        return 2
    try:
        return _run(args, model, table)
    finally:
        if table:
            table.close()


def _run(args: argparse.Namespace, model: LoadedModel, table: TextIO | None) -> int:
    """Every input in order: a text or JSON line on stdout, annotated copies, CSV rows (where `table` is open)."""
    from .video import VideoError, VideoPrediction, annotate_video, format_video

    writer = csv.DictWriter(table, CSV_COLUMNS) if table else None
    if writer:
        writer.writeheader()
    files, problems = expand_paths(args.paths)
    failed = [path for path, _ in problems]
    for path, error in problems:
        print(json.dumps({"path": path, "error": error}) if args.json else f"{path}: error: {error}", flush=True)
        if writer:
            writer.writerows(csv_rows(path, error))
    used: set[str] = set()
    small = 0  # photos with a face too small for the default search to find its like reliably
    for path, result in _results(files, model, args):
        if isinstance(result, VideoPrediction) and args.annotate:
            try:
                annotate_video(path, result, _annotated_path(path, Path(args.annotate), used, ".mp4"))
            except (VideoError, OSError) as e:
                result = f"cannot write the annotated video: {e}"
        elif isinstance(result, list) and args.annotate:
            try:
                _save_annotated(path, result, Path(args.annotate), used)
            except (ImageError, OSError) as e:
                result = f"cannot write the annotated image: {e}"
        if writer and table:
            writer.writerows(csv_rows(path, result))
            table.flush()  # a long batch leaves its rows so far if stopped
        if isinstance(result, VideoPrediction):
            print(json.dumps({"path": path, **result.to_dict()}) if args.json else format_video(path, result), flush=True)
            continue
        if isinstance(result, str):
            failed.append(path)
            print(json.dumps({"path": path, "error": result}) if args.json else f"{path}: error: {result}", flush=True)
            continue
        print(json.dumps({"path": path, "faces": [f.to_dict() for f in result]}) if args.json else format_faces(path, result),
              flush=True)
        if args.json and not result:
            print(f"{path}: {NO_FACE_HINT}", file=sys.stderr)
        if result and not (args.small_faces or args.no_detect):
            try:
                with Image.open(path) as picture:  # the header only
                    small += has_small_faces([f.box for f in result], picture.size)
            except OSError:  # read once already: a file changed meanwhile is no reason to fail here
                pass
    if small:
        print(f"{small} photo{'s have' if small > 1 else ' has'} faces under {RELIABLE_FROM:.0%} of the short side, where "
              "the default search misses many: --small-faces also looks for faces from about 3%", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(files) + len(problems)} inputs failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
