"""CPU speed of the photo path: end to end for a 1-megapixel photo (decode + detect + classify + one saliency map), its
stages, and the time of every explanation method on one face. Goals (issue 5): end to end <= 150 ms, IG <= 300 ms.

    python benchmarks/predict.py [--checkpoint PATH | --model vgg --width 32] [--threads 2] [--repeats 15]

`--model` times an untrained model of that architecture instead of a checkpoint (timing does not depend on weights):
use it to see the cost of a bigger model before it is trained. Other processes on the machine slow every figure;
the load average is printed so a reader can tell. Measured beside a 2-thread training run on 2 cores, 2 torch threads
made one-face work 10-80x slower (OpenMP threads spin-waiting for a descheduled partner); --threads 1 or
OMP_WAIT_POLICY=PASSIVE brought it back to the idle figures.
"""

from __future__ import annotations

import argparse
import io
import os

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata
from timing import time_ms

from fer_core.checkpoint import LoadedModel, load_model
from fer_core.config import TrainConfig, set_threads
from fer_core.crops import crop_face
from fer_core.explain import METHODS, explain
from fer_core.faces import detect_faces, get_detector
from fer_core.images import load_image
from fer_core.models import build_model
from fer_core.predict import predict_crops, predict_image
from fer_core.transforms import Normalization

GOALS_MS = {"end to end": 150.0, "integrated_gradients": 300.0}




def photo_1mp() -> bytes:
    """A real portrait (scikit-image's astronaut) at 1024 x 1024 px, JPEG-encoded as a camera would deliver it."""
    image = Image.fromarray(skdata.astronaut()).resize((1024, 1024), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def untrained(name: str, width: int) -> LoadedModel:
    torch.manual_seed(0)
    model = build_model(name, width=width).eval()
    cfg = TrainConfig(model=name, width=width)
    return LoadedModel(model=model, config=cfg, norm=Normalization(), path=f"untrained {name} width {width}", meta={})


def report(name: str, ms: tuple[float, float], goal: float | None = None) -> None:
    verdict = "" if goal is None else f"   goal <= {goal:.0f} ms: {'met' if ms[0] <= goal else 'MISSED'}"
    print(f"  {name:<34}{ms[0]:>9.1f}{ms[1]:>9.1f}{verdict}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="checkpoint to time (default: the shipped model)")
    p.add_argument("--model", default=None, help="time an untrained model of this registry name instead")
    p.add_argument("--width", type=int, default=32, help="width of the --model")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    threads = set_threads(args.threads)
    loaded = untrained(args.model, args.width) if args.model else load_model(args.checkpoint)
    photo = photo_1mp()
    get_detector()  # built once per process, like the CLI and the dashboard do
    image = load_image(photo)
    box = detect_faces(image)[0]
    crop = crop_face(image, box)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"model: {loaded.path} ({loaded.config.model} width {loaded.config.width}, {loaded.num_params:,} params)")
    print(f"photo: {image.size[0]} x {image.size[1]} JPEG, {len(photo) / 1e3:.0f} kB, face at {box}")
    print(f"CPU: {threads} torch threads, {os.cpu_count()} cores, load average {load} (other processes slow every figure)")
    if threads > 1 and os.getloadavg()[0] >= (os.cpu_count() or 1):
        print("note: the cores are busy; with more than one torch thread expect large slowdowns (see the docstring)")
    print(f"  {'':<34}{'median':>9}{'min':>9}   (ms, {args.repeats} runs)")

    def end_to_end() -> None:
        faces = predict_image(photo, loaded)
        explain(loaded, faces[0].crop, "saliency")

    report("end to end (decode+detect+classify", time_ms(end_to_end, args.repeats), GOALS_MS["end to end"])
    print("   + saliency), of which:")
    report("decode (load_image)", time_ms(lambda: load_image(photo), args.repeats))
    report("detect faces", time_ms(lambda: detect_faces(image), args.repeats))
    report("crop + classify one face", time_ms(lambda: predict_crops(crop_face(image, box)[None], loaded), args.repeats))
    print("explanation of one face, per method:")
    for method in METHODS:
        ms = time_ms(lambda m=method: explain(loaded, crop, m), max(3, args.repeats // 3))
        report(method, ms, GOALS_MS.get(method))
    batch = np.repeat(crop[None], 64, axis=0)
    ms = time_ms(lambda: predict_crops(batch, loaded), max(3, args.repeats // 3))
    print(f"classification throughput: {64 / (ms[0] / 1000):.0f} faces/s (batches of 64 crops)")


if __name__ == "__main__":
    main()
