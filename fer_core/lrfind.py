"""Learning-rate range test (Smith, 2017): a short run whose learning rate grows geometrically, and its loss per step."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, float_weights
from .checks import check_config, check_device
from .config import (
    DataNotFoundError,
    TrainConfig,
    atomic_write_json,
    cli_main,
    cli_prog,
    output_file,
    set_seed,
    set_threads,
)
from .data import DataError, FERData, load_dataset
from .targets import select_splits
from .train import add_config_args, build_for_training, config_from_args, forward, read_init
from .transforms import Normalization, augment_batch, photo_batch

SMOOTHING = 0.9  # exponential smoothing of the per-step loss (bias-corrected), as in fastai's finder
DIVERGED = 4.0  # stop once the smoothed loss exceeds this multiple of its minimum
FLAT = 0.1  # a fall of the smoothed loss below this: too flat a curve to suggest from


def lr_range_test(cfg: TrainConfig, data: FERData | None = None, start: float = 1e-3, end: float = 3.0, steps: int = 300,
                  on_step: Callable[[int, float, float], None] | None = None) -> dict[str, Any]:
    """Train cfg's model (fresh, or cfg.init's weights) for up to `steps` SGD steps of cfg's batches, augmentation,
    label smoothing and optimizer (the label loss alone: no soft labels, mixup, class weights or teacher), the
    learning rate growing geometrically from `start` to `end`; stop early once the
    smoothed loss passes DIVERGED x its minimum. Nothing is saved. Returns the learning rates, raw and smoothed losses,
    and `suggest`'s figures."""
    check_config(cfg)
    if not 0 < start < end or steps < 10:
        raise ValueError(f"the range test needs 0 < start < end and at least 10 steps, not {start:g}..{end:g} in {steps}")
    device = check_device(cfg.device)
    set_threads(cfg.threads)
    set_seed(cfg.seed)
    data = data if data is not None else load_dataset(cfg.data or None, labels=cfg.labels)
    x, y, _, _ = select_splits(data, cfg)
    source = read_init(cfg) if cfg.init else None  # the same architecture as cfg, or a clear error
    norm = Normalization(**source["norm"]) if source else Normalization.fit(x)
    model, opt = build_for_training(cfg, device, float_weights(source) if source is not None else None)
    model.train()
    gen = torch.Generator().manual_seed(cfg.seed)
    lrs, raw, smooth = [], [], []
    avg, best = 0.0, math.inf
    for i in range(steps):
        lr = start * (end / start) ** (i / (steps - 1))
        idx = torch.randint(len(x), (cfg.batch_size,), generator=gen)
        xb = augment_batch(((x[idx].float() - norm.mean) / norm.std).unsqueeze(1), cfg.crop_size, gen, cfg.augment,
                           cfg.erasing)
        xb = photo_batch(xb, cfg.degrade, cfg.jpeg, gen).to(device)
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = F.cross_entropy(forward(model, xb, cfg.precision), y[idx].to(device), label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        avg = SMOOTHING * avg + (1 - SMOOTHING) * loss.item()
        smoothed = avg / (1 - SMOOTHING ** (i + 1))
        lrs.append(lr)
        raw.append(loss.item())
        smooth.append(smoothed)
        if on_step is not None:
            on_step(i + 1, lr, smoothed)
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or smoothed > DIVERGED * best:
            break
    return {"lr": lrs, "loss": raw, "smoothed": smooth, **suggest(lrs, smooth)}


def suggest(lrs: list[float], smoothed: list[float]) -> dict[str, float]:
    """The lr where the smoothed loss was lowest, and a tenth of it: the usual pick for a peak learning rate (the loss
    still falls fast there, well before it turns; the slope itself is too noisy on FER2013 to point anywhere). `fall`
    is how far the loss came down from its level after the first tenth of the steps: under FLAT the curve is nearly
    flat, its lowest point a matter of noise, and the suggestion weak."""
    i = int(np.argmin(smoothed))
    fall = smoothed[min(len(smoothed) - 1, len(smoothed) // 10)] - smoothed[i]
    return {"lowest": float(lrs[i]), "suggested": float(lrs[i] / 10), "fall": float(fall)}


def caveat(result: dict[str, Any], cfg: TrainConfig) -> str:
    """Why a suggestion deserves less trust, or "": a nearly flat curve, or trained weights (--init)."""
    if cfg.init:
        return ("from trained weights (--init) the loss rises as soon as the lr disturbs them, so the suggestion runs "
                "low; the range test is made for fresh weights (fine-tunes of the shipped models used 0.004-0.02)")
    if result.get("fall", math.inf) < FLAT:
        return (f"the loss hardly fell ({result['fall']:.2f} below its early level), so its lowest point is noise and the "
                "suggestion weak: give the model more steps (fer-lrfind --steps 1000)")
    return ""


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=cli_prog("fer_core.lrfind"), description=__doc__ + " The settings are fer-train's; "
                                "nothing is written.")
    add_config_args(p)
    p.add_argument("--start", type=float, default=1e-3, help="first learning rate (default: 1e-3)")
    p.add_argument("--end", type=float, default=3.0, help="last learning rate (default: 3)")
    p.add_argument("--steps", type=int, default=300, help="SGD steps from start to end (default: 300; with fewer the loss "
                   "barely moves before the learning rate is large)")
    p.add_argument("--json", action="store_true", help="print the curve and the suggestions as one JSON object")
    p.add_argument("--out", type=output_file, help="also write that JSON object to this file (the Train page's finder)")
    p.set_defaults(run="", resume=False)
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)  # lr_range_test checks it before loading anything

        def report(i: int, lr: float, loss: float) -> None:
            if i % 10 == 0:
                print(f"step {i:>4}  lr {lr:.2e}  smoothed loss {loss:.3f}", flush=True)

        result = lr_range_test(cfg, start=args.start, end=args.end, steps=args.steps, on_step=None if args.json else report)
    except (DataNotFoundError, DataError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        atomic_write_json(args.out, {**result, "config": cfg.to_dict()})
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{len(result['lr'])} steps, lr {result['lr'][0]:.1e} to {result['lr'][-1]:.1e}: the smoothed loss was lowest at lr "
          f"{result['lowest']:.2g}; suggested peak lr {result['suggested']:.2g} (a tenth of that; the settings' lr: {cfg.lr:g})")
    if note := caveat(result, cfg):
        print(f"note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
