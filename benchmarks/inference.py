"""CPU inference speed of a checkpoint: latency per 48x48 face at batch 1 and throughput at batch 64, with and without
TTA, in fp32 and with the int8 quantized copy (load_model(precision="int8")).

    python benchmarks/inference.py [--checkpoint PATH] [--threads 2] [--repeats 200] [--precision fp32 int8]
"""

from __future__ import annotations

import argparse
import time

import torch
from timing import time_ms

from fer_core.checkpoint import load_model
from fer_core.config import SAMPLE_DATA, set_threads
from fer_core.data import load_csv
from fer_core.evaluate import predict_probs
from fer_core.quantize import INFERENCE_PRECISIONS
from fer_core.transforms import TTA_MODES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--precision", nargs="+", default=list(INFERENCE_PRECISIONS), choices=INFERENCE_PRECISIONS)
    args = p.parse_args()
    threads = set_threads(args.threads)
    faces = load_csv(SAMPLE_DATA).images["PublicTest"][:64]
    print(f"{'precision':<11}{'tta':<12}{'batch 1 ms/face':>17}{'batch 64 faces/s':>18}")
    for precision in args.precision:
        t0 = time.perf_counter()
        loaded = load_model(args.checkpoint, precision)
        loaded.fast  # noqa: B018 - built lazily for fp32; not part of the timings
        if precision == args.precision[0]:
            print(f"checkpoint {loaded.path}: {loaded.config.model} width {loaded.config.width}, {loaded.num_params:,} "
                  f"params; {threads} threads, torch {torch.__version__}")
        print(f"# {precision}: load and build the inference copy {time.perf_counter() - t0:.2f} s")
        for tta in TTA_MODES:
            one_ms = time_ms(lambda t=tta, m=loaded: predict_probs(m, faces[:1], t), args.repeats, 3)[0]
            many_ms = time_ms(lambda t=tta, m=loaded: predict_probs(m, faces, t), max(10, args.repeats // 10), 3)[0]
            print(f"{precision:<11}{tta:<12}{one_ms:>17.2f}{64_000 / many_ms:>18.0f}", flush=True)


if __name__ == "__main__":
    main()
