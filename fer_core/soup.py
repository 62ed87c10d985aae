"""Uniform model soup: one checkpoint whose weights average those of fine-tunes from a common start."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import torch

from .checkpoint import CheckpointError, float_weights, read_checkpoint
from .config import atomic_torch_save, cli_main, cli_prog, output_file

# fields that must agree for averaged weights to mean anything (the rest of the recipe may differ between fine-tunes)
_SAME = ("model", "width", "drop_rate", "crop_size", "labels")
# per-run facts of one ingredient that would be false of the soup
_DROP = ("model", "optimizer", "epoch", "best_acc", "best_epoch", "metrics", "temperature", "temperature_tta",
         "temperature_fit")


def soup(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any]:
    """A checkpoint dict whose float weights are the mean of the given checkpoints' (Wortsman et al., 2022).

    Averaging only works for models fine-tuned from the same weights (one loss basin): runs started from different
    random weights average to a broken model, which an evaluation on the validation split shows at once. Batch-norm
    running statistics are averaged too; integer buffers come from the first checkpoint. Config and input
    normalisation come from the first checkpoint; every ingredient must share its architecture and normalisation.
    """
    if len(paths) < 2:
        raise ValueError("a soup needs at least two checkpoints")
    ckpts = [read_checkpoint(p) for p in paths]
    first, weights = ckpts[0], [float_weights(c) for c in ckpts]
    for path, ckpt, w in zip(paths[1:], ckpts[1:], weights[1:], strict=True):
        diff = [k for k in _SAME if ckpt["config"].get(k) != first["config"].get(k)]
        if diff:
            raise CheckpointError(f"{path}: {', '.join(diff)} differ from {paths[0]}'s; only one architecture can be averaged")
        if ckpt["norm"] != first["norm"]:
            raise CheckpointError(f"{path}: input normalisation {ckpt['norm']} differs from {paths[0]}'s {first['norm']}")
        if {k: v.shape for k, v in w.items()} != {k: v.shape for k, v in weights[0].items()}:
            raise CheckpointError(f"{path}: its tensors do not match {paths[0]}'s")
    mean = {k: torch.stack([w[k] for w in weights]).mean(0) if v.is_floating_point() else v.clone()
            for k, v in weights[0].items()}
    ingredients = [{"path": str(p), "epoch": c.get("epoch"), "best_acc": c.get("best_acc"), "config": c["config"]}
                   for p, c in zip(paths, ckpts, strict=True)]
    return {**{k: v for k, v in first.items() if k not in _DROP}, "model": mean, "soup": ingredients}


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=cli_prog("fer_core.soup"), description=__doc__)
    p.add_argument("checkpoints", nargs="+", help="two or more checkpoints fine-tuned from the same weights")
    p.add_argument("--out", required=True, type=output_file,
                   help="where to write the averaged checkpoint (fp32; export it to ship)")
    args = p.parse_args(argv)
    try:
        atomic_torch_save(soup(args.checkpoints), args.out)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: mean of {len(args.checkpoints)} checkpoints")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
