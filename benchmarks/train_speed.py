"""Training throughput: the fer_core pipeline against a naive torchvision-PIL DataLoader, same model.

The baseline is what a torchvision tutorial would write: a Dataset of PIL images, per-image
RandomCrop/RandomHorizontalFlip/RandomRotation/ToTensor/Normalize/RandomErasing, the default
collate, NCHW tensors. The project pipeline keeps uint8 tensors in memory, augments whole batches
with one affine grid_sample, and runs the model channels_last with in-place ReLUs, in float32 and under bfloat16
autocast (`--precision bf16`; native on CPUs with AVX512-BF16 or AMX), with glibc malloc told to keep freed
activation memory (`fer_core.config.tune_allocator`, process-wide, so the baseline gets it too). All do the same
SGD step. `--untuned` measures the pipeline as it was before those two (run it as its own process).

    python benchmarks/train_speed.py [--data PATH] [--models small:16 vgg:32] [--steps 20] [--threads 2] [--no-bf16] [--untuned]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from fer_core.config import SAMPLE_DATA, TrainConfig, set_threads, tune_allocator
from fer_core.data import load_dataset
from fer_core.models import build_model, count_params
from fer_core.train import bf16_supported, build_for_training, forward, make_optimizer, set_relu_inplace
from fer_core.transforms import Normalization, augment_batch


class PILDataset(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, norm: Normalization, crop: int) -> None:
        self.images = [Image.fromarray(a) for a in images]
        self.labels = labels
        self.tf = T.Compose([
            T.RandomCrop(crop, padding=2), T.RandomHorizontalFlip(), T.RandomRotation(10), T.ToTensor(),
            T.Normalize([norm.mean / 255], [norm.std / 255]), T.RandomErasing(p=0.5),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.tf(self.images[i]), int(self.labels[i])


def step(model: torch.nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor, precision: str = "fp32") -> None:
    loss = F.cross_entropy(forward(model, xb, precision), yb, label_smoothing=0.1)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench_baseline(name: str, width: int, x: torch.Tensor, y: torch.Tensor, norm: Normalization, bs: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(name, width=width).train()
    opt = make_optimizer(model, TrainConfig())
    loader = DataLoader(PILDataset(x.numpy(), y.numpy(), norm, 44), batch_size=bs, shuffle=True, drop_last=True)
    it = iter(loader)
    step(model, opt, *next(it))  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step(model, opt, *next(it))
    return steps * bs / (time.perf_counter() - t0)


def bench_project(name: str, width: int, x: torch.Tensor, y: torch.Tensor, norm: Normalization, bs: int, steps: int,
                  precision: str, untuned: bool = False) -> float:
    torch.manual_seed(0)
    model, opt = build_for_training(TrainConfig(model=name, width=width), torch.device("cpu"))
    model.train()
    if untuned:
        set_relu_inplace(model, False)
    gen = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=gen)

    def batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = perm[i * bs : (i + 1) * bs]
        xb = ((x[idx].float() - norm.mean) / norm.std).unsqueeze(1)
        xb = augment_batch(xb, 44, gen, "standard", 0.5).contiguous(memory_format=torch.channels_last)
        return xb, y[idx]

    step(model, opt, *batch(0), precision)
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        step(model, opt, *batch(i), precision)
    return steps * bs / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None)
    p.add_argument("--models", nargs="+", default=["small:16", "vgg:32"], help="name:width pairs")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16 column (slow where bf16 is emulated)")
    p.add_argument("--untuned", action="store_true",
                   help="the pipeline as before 2026-11-28: glibc's default malloc thresholds, out-of-place ReLUs")
    args = p.parse_args()
    tuned = not args.untuned and tune_allocator()
    print(f"threads: {set_threads(args.threads)}, torch {torch.__version__}, batch {args.batch_size}, steps {args.steps}, "
          f"native bf16: {bf16_supported()}, malloc tuned: {tuned}, in-place ReLU: {not args.untuned}")
    try:
        data = load_dataset(args.data)
    except FileNotFoundError:
        data = load_dataset(SAMPLE_DATA)
    x, y = data.split("Training")
    need = args.batch_size * (args.steps + 2)
    x, y = x[:need], y[:need]
    norm = Normalization.fit(x)
    print(f"{'model':<10}{'params':>10}{'baseline img/s':>16}{'fer_core fp32':>15}{'fer_core bf16':>15}{'ratio':>8}")
    for spec in args.models:
        name, width = spec.split(":")
        base = bench_baseline(name, int(width), x, y, norm, args.batch_size, args.steps)
        fp32 = bench_project(name, int(width), x, y, norm, args.batch_size, args.steps, "fp32", args.untuned)
        bf16 = (float("nan") if args.no_bf16 else
                bench_project(name, int(width), x, y, norm, args.batch_size, args.steps, "bf16", args.untuned))
        params = count_params(build_model(name, width=int(width)))
        best = fp32 if args.no_bf16 else max(fp32, bf16)
        print(f"{spec:<10}{params:>10,}{base:>16.0f}{fp32:>15.0f}{bf16:>15.0f}{best / base:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
