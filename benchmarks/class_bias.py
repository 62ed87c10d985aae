"""Would per-class logit biases fitted on PublicTest help? An honest estimate: fit the 7 biases on a random half of
PublicTest (coordinate search for accuracy), score them on the other half, both ways round, over several splits; and
the in-sample figure that fitting and scoring on all of PublicTest would have claimed.

    python benchmarks/class_bias.py [--checkpoint A.pt B.pt] [--tta none multiscale] [--splits 20] [--data CSV]

The README's paragraph on class biases comes from it (fer_resnet.pt and fer_vgg.pt, 2026-11-29).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from fer_core.checkpoint import load_model
from fer_core.config import DEFAULT_CHECKPOINT, DataNotFoundError, set_threads
from fer_core.data import load_dataset
from fer_core.evaluate import probs_at, view_logits
from fer_core.metrics import accuracy, f1_scores

GRID = np.round(np.arange(-1.0, 1.0001, 0.05), 2)


def fit_biases(log_probs: np.ndarray, y: np.ndarray, passes: int = 3) -> np.ndarray:
    """Biases (7,) added to log-probabilities that maximise accuracy on (log_probs, y): coordinate search over GRID."""
    b = np.zeros(log_probs.shape[1])
    best = accuracy(y, log_probs.argmax(1))
    for _ in range(passes):
        for c in range(len(b)):
            for g in GRID:
                trial = b.copy()
                trial[c] = g
                acc = accuracy(y, (log_probs + trial).argmax(1))
                if acc > best + 1e-12:
                    best, b = acc, trial
    return b


def cross_fitted(log_probs: np.ndarray, y: np.ndarray, splits: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out gains (accuracy, macro-F1) of biases fitted on the other half, two per random split."""
    rng = np.random.default_rng(seed)
    acc, f1 = [], []
    for _ in range(splits):
        idx = rng.permutation(len(y))
        half = len(y) // 2
        for fit, test in ((idx[:half], idx[half:]), (idx[half:], idx[:half])):
            b = fit_biases(log_probs[fit], y[fit])
            plain, biased = log_probs[test].argmax(1), (log_probs[test] + b).argmax(1)
            acc.append(accuracy(y[test], biased) - accuracy(y[test], plain))
            f1.append(f1_scores(y[test], biased)["macro_f1"] - f1_scores(y[test], plain)["macro_f1"])
    return np.array(acc), np.array(f1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", nargs="+", default=[str(DEFAULT_CHECKPOINT)])
    p.add_argument("--tta", nargs="+", default=["none", "multiscale"])
    p.add_argument("--splits", type=int, default=20, help="random half splits (each scored both ways)")
    p.add_argument("--data", default=None, help="FER2013 CSV (default: as the CLIs find it)")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    set_threads(args.threads)
    try:
        x, y_t = load_dataset(args.data).split("PublicTest")
    except DataNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    y = y_t.numpy()
    for ckpt in args.checkpoint:
        model = load_model(ckpt)
        for tta in args.tta:
            with torch.inference_mode():
                log_probs = probs_at(view_logits(model, x, tta), model.temperature_for(tta)).clamp_min(1e-12).log().numpy()
            base = accuracy(y, log_probs.argmax(1))
            in_sample = accuracy(y, (log_probs + fit_biases(log_probs, y)).argmax(1))
            acc, f1 = cross_fitted(log_probs, y, args.splits)
            print(f"{ckpt} TTA {tta}: PublicTest {100 * base:.2f}%; biases fitted on all of it {100 * in_sample:.2f}% "
                  f"(in-sample); fitted on half, scored on the other: accuracy {100 * acc.mean():+.2f} +- {100 * acc.std():.2f} "
                  f"points, macro-F1 {100 * f1.mean():+.2f} +- {100 * f1.std():.2f} ({len(acc)} halves)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
