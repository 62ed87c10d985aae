"""CPU speed of the video path: decoding alone, then decode + detect + classify (fer_core.video.predict_video), on a
clip made from a real portrait moving over a real photo (fer_core.video_out.demo_clip, no download), at a chosen size,
length and frame rate.

    python benchmarks/video.py [--checkpoint PATH] [--seconds 30] [--size 1280x720] [--fps 30] [--every 0.5 0.1]
                               [--threads 2]

Prints seconds per analysis, sampled frames per second and the share of the time spent decoding (and the same analysis
searching every frame whole instead of following faces between whole-frame searches), then the time to
write the annotated copy (full size .mp4 as the CLI writes it; the dashboard's 640 px, 15 fps WebM preview). Other processes on
the machine slow every figure; the load average is printed so a reader can tell. Last, the first interval again as the
dashboard runs a long video: a subprocess job (fer_core.video_job) from start to the result loaded, whose extra cost
is the new interpreter importing torch and loading the model.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from unittest.mock import patch

from fer_core import video
from fer_core.checkpoint import load_model
from fer_core.config import set_threads
from fer_core.video import predict_video, sample_frames, video_info
from fer_core.video_job import load_result, start_video_job, wait_video_job
from fer_core.video_out import annotate_video, demo_clip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--every", type=float, nargs="+", default=[0.5, 0.1])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    set_threads(args.threads)
    size = tuple(int(v) for v in args.size.split("x"))
    model = load_model(args.checkpoint)
    print(f"load average {os.getloadavg()[0]:.2f}; model {Path(model.path).name}; "
          f"torch threads {args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        demo_clip(clip, args.seconds, size, args.fps)  # type: ignore[arg-type]
        info = video_info(clip)
        print(f"clip: {info.duration_s:.1f} s, {info.width} x {info.height} at {info.fps:g} fps, "
              f"{clip.stat().st_size / 1e6:.1f} MB")
        for every in args.every:
            start = time.perf_counter()
            n = sum(1 for _ in sample_frames(clip, every))
            decode = time.perf_counter() - start
            start = time.perf_counter()
            result = predict_video(clip, model, every)
            total = time.perf_counter() - start
            faces = sum(bool(f.faces) for f in result.frames)
            print(f"every {every:g} s: {n} frames ({faces} with a face) in {total:.2f} s = {n / total:.1f} frames/s, "
                  f"{total / info.duration_s:.2f} s per s of video; decoding alone {decode:.2f} s "
                  f"({decode / total:.0%})")
            with patch.object(video, "WHOLE_FRAME_EVERY_S", 0.0):  # the same, searching every frame whole
                start = time.perf_counter()
                whole = predict_video(clip, model, every)
                took = time.perf_counter() - start
            same = sum(len(a.faces) == len(b.faces) and all(p.label == q.label for p, q in zip(a.faces, b.faces, strict=True))
                       for a, b in zip(result.frames, whole.frames, strict=True))
            print(f"  searching every frame whole instead of following faces between searches once a second: "
                  f"{took:.2f} s; {same} of {n} frames with the same faces and labels")
        for name, side, fps in (("annotated.mp4", None, None), ("annotated.webm", 640, 15)):  # CLI; dashboard preview
            start = time.perf_counter()
            out = annotate_video(clip, result, Path(tmp) / name, side, fps)
            took, made = time.perf_counter() - start, video_info(out)
            print(f"{name} ({made.width} x {made.height}, {made.fps:g} fps, {made.frame_count} frames): {took:.2f} s, "
                  f"{took / made.frame_count * 1000:.1f} ms per frame, {out.stat().st_size / 1e6:.1f} MB")
        start = time.perf_counter()
        start_video_job(clip, Path(tmp) / "job", model.path, args.every[0])
        status = wait_video_job(Path(tmp) / "job", timeout=600)
        n = len(load_result(Path(tmp) / "job").frames)
        print(f"as a subprocess job, every {args.every[0]:g} s: {status.state}, {n} frames, "
              f"{time.perf_counter() - start:.2f} s from start to the result loaded")


if __name__ == "__main__":
    main()
