"""Temperature scaling (Guo et al. 2017): one scalar per TTA mode fitted on the selection split; CLI `fer_core.calibrate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError, load_model, read_checkpoint
from .config import DataNotFoundError, atomic_torch_save, cli_main, cli_prog, output_file, set_threads, thread_count
from .data import DataError, load_dataset
from .evaluate import probs_at, view_logits
from .metrics import reliability

CALIBRATED_TTA = ("none", "tencrop", "multiscale")  # each gets its own temperature; "flip" uses the centre crop's


def nll(logits: torch.Tensor, y: torch.Tensor, temperature: float) -> float:
    """Mean negative log-likelihood of labels y under the (view-averaged) probabilities at a temperature."""
    p = probs_at(logits, temperature)[torch.arange(len(y)), y]
    return float(-torch.log(p.clamp_min(1e-12)).mean())


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
    probs = probs_at(logits, temperature).numpy()
    return {"nll": nll(logits, y, temperature), "ece": float(reliability(probs, y.numpy())["ece"])}


def calibrate_checkpoint(checkpoint: str | Path, data: str | Path | None = None, split: str = "PublicTest",
                         out: str | Path | None = None) -> dict[str, Any]:
    """Fit one temperature per CALIBRATED_TTA mode on `split` and store them (with before/after figures) in the checkpoint.

    Every centre-crop answer stays the same (a TTA average can rarely flip one). Writes `out` (default: in place).
    """
    loaded = load_model(checkpoint)
    x, y = load_dataset(data).split(split)
    by_tta = {}
    for tta in CALIBRATED_TTA:
        logits = view_logits(loaded, x, tta)
        t = fit_temperature(logits, y)
        by_tta[tta] = {"temperature": t, "before": calibration_summary(logits, y, 1.0),
                       "after": calibration_summary(logits, y, t)}
    fit = {"split": split, "n": len(y), "by_tta": by_tta}
    ckpt = read_checkpoint(checkpoint)
    temps = {tta: f["temperature"] for tta, f in by_tta.items()}
    atomic_torch_save({**ckpt, "temperature": temps["none"], "temperature_tta": temps, "temperature_fit": fit},
                      out or checkpoint)
    return fit


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=cli_prog("fer_core.calibrate"),
        description="Fit a softmax temperature on the selection split and store it in the checkpoint.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", default=None, help="dataset path (default: the usual locations)")
    p.add_argument("--split", default="PublicTest", help="the model-selection split (never the one you report as test)")
    p.add_argument("--out", default=None, type=output_file, help="write here instead of updating the checkpoint in place")
    p.add_argument("--threads", type=thread_count, default=0)
    args = p.parse_args(argv)
    set_threads(args.threads)
    try:
        fit = calibrate_checkpoint(args.checkpoint, args.data, args.split, args.out)
    except (CheckpointError, DataNotFoundError, DataError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for tta, f in fit["by_tta"].items():
        b, a = f["before"], f["after"]
        print(f"{args.split} (n={fit['n']}), TTA {tta}: temperature {f['temperature']:.3f}; NLL {b['nll']:.4f} -> "
              f"{a['nll']:.4f}, ECE {b['ece']:.4f} -> {a['ece']:.4f} (fitted on this split: an in-sample figure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
