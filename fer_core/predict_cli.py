"""The fer-predict command line: photos, folders and videos in, a text or JSON line per input, CSV rows, annotated copies.

    python -m fer_core.predict [--checkpoint PATH] [--no-detect] [--small-faces] [--tta none|flip|tencrop|multiscale]
                               [--precision fp32|int8|onnx|onnx-int8] [--json] [--csv FILE] [--annotate OUTDIR]
                               [--every SECONDS] PATH...
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from PIL import Image

from .checkpoint import CheckpointError, LoadedModel, load_model
from .config import DEFAULT_CHECKPOINT, cli_main, cli_prog, set_threads, thread_count
from .faces import RELIABLE_FROM, has_small_faces
from .images import ImageError, load_image
from .predict import CSV_COLUMNS, FacePrediction, annotate, csv_rows, face_names, iter_predictions, tally
from .quantize import INFERENCE_PRECISIONS
from .transforms import TTA_MODES, TTA_VIEWS

if TYPE_CHECKING:
    from .video import VideoPrediction

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
NO_FACE_HINT = ("no face found; try --small-faces (faces from about 3% of the short side) or --no-detect (the whole image "
                "is one face)")


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


def format_faces(path: str, faces: list[FacePrediction]) -> str:
    """Human-readable lines for one file."""
    if not faces:
        return f"{path}: {NO_FACE_HINT}"
    lines = [f"{path}: 1 face" if len(faces) == 1 else f"{path}: {len(faces)} faces ({tally(faces)})"]
    for i, f in enumerate(faces, 1):
        others = sorted(((p, e) for e, p in f.probs.items() if e != f.label), reverse=True)[:2]
        rest = ", ".join(f"{e} {p:.0%}" for p, e in others)
        turned = f" turned {f.angle:+g} deg" if f.angle else " seen from the side" if f.side else ""
        doubt = f" [trust less: {', '.join(f.issues)}]" if f.issues else ""
        lines.append(f"  face {i} at {tuple(f.box)}{turned}: {f.label} {f.confidence:.0%} ({rest}){doubt}")
    return "\n".join(lines)


def _annotated_path(path: str, outdir: Path, used: set[str], suffix: str = ".jpg") -> Path:
    stem, n = Path(path).stem, 0
    while (name := f"{stem}{f'_{n}' if n else ''}.annotated{suffix}") in used:
        n += 1  # two inputs with the same name in different folders
    used.add(name)
    outdir.mkdir(parents=True, exist_ok=True)
    return outdir / name


class _Photos:
    """Opens each photo once for the model and remembers what the rest of the run needs: its size (the small-face
    hint) and, where --annotate draws on it later, the picture itself if the input cannot be read twice (a pipe such
    as /dev/fd/N or a FIFO); a regular file is read again then, so a long batch does not hold its pictures."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self._sizes: dict[str, list[tuple[int, int]]] = {}  # a list per path: a path may be given twice
        self._kept: dict[str, Image.Image] = {}

    def load(self, path: str) -> Image.Image:
        picture = load_image(path)
        self._sizes.setdefault(path, []).append(picture.size)
        if self.keep and not Path(path).is_file():
            self._kept[path] = picture
        return picture

    def size(self, path: str) -> tuple[int, int] | None:
        """The size of the picture `load` opened for this path's next result (None if it could not be opened)."""
        sizes = self._sizes.get(path)
        return sizes.pop(0) if sizes else None

    def again(self, path: str) -> Image.Image:
        """The picture `load` opened, for drawing on."""
        kept = self._kept.pop(path, None)
        return kept if kept is not None else load_image(path)


def _save_annotated(picture: Image.Image, path: str, faces: list[FacePrediction], outdir: Path, used: set[str]) -> Path:
    out = _annotated_path(path, outdir, used)
    annotate(picture, faces, face_names(faces)).save(out, quality=90)
    return out


def _results(files: list[str], model: LoadedModel, args: argparse.Namespace, photos: _Photos
             ) -> Iterator[tuple[str, list[FacePrediction] | VideoPrediction | str]]:
    """Results in input order: the images batched through iter_predictions (opened by `photos`), each video on its own."""
    from .video import VideoError, is_video, predict_video

    images = iter_predictions([f for f in files if not is_video(f)], model, detect=not args.no_detect, tta=args.tta,
                              small_faces=args.small_faces, load=photos.load)
    for path in files:
        if not is_video(path):
            yield next(images)
            continue
        try:
            yield path, predict_video(path, model, args.every, detect=not args.no_detect, tta=args.tta,
                                      small_faces=args.small_faces)
        except VideoError as e:
            yield path, str(e).removeprefix(f"{path}: ")


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
                        "from about 6-10%% (16%% turned), and faces seen from the side even where frontal ones are found "
                        "(by default only where none is): group photos; 3-5x slower, more false faces on textured surfaces")
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
    p.add_argument("--threads", type=thread_count, default=0, help="torch CPU threads (0 = all cores)")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if not args.every > 0:
        print(f"error: --every must be a positive number of seconds, not {args.every}", file=sys.stderr)
        return 2
    if args.annotate and Path(args.annotate).exists() and not Path(args.annotate).is_dir():
        print(f"error: --annotate {args.annotate} is a file; give the folder for the annotated copies (made if missing)",
              file=sys.stderr)
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
    from .video import VideoError, VideoPrediction, format_video
    from .video_out import annotate_video

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
    faces = flagged = 0  # faces in photos, and those with a quality issue (fer_core.quality)
    issues: Counter[str] = Counter()
    photos = _Photos(keep=bool(args.annotate))
    for path, result in _results(files, model, args, photos):
        size = photos.size(path)  # (None for a video, or a photo that could not be opened)
        if isinstance(result, VideoPrediction) and args.annotate:
            try:
                annotate_video(path, result, _annotated_path(path, Path(args.annotate), used, ".mp4"))
            except (VideoError, OSError) as e:
                result = f"cannot write the annotated video: {e}"
        elif isinstance(result, list) and args.annotate:
            try:
                _save_annotated(photos.again(path), path, result, Path(args.annotate), used)
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
        if result and size and not (args.small_faces or args.no_detect):
            small += has_small_faces([f.box for f in result], size)
        faces, flagged = faces + len(result), flagged + sum(bool(f.issues) for f in result)
        issues.update(issue for f in result for issue in f.issues)
    if small:
        print(f"{small} photo{'s have' if small > 1 else ' has'} faces under {RELIABLE_FROM:.0%} of the short side, where "
              "the default search misses many: --small-faces also looks for faces from about 3%", file=sys.stderr)
    if flagged:
        kinds = ", ".join(f"{k} {n}" for k, n in issues.most_common())
        print(f"{flagged} of {faces} faces in photos deserve less trust ({kinds}): few training faces were like them "
              "(fer_core.quality)", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(files) + len(problems)} inputs failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
