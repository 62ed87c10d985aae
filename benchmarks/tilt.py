"""Faces tilted in the picture's plane: how many the detector finds and how many the whole photo pipeline (detect, crop,
classify) gets right: the frontal search upright only, turned by -30, 0 and +30 degrees, and the default (those, then
side views where no face was found).

    python benchmarks/tilt.py [--checkpoint PATH] [--data CSV] [--split PublicTest] [--n 600] [--tilts 0 15 25 35 45]

Each scene is a real FER2013 face enlarged to 144 px in a 320 px picture (borders replicated, so no second face), turned
by the tilt about its centre. A face counts as found when a box's centre lies within a quarter of the face's side of
the true centre and its side is 0.6-1.6 times the face's; faces not found count as wrong in "accuracy". Prints one row
per detector and tilt, with the mean detection time per scene (2 threads; other load slows it).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from timing import add_split_args, split_faces

from fer_core.checkpoint import load_model
from fer_core.config import REPO_ROOT, set_threads
from fer_core.faces import HaarDetector
from fer_core.predict import face_crops, predict_crops

SCENE, FACE = 320, 144
sys.path.insert(0, str(REPO_ROOT / "tests"))
from photos import turned_fer_scene  # noqa: E402 - the tests' real-photo helpers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_split_args(p)
    p.add_argument("--n", type=int, default=600, help="faces drawn at random (seed 0) from the split")
    p.add_argument("--tilts", type=float, nargs="+", default=[0, 15, 25, 35, 45])
    args = p.parse_args()
    set_threads(2)
    x, y = split_faces(args)
    pick = np.random.default_rng(0).choice(len(y), min(args.n, len(y)), replace=False)
    faces, labels = x[pick], y[pick]
    model = load_model(args.checkpoint)
    print(f"{len(pick)} {args.split} faces; {model.path}")
    print(f"{'search':>18} {'tilt':>5} {'found':>7} {'accuracy':>9} {'of found':>9} {'angle err':>10} {'ms/scene':>9}")
    for name, detector in (("upright", HaarDetector(tilts=(), profile_face=0)),
                           ("-30, 0, +30", HaarDetector(profile_face=0)), ("default", HaarDetector())):
        for tilt in args.tilts:
            crops, found, errors, seconds = [], [], [], 0.0
            for face in faces:
                image = turned_fer_scene(face, tilt, SCENE, FACE)
                start = time.perf_counter()
                boxes, cut = face_crops(image, True, detector)
                seconds += time.perf_counter() - start
                hit = next((k for k, (b, *_) in enumerate(boxes) if 0.6 * FACE < max(b[2], b[3]) < 1.6 * FACE
                            and np.hypot(b[0] + b[2] / 2 - SCENE / 2, b[1] + b[3] / 2 - SCENE / 2) < FACE / 4), None)
                found.append(hit is not None)
                crops.append(cut[hit] if hit is not None else np.zeros_like(face))
                if hit is not None:
                    errors.append(abs(boxes[hit].angle - tilt))
            pred = predict_crops(np.stack(crops), model).argmax(1)
            ok = np.array(found)
            right = ok & (pred == labels)
            err = f"{np.mean(errors):.1f}" if errors else "-"
            print(f"{name:>18} {tilt:5g} {ok.mean():7.1%} {right.mean():9.1%} {right.sum() / max(1, ok.sum()):9.1%} "
                  f"{err:>10} {1000 * seconds / len(faces):9.1f}", flush=True)


if __name__ == "__main__":
    main()
