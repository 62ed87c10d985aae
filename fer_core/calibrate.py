"""Temperature scaling (Guo et al. 2017): one scalar fitted on the selection split; CLI `python -m fer_core.calibrate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError, LoadedModel, load_model, read_checkpoint
from .config import DataNotFoundError, atomic_torch_save, set_threads
from .data import DataError, load_dataset
from .metrics import reliability
from .transforms import preprocess


@torch.inference_mode()
def centre_logits(loaded: LoadedModel, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Float32 logits (N, 7) of the centre crop, before any temperature."""
    out = [loaded.fast(preprocess(images[i : i + batch_size], loaded.norm, loaded.config.crop_size)
                       .contiguous(memory_format=torch.channels_last)) for i in range(0, len(images), batch_size)]
    return torch.cat(out).float() if out else torch.zeros(0, 7)


def nll(logits: torch.Tensor, y: torch.Tensor, temperature: float) -> float:
    """Mean negative log-likelihood of labels y under softmax(logits / temperature)."""
    return float(torch.nn.functional.cross_entropy(logits / temperature, y))


def fit_temperature(logits: torch.Tensor, y: torch.Tensor, lo: float = 0.05, hi: float = 20.0, iters: int = 60) -> float:
    """The temperature minimising NLL (golden-section search on log T; the NLL is unimodal in it)."""
    if len(y) == 0:
        raise ValueError("no images to fit a temperature on")
    a, b = np.log(lo), np.log(hi)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = nll(logits, y, np.exp(c)), nll(logits, y, np.exp(d))
    for _ in range(iters):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = nll(logits, y, np.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = nll(logits, y, np.exp(d))
    return float(np.exp((a + b) / 2))


def calibration_summary(logits: torch.Tensor, y: torch.Tensor, temperature: float) -> dict[str, float]:
    """NLL and ECE at a temperature."""
    probs = torch.softmax(logits / temperature, 1).numpy()
    return {"nll": nll(logits, y, temperature), "ece": float(reliability(probs, y.numpy())["ece"])}


def calibrate_checkpoint(checkpoint: str | Path, data: str | Path | None = None, split: str = "PublicTest",
                         out: str | Path | None = None) -> dict[str, Any]:
    """Fit the temperature on `split` and store it (with the fit's before/after figures) in the checkpoint.

    Every centre-crop answer stays the same (TTA averages can rarely flip one). Writes `out` (default: in place).
    """
    loaded = load_model(checkpoint)
    x, y = load_dataset(data).split(split)
    logits = centre_logits(loaded, x)
    t = fit_temperature(logits, y)
    fit = {"temperature": t, "split": split, "n": len(y), "before": calibration_summary(logits, y, 1.0),
           "after": calibration_summary(logits, y, t)}
    ckpt = read_checkpoint(checkpoint)
    atomic_torch_save({**ckpt, "temperature": t, "temperature_fit": fit}, out or checkpoint)
    return fit


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fit a softmax temperature on the selection split and store it in the checkpoint.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=None, help="dataset path (default: the usual locations)")
    p.add_argument("--split", default="PublicTest", help="the model-selection split (never the one you report as test)")
    p.add_argument("--out", default=None, help="write here instead of updating the checkpoint in place")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    set_threads(args.threads)
    try:
        fit = calibrate_checkpoint(args.checkpoint, args.data, args.split, args.out)
    except (CheckpointError, DataNotFoundError, DataError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    b, a = fit["before"], fit["after"]
    print(f"{args.split} (n={fit['n']}): temperature {fit['temperature']:.3f}; NLL {b['nll']:.4f} -> {a['nll']:.4f}, "
          f"ECE {b['ece']:.4f} -> {a['ece']:.4f} (fitted on this split: an in-sample figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
