"""Faces seen from the side: where the profile search finds them and at what cost. The default detector looks for side
views where it finds no frontal face; the small-faces one always does.

    python benchmarks/profiles.py [--checkpoint PATH] [--data CSV] [--split PublicTest] [--scenes 6]
                                  [--fractions 0.1 0.12 0.16 0.2 0.3]

1. scikit-image's cameraman (a three-quarter view looking right; the frontal searches find nothing) at 19 sizes from 200
   to 2000 px, as it is and mirrored: found, and the box's overlap with the face (tests/photos.py: CAMERAMAN_FACE).
2. False faces on scikit-image's face-free photos, as they are and enlarged 4x, with and without the profile search.
   The profile search's settings were chosen on 1 and 2 (and the tests' turned astronauts, ten-face sheet and sample
   group photos), so these two are not an independent check.
3. Group photos of real FER2013 faces from --split (benchmarks/group.py's scenes, 1600 x 1200): the faces only the
   profile search finds, how often the model gets those right (and the same faces alone, as 48x48 crops), false faces,
   time per photo, with the profile search always on against off.
4. Detection time on a face-free 1-megapixel photo (where the default now also searches for side views) and on the
   astronaut (a frontal face: unchanged).
5. Videos: 10 s clips of 1280 x 720 at 10 fps, one without a face (the coffee photo) and one of the cameraman, sampled
   every 0.5 s: time and frames with a face, with side views and without (predict_video's detector swapped).
2 threads; load slows it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from unittest.mock import patch

import numpy as np
from PIL import Image, ImageOps
from timing import add_split_args, split_faces, time_ms

from fer_core.checkpoint import load_model
from fer_core.config import REPO_ROOT, set_threads
from fer_core.faces import HaarDetector, detect_faces, get_detector
from fer_core.predict import face_crops, predict_crops

sys.path.insert(0, str(REPO_ROOT / "tests"))
from photos import (  # noqa: E402 - the tests' real-photo helpers
    CAMERAMAN_FACE,
    FACE_FREE,
    astronaut,
    cameraman,
    coffee,
    group_scene,
    iou,
    matched,
    scaled,
    write_video,
)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_split_args(p)
    p.add_argument("--scenes", type=int, default=6, help="scenes per face size, each with other faces (seed 0)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.12, 0.16, 0.2, 0.3])
    args = p.parse_args()
    set_threads(2)
    frontal, default, always = HaarDetector(profile_face=0), get_detector(), HaarDetector(profiles_always=True)

    found, overlaps, mirrored = 0, [], 0
    sizes = range(200, 2001, 100)
    for side in sizes:
        photo = cameraman().resize((side, side), Image.Resampling.BICUBIC)
        assert not detect_faces(photo, frontal), side
        boxes = detect_faces(photo, default)
        found += bool(boxes)
        overlaps += [max(iou(b, scaled(CAMERAMAN_FACE, side / 512)) for b in boxes)] if boxes else []
        mirrored += bool(detect_faces(ImageOps.mirror(photo), default))
    print(f"cameraman at {len(sizes)} sizes (200-2000 px): frontal searches find it at 0, with side views at {found} "
          f"(mirrored: {mirrored}); box overlap with the face (IoU) {min(overlaps):.2f}-{max(overlaps):.2f}")

    from skimage import data as skdata

    photos = [(n, Image.fromarray(getattr(skdata, n)())) for n in FACE_FREE]
    photos += [(f"{n} x4", im.resize((im.width * 4, im.height * 4), Image.Resampling.BICUBIC)) for n, im in photos]
    for name, detector in (("frontal only", frontal), ("default", default), ("always", always)):
        false = {n: len(detect_faces(im, detector)) for n, im in photos}
        print(f"{name:>12}: false faces on {len(FACE_FREE)} face-free photos and the same enlarged 4x: {sum(false.values())} "
              f"({', '.join(f'{n} {k}' for n, k in false.items() if k) or 'none'})")

    x, y = split_faces(args)
    order = np.random.default_rng(0).permutation(len(y))
    faces, labels = x[order], y[order]
    model = load_model(args.checkpoint)
    print(f"\n{args.split} faces in 1600 x 1200 scenes, {args.scenes} per face size; {model.path}")
    print(f"{'face/short side':>15} {'faces':>6} {'frontal':>8} {'+ side':>7} {'right':>6} {'alone':>6} {'false':>9} "
          f"{'ms/photo':>11}")
    for fraction in args.fractions:
        total = hits = 0
        extra: list[tuple[int, np.ndarray]] = []  # (face index, crop) of the faces only the profile search found
        false, ms, start = [0, 0], [0.0, 0.0], 0
        for _ in range(args.scenes):
            scene, placed = group_scene(faces[start:], fraction, (1600, 1200))
            index = range(start, start + len(placed))
            start += len(placed)
            results = []
            for k, detector in enumerate((frontal, always)):
                t0 = time.perf_counter()
                boxes, crops = face_crops(scene, True, detector)
                ms[k] += (time.perf_counter() - t0) * 1000 / args.scenes
                false[k] += sum(not any(matched(b.box, f) for f in placed) for b in boxes)
                results.append((boxes, crops))
            (plain, _), (more, crops) = results
            for i, face in zip(index, placed, strict=True):
                if any(matched(b.box, face) for b in plain):
                    hits += 1
                elif (k := next((k for k, b in enumerate(more) if matched(b.box, face)), None)) is not None:
                    extra.append((i, crops[k]))
            total += len(placed)
        if extra:
            which = np.array([i for i, _ in extra])
            right = float(np.mean(predict_crops(np.stack([c for _, c in extra]), model).argmax(1) == labels[which]))
            alone = float(np.mean(predict_crops(faces[which], model).argmax(1) == labels[which]))
        else:
            right = alone = float("nan")
        print(f"{fraction:15.0%} {total:6d} {hits / total:8.1%} {len(extra) / total:7.1%} {right:6.0%} {alone:6.0%} "
              f"{false[0]:4d}->{false[1]:<4d} {ms[0]:5.0f}->{ms[1]:<5.0f}", flush=True)

    free = coffee().resize((1224, 816), Image.Resampling.BICUBIC)  # about 1 megapixel, no face
    portrait = astronaut().resize((1024, 1024), Image.Resampling.BICUBIC)
    for name, photo in (("face-free 1 MP photo", free), ("astronaut 1 MP", portrait)):
        times = [time_ms(lambda d=d, im=photo: detect_faces(im, d), 7)[0] for d in (frontal, default, always)]
        print(f"{name}: detection {times[0]:.0f} ms frontal only, {times[1]:.0f} ms default, {times[2]:.0f} ms always")

    from fer_core import video

    side = Image.new("RGB", (1280, 720), (128, 128, 128))
    side.paste(cameraman().resize((720, 720), Image.Resampling.BICUBIC), (280, 0))
    with tempfile.TemporaryDirectory() as folder:
        for name, frame in (("no face", coffee().resize((1280, 720), Image.Resampling.BICUBIC)), ("cameraman", side)):
            clip = f"{folder}/{name.replace(' ', '_')}.mp4"
            write_video(clip, [frame] * 100, fps=10)
            for label, detector in (("frontal only", frontal), ("default", default)):
                with patch.object(video, "get_detector", lambda small_faces=False, d=detector: d):
                    t0 = time.perf_counter()
                    result = video.predict_video(clip, model, 0.5)
                seconds = time.perf_counter() - t0
                print(f"10 s 1280 x 720 clip, {name}, every 0.5 s, {label}: {seconds:.2f} s, a face in "
                      f"{sum(bool(f.faces) for f in result.frames)} of {len(result.frames)} frames")


if __name__ == "__main__":
    main()
