"""Small faces in group photos: how many the default detector and the small-faces one (get_detector(small_faces=True))
find, how many the whole photo pipeline (detect, crop, classify) gets right, the false faces, and the time per photo.

    python benchmarks/group.py [--checkpoint PATH] [--data CSV] [--split PublicTest] [--scenes 3]
                               [--fractions 0.02 0.03 0.04 0.06 0.08 0.12 0.16] [--tilts 0 25] [--size 4000 3000]

Each scene is a 12-megapixel "group photo" (tests/photos.py: group_scene): up to 40 real FER2013 faces, enlarged to a
fraction of the short side, in rows over scikit-image's coffee photo (no face), upright or turned by +tilt and -tilt
degrees in turn. A face counts as found when a box's
centre lies within a quarter of its side and the box is 0.6-1.6 times its side; faces not found count as wrong in
"accuracy"; boxes that are no face are "false". Then the false faces on scikit-image's face-free photos (as they are
and enlarged 4x) and the detection time of the astronaut portrait at 1 and 12 megapixels. 2 threads; load slows it.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np
from PIL import Image
from skimage import data as skdata
from timing import add_split_args, split_faces, time_ms

from fer_core.checkpoint import load_model
from fer_core.config import REPO_ROOT, set_threads
from fer_core.faces import detect_faces, get_detector
from fer_core.predict import face_crops, predict_crops

sys.path.insert(0, str(REPO_ROOT / "tests"))
from photos import FACE_FREE, astronaut, group_scene, matched  # noqa: E402 - the tests' real-photo helpers


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_split_args(p)
    p.add_argument("--scenes", type=int, default=3, help="scenes per face size, each with other faces (seed 0)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.02, 0.03, 0.04, 0.06, 0.08, 0.12, 0.16])
    p.add_argument("--tilts", type=float, nargs="+", default=[0, 25], help="degrees the faces are turned, + and - in turn")
    p.add_argument("--size", type=int, nargs=2, default=[4000, 3000], metavar=("WIDTH", "HEIGHT"))
    args = p.parse_args()
    set_threads(2)
    x, y = split_faces(args)
    order = np.random.default_rng(0).permutation(len(y))
    faces, labels = x[order], y[order]
    model = load_model(args.checkpoint)
    size = (args.size[0], args.size[1])
    print(f"{args.split} faces in {size[0]} x {size[1]} scenes, {args.scenes} per face size; {model.path}")
    print(f"{'search':>12} {'tilt':>5} {'face/short side':>15} {'faces':>6} {'found':>7} {'accuracy':>9} {'of found':>9} "
          f"{'false':>6} {'ms/photo':>9}")
    detectors = (("default", get_detector()), ("small faces", get_detector(small_faces=True)))
    for (name, detector), tilt in itertools.product(detectors, args.tilts):
        for fraction in args.fractions:
            found, right, false, seconds, start = 0, 0, 0, 0.0, 0
            total = 0
            for _ in range(args.scenes):
                scene, placed = group_scene(faces[start:], fraction, size, tilt=tilt)
                truth = labels[start : start + len(placed)]
                start += len(placed)
                t0 = time.perf_counter()
                boxes, crops = face_crops(scene, True, detector)
                seconds += time.perf_counter() - t0
                pred = predict_crops(crops, model).argmax(1) if len(crops) else np.zeros(0, int)
                used = set()
                for face, label in zip(placed, truth, strict=True):
                    hit = next((k for k, f in enumerate(boxes) if k not in used and matched(f.box, face)), None)
                    if hit is not None:
                        used.add(hit)
                        found += 1
                        right += int(pred[hit] == label)
                false += len(boxes) - len(used)
                total += len(placed)
            print(f"{name:>12} {tilt:5g} {fraction:15.0%} {total:6d} {found / total:7.1%} {right / total:9.1%} "
                  f"{right / max(1, found):9.1%} {false:6d} {1000 * seconds / args.scenes:9.0f}", flush=True)
    photos = [(n, Image.fromarray(getattr(skdata, n)())) for n in FACE_FREE]
    for name, detector in detectors:
        plain = {n: len(detect_faces(im, detector)) for n, im in photos}
        big = {n: len(detect_faces(im.resize((im.width * 4, im.height * 4), Image.Resampling.BICUBIC), detector))
               for n, im in photos}
        print(f"{name:>12}: false faces on {len(photos)} face-free photos {sum(plain.values())} "
              f"({', '.join(f'{n} {k}' for n, k in plain.items() if k) or 'none'}); enlarged 4x {sum(big.values())} "
              f"({', '.join(f'{n} {k}' for n, k in big.items() if k) or 'none'})")
    for side in (1024, 3464):
        portrait = astronaut().resize((side, side), Image.Resampling.BICUBIC)
        ms = {name: time_ms(lambda d=detector, im=portrait: detect_faces(im, d), 5)[0] for name, detector in detectors}
        print(f"astronaut {side} x {side}: detection " + ", ".join(f"{n} {v:.0f} ms" for n, v in ms.items()))


if __name__ == "__main__":
    main()
