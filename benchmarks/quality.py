"""Face-quality flags (`fer_core.quality`) on FER2013: the Training percentiles its limits come from, how often each
corruption of `fer_core.perturb` is flagged, the shipped models' PublicTest accuracy on flagged and unflagged faces
(from their committed reports' per-image answers), and what JPEG costs a face by its size in the photo (PublicTest faces
enlarged, compressed, flagged or not at that size, shrunk back to 48 px for the default model): the "compressed" limit's
growth with size.

    python benchmarks/quality.py [--data CSV] [--jpeg-faces 1000]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections import Counter

import numpy as np
import torch
from PIL import Image

from fer_core import quality
from fer_core.checkpoint import load_model
from fer_core.config import DEFAULT_CHECKPOINT, DataNotFoundError
from fer_core.data import load_dataset
from fer_core.perturb import PERTURBATIONS, perturb
from fer_core.predict import predict_crops

FLAGS = ("blurry", "noisy", "dark", "low contrast", "compressed")


def jpeg_copy(image: Image.Image, quality: int) -> Image.Image:
    """The image as after saving it as JPEG at `quality` and opening it again, in greyscale."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("L")


def jpeg_by_size(x: torch.Tensor, y: torch.Tensor, sides: tuple[int, ...] = (48, 64, 96, 192),
                 qualities: tuple[int, ...] = (5, 10, 20, 30, 50)) -> None:
    """Each face enlarged to `side` px (bicubic), saved as JPEG, flagged or not there, shrunk back to 48 (bilinear).
    Also flagged or not in a larger photo (the enlarged face tiled over at least 256 px) saved as JPEG and then cropped
    3 px from the left and 5 from the top: its blocks off the corner."""
    model = load_model()
    base = float((predict_crops(x.numpy(), model).argmax(1) == y.numpy()).mean())
    print(f"\nJPEG by face size ({len(x)} PublicTest faces, {DEFAULT_CHECKPOINT.name}, clean {base:.1%}): accuracy drop in "
          "points / share flagged compressed / flagged in a larger photo cropped 3, 5 px after saving"
          "\n| side (limit) | " + " | ".join(f"q{q}" for q in qualities) + " |\n|---|"
          + "---|" * len(qualities))
    for side in sides:
        cells = []
        for q in qualities:
            crops, flagged, shifted = [], 0, 0
            for face in x.numpy():
                big = Image.fromarray(face).resize((side, side), Image.BICUBIC)
                photo = jpeg_copy(big, q)
                flagged += quality.source_blockiness(photo, [(0, 0, side)])[0] > quality.blockiness_limit(side)
                n = max(2, -(-256 // side))
                cut = jpeg_copy(Image.fromarray(np.tile(np.asarray(big), (n, n))), q).crop((3, 5, n * side, n * side))
                shifted += quality.source_blockiness(cut, [(side - 3, side - 5, side)])[0] > quality.blockiness_limit(side)
                crops.append(np.asarray(photo.resize((48, 48), Image.BILINEAR)))
            acc = float((predict_crops(np.stack(crops), model).argmax(1) == y.numpy()).mean())
            cells.append(f"{100 * (acc - base):+.1f} / {flagged / len(x):.0%} / {shifted / len(x):.0%}")
        print(f"| {side} ({quality.blockiness_limit(side):.2f}) | " + " | ".join(cells) + " |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None)
    p.add_argument("--jpeg-faces", type=int, default=1000, help="PublicTest faces for the JPEG-by-size table (0: skip it)")
    args = p.parse_args()
    try:
        data = load_dataset(args.data)
    except DataNotFoundError as e:
        print(e, file=sys.stderr)
        return 2
    train, _ = data.split("Training")
    m = quality.measure(train)
    print(f"Training ({len(train):,} faces): sharpness p2 {np.percentile(m['sharpness'], 2):.3f} "
          f"(limit {quality.SHARPNESS_MIN}), noise p98 {np.percentile(m['noise'], 98):.2f} (limit {quality.NOISE_MAX}), "
          f"brightness p1 {np.percentile(m['brightness'], 1):.1f} (limit {quality.BRIGHTNESS_MIN}), "
          f"contrast p1 {np.percentile(m['contrast'], 1):.1f} (limit {quality.CONTRAST_MIN}), "
          f"blockiness p99 {np.percentile(m['blockiness'], 99):.3f} (limit {quality.BLOCKINESS_MAX} at 48 px)")
    x, y = data.split("PublicTest")
    print(f"\nPublicTest ({len(x):,} faces): share flagged under each corruption\n"
          "| corruption | any flag | " + " | ".join(FLAGS) + " |\n|---|---|" + "---|" * len(FLAGS))
    for name in PERTURBATIONS:
        q = quality.assess(x if name == "none" else perturb(x, name))
        c = Counter(i for r in q for i in r.issues)
        print(f"| {name} | {np.mean([bool(r.issues) for r in q]):.1%} | "
              + " | ".join(f"{c[k] / len(q):.1%}" for k in FLAGS) + " |")
    issues = [r.issues for r in quality.assess(x)]
    print("\nClean PublicTest, the shipped models' centre-crop answers (committed reports): accuracy on flagged / other faces")
    for ckpt in sorted(DEFAULT_CHECKPOINT.parent.glob("*.pt")):
        report = json.loads(ckpt.with_suffix(".report.json").read_text())
        right = np.array(report["predictions"]["y_pred"]) == y.numpy()
        parts = []
        for flag in ("any", *FLAGS):
            hit = np.array([bool(i) if flag == "any" else flag in i for i in issues])
            parts.append(f"{flag} {right[hit].mean():.1%} (n={hit.sum()}) / {right[~hit].mean():.1%}")
        print(f"{ckpt.name}: " + "; ".join(parts))
    if args.jpeg_faces:
        jpeg_by_size(x[: args.jpeg_faces], y[: args.jpeg_faces])
    return 0


if __name__ == "__main__":
    sys.exit(main())
