"""The networks alone, PyTorch against ONNX Runtime (fer_core.onnxrt): latency per face at batch 1, and agreement.

`benchmarks/inference.py` times whole predictions (preprocessing and softmax included); this one times only the
network's forward pass, eager PyTorch fp32 against the ONNX Runtime fp32 and int8 copies (`ort_copy`, int8 calibrated
on 128 Training faces of --data), and gives each copy's top-1 agreement with PyTorch on the PublicTest faces of --data
(the committed sample by default; the full CSV gives all 3,589).

    python benchmarks/onnxruntime_probe.py [--data CSV] [--threads 2] [--repeats 300]
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime
import torch
from timing import time_ms

from fer_core.checkpoint import load_model
from fer_core.config import REPO_ROOT, SAMPLE_DATA, set_threads
from fer_core.data import load_dataset
from fer_core.onnxrt import ort_copy
from fer_core.transforms import preprocess


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SAMPLE_DATA))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=300)
    args = p.parse_args()
    threads = set_threads(args.threads)
    data = load_dataset(args.data)
    test, train = data.images["PublicTest"], data.images["Training"][:128]
    print(f"{threads} threads, ONNX Runtime {onnxruntime.__version__}, torch {torch.__version__}; agreement on "
          f"{len(test)} PublicTest faces of {args.data}")
    print("| checkpoint | PyTorch fp32 | ORT fp32 (agreement) | ORT int8 (agreement) |\n|---|---|---|---|")
    for name in ("fer_vgg", "fer_resnet"):
        loaded = load_model(REPO_ROOT / "checkpoints" / f"{name}.pt")
        net, crop = loaded.model.eval(), loaded.config.crop_size
        x, calib = preprocess(test, loaded.norm, crop), preprocess(train, loaded.norm, crop)
        one = x[:1].contiguous()
        with torch.inference_mode():
            torch_ms, _ = time_ms(lambda n=net, a=one: n(a), args.repeats, warmup=30)
            ref = torch.cat([net(b) for b in x.split(256)]).argmax(1).numpy()
        cells = []
        for int8 in (False, True):
            copy = ort_copy(net, calib, int8=int8, threads=threads, min_agreement=0.0)
            ms, _ = time_ms(lambda c=copy, a=one: c(a), args.repeats, warmup=30)
            got = np.concatenate([copy(b).numpy() for b in x.split(256)]).argmax(1)
            cells.append(f"{ms:.2f} ms ({(got == ref).mean():.2%})")
        print(f"| {name}.pt | {torch_ms:.2f} ms | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
