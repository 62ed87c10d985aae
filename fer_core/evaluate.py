"""Evaluate a checkpoint on a split (optional TTA) into a JSON report; CLI `python -m fer_core.evaluate`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .audit import add_unseen, seen_in_training
from .checkpoint import CheckpointError, LoadedModel, load_model
from .config import (
    EMOTIONS,
    IMAGE_SIZE,
    DataNotFoundError,
    atomic_write_json,
    cli_main,
    cli_prog,
    output_file,
    set_threads,
    thread_count,
)
from .data import DataError, load_dataset
from .metrics import summarize
from .models import count_params
from .perturb import PERTURBATIONS, check_corruption, perturb
from .quantize import INFERENCE_PRECISIONS
from .transforms import TTA_MODES, TTA_VIEWS, eval_views, to_float

# Published single-model and reference results on FER2013 (PrivateTest unless noted).
REFERENCE: list[dict[str, Any]] = [
    {"name": "Human accuracy (Goodfellow et al. 2013)", "accuracy": 0.65, "split": "PrivateTest", "protocol": "estimate",
     "source": "Goodfellow et al., Challenges in Representation Learning, 2013"},
    {"name": "mini-XCEPTION (Arriaga et al. 2017)", "accuracy": 0.66, "split": "PrivateTest", "protocol": "58K parameters",
     "source": "arXiv:1710.07557"},
    {"name": "Kaggle 2013 winner (Tang, SVM loss)", "accuracy": 0.7116, "split": "PrivateTest", "protocol": "competition",
     "source": "arXiv:1306.0239"},
    {"name": "VGG variant (Khaireddin & Chen 2021)", "accuracy": 0.7328, "split": "PrivateTest",
     "protocol": "300 epochs, ten-crop TTA; checkpoint picked with the test split", "source": "arXiv:2105.03588"},
    {"name": "ResNet18 + mixup + label smoothing", "accuracy": 0.7370, "split": "PrivateTest",
     "protocol": "checkpoint picked with the test split", "source": "published benchmark reports"},
    {"name": "Residual Masking Network (Pham et al. 2020)", "accuracy": 0.7414, "split": "PrivateTest",
     "protocol": "ImageNet-pretrained, 224 px input", "source": "ICPR 2020"},
    {"name": "Ensemble of CNNs (Pramerdorfer & Kampel 2016)", "accuracy": 0.752, "split": "PrivateTest", "protocol": "ensemble",
     "source": "arXiv:1612.02903"},
]


@torch.inference_mode()
def view_logits(loaded: LoadedModel, images: torch.Tensor, tta: str = "none", batch_size: int = 256) -> torch.Tensor:
    """Float32 logits (V, N, 7) of every TTA view of uint8 images (N, 48, 48), before any temperature.

    At most `batch_size` views go through the model at a time (V = 1 centre crop, 2 with flip, 10 for ten-crop)."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
    crop = loaded.config.crop_size
    per = max(1, batch_size // len(eval_views(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE), crop, tta)))
    out = []
    for i in range(0, len(images), per):
        views = eval_views(to_float(images[i : i + per], loaded.norm), crop, tta)  # (V, B, 1, c, c)
        v, b = views.shape[:2]
        logits = loaded.fast(views.reshape(v * b, *views.shape[2:]).contiguous(memory_format=torch.channels_last))
        out.append(logits.float().reshape(v, b, -1))
    return torch.cat(out, 1) if out else torch.zeros(1, 0, len(EMOTIONS))


def probs_at(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Softmax of logits / temperature, averaged over the views of (V, N, 7) logits ((N, 7) is one view)."""
    logits = logits if logits.dim() == 3 else logits.unsqueeze(0)
    return torch.softmax(logits / temperature, -1).mean(0)


@torch.inference_mode()
def predict_probs(loaded: LoadedModel, images: torch.Tensor, tta: str = "none", batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities (N, 7) for uint8 images (N, 48, 48), averaged over the TTA views.

    The logits are divided by the checkpoint's temperature for this TTA mode (`fer_core.calibrate`; 1.0 if none)."""
    return probs_at(view_logits(loaded, images, tta, batch_size), loaded.temperature_for(tta)).numpy()


def build_report(probs: np.ndarray, y_true: np.ndarray, *, split: str, tta: str, loaded: LoadedModel | None = None,
                 data_source: str = "", seconds: float | None = None, seen: np.ndarray | None = None) -> dict[str, Any]:
    """The JSON report: metrics, model facts, per-image predictions (for galleries) and the reference table. `seen`
    marks the faces with a copy in Training (audit.seen_in_training): the `unseen` block scores the others."""
    y_pred = probs.argmax(1)
    report: dict[str, Any] = {"split": split, "n": int(len(y_true)), "labels": list(EMOTIONS), "tta": tta,
                              **summarize(probs, y_true)}
    if loaded is not None:
        report["checkpoint"] = loaded.path
        report["model"] = {"name": loaded.config.model, "width": loaded.config.width, "params": count_params(loaded.model),
                           "crop_size": loaded.config.crop_size, "epoch": loaded.meta.get("epoch")}
        report["precision"] = loaded.precision
        if bits := getattr(loaded.fast, "activation_bits", None):  # int8 copies: 7 where 8 would overflow (no VNNI)
            report["int8_activation_bits"] = bits
        report["temperature"] = loaded.temperature_for(tta)
    report |= {"data": data_source, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": seconds,
               "predictions": {"y_true": [int(v) for v in y_true], "y_pred": [int(v) for v in y_pred],
                               "confidence": [round(float(c), 4) for c in probs.max(1)]},
               "reference": REFERENCE}
    return add_unseen(report, seen) if seen is not None else report


def evaluate_checkpoint(checkpoint: str | Path | None = None, data: str | Path | None = None, split: str = "PublicTest",
                        tta: str = "none", labels: str = "fer2013", precision: str = "fp32",
                        corruption: str = "none") -> dict[str, Any]:
    """Load a checkpoint and a dataset split, and return the report dict; `corruption` (perturb.PERTURBATIONS) alters
    every face first, and the report says which."""
    return robustness_reports(checkpoint, data, split, tta, labels, precision, [corruption])[0]


def robustness_reports(checkpoint: str | Path | None = None, data: str | Path | None = None, split: str = "PublicTest",
                       tta: str = "none", labels: str = "fer2013", precision: str = "fp32",
                       corruptions: Sequence[str] | None = None,
                       on_report: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """One report per corruption (default: every one of perturb.PERTURBATIONS, "none" first), the model and the data
    loaded once; `fer-evaluate --corruption all` writes them as one file, the Evaluate page's Robustness tab plots them.
    `on_report` sees each report as it is made."""
    names = list(PERTURBATIONS) if corruptions is None else list(corruptions)
    for name in names:
        check_corruption(name)  # before the model and data load
    loaded = load_model(checkpoint, precision)
    ds = load_dataset(data, labels=labels)
    x, y = ds.split(split)
    seen = seen_in_training(ds, split)
    reports = []
    for name in names:
        t0 = time.perf_counter()
        probs = predict_probs(loaded, perturb(x, name), tta)
        report = build_report(probs, y.numpy(), split=split, tta=tta, loaded=loaded, data_source=ds.source,
                              seconds=time.perf_counter() - t0, seen=seen)
        reports.append(report | ({"corruption": name} if name != "none" else {}))
        if on_report is not None:
            on_report(reports[-1])
    return reports


def headline_order(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reports, the headline one first: the largest evaluation, the withheld split on a tie, then validation;
    the clean faces before corrupted ones, the plain centre crop before TTA, PyTorch fp32 before other inference (the
    card and the dashboard's Home agree)."""
    return sorted(reports, key=lambda r: (-r["n"], r["split"] != "PrivateTest", r["split"] != "PublicTest",
                                          "corruption" in r, r["tta"] != "none", r.get("precision", "fp32") != "fp32"))


def format_report(r: dict[str, Any]) -> str:
    """A short human-readable summary of a report."""
    corrupted = f" corruption={r['corruption']}" if "corruption" in r else ""
    lines = [f"{r['split']}: n={r['n']} tta={r['tta']} precision={r.get('precision', 'fp32')}{corrupted} "
             f"accuracy={r['accuracy']:.4f} "
             f"macro_f1={r['macro_f1']:.4f} ece={r['ece']:.4f}", f"{'class':<10}{'prec':>7}{'recall':>8}{'f1':>7}{'support':>9}"]
    for name, m in r["per_class"].items():
        lines.append(f"{name:<10}{m['precision']:>7.3f}{m['recall']:>8.3f}{m['f1']:>7.3f}{m['support']:>9d}")
    if (u := r.get("unseen")) and "accuracy" in u:
        lines.append(f"without the {u['seen_n']} faces that Training holds too (fer-audit): n={u['n']} "
                     f"accuracy={u['accuracy']:.4f} macro_f1={u['macro_f1']:.4f}")
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=cli_prog("fer_core.evaluate"),
        description="Evaluate a checkpoint on one split and write a JSON report.")
    p.add_argument("--checkpoint", default=None, help="checkpoint path (default: the shipped model)")
    p.add_argument("--data", default=None, help="CSV (.csv/.csv.gz) or image folder (default: $FER_DATA or ../shared/data)")
    p.add_argument("--split", default="PublicTest", help="Training, PublicTest or PrivateTest")
    p.add_argument("--labels", default="fer2013", choices=["fer2013", "ferplus"])
    p.add_argument("--tta", nargs="?", const="multiscale", default="none", choices=TTA_MODES,
                   help="test-time augmentation; bare --tta = multiscale: " + TTA_VIEWS["multiscale"])
    p.add_argument("--precision", default="fp32", choices=INFERENCE_PRECISIONS,
                   help="fp32 (exact, the default), int8 (quantized inference, faster), onnx / onnx-int8 "
                        "(the same in ONNX Runtime: 2-3x faster again on an AVX2 CPU)")
    p.add_argument("--corruption", default="none", choices=[*PERTURBATIONS, "all"], metavar="NAME",
                   help="alter every face first, to measure robustness (compare with the clean report: fer-compare); "
                        "all: the clean faces and every corruption, a list of reports in one file: "
                        + "; ".join(f"{k}: {v}" for k, v in PERTURBATIONS.items() if k != "none"))
    p.add_argument("--out", default=None, type=output_file, help="write the JSON report here")
    p.add_argument("--threads", type=thread_count, default=0)
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    set_threads(args.threads)
    every = args.corruption == "all"  # one line per corruption as it is scored; one report: its per-class table too
    show = lambda r: print(format_report(r).split("\n", 1)[0] if every else format_report(r), flush=True)  # noqa: E731
    try:
        reports = robustness_reports(args.checkpoint, args.data, args.split, args.tta, args.labels, args.precision,
                                     None if every else [args.corruption], on_report=show)
    except (DataNotFoundError, DataError, CheckpointError, KeyError, FileNotFoundError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    summary = "\n".join(json.dumps({k: r[k] for k in ("split", "n", "accuracy", "macro_f1", "ece", "tta", "precision",
                                                       "corruption") if k in r}
                                   | ({"unseen_accuracy": r["unseen"]["accuracy"]} if "accuracy" in r.get("unseen", {}) else {}))
                        for r in reports)
    if args.out:
        try:
            atomic_write_json(args.out, reports if every else reports[0])
        except OSError as e:  # the figures are printed above and below: the evaluation is not lost
            print(f"error: cannot write the report to {args.out}: {e}", file=sys.stderr)
            print(summary)
            return 1
        print(f"report written to {args.out}")
    else:
        print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
