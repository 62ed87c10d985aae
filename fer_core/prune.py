"""Filter pruning: a narrower copy of a trained VGG keeping each layer's most useful channels, to fine-tune."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, load_model, save_checkpoint
from .config import cli_main, cli_prog, output_file
from .models import VGG, build_model
from .quantize import calibration_batch


def conv_blocks(model: VGG) -> list[nn.Sequential]:
    """A VGG's conv-BN-ReLU blocks in order (its max-pools left out)."""
    return [m for m in model.features if isinstance(m, nn.Sequential)]


def _conv_bn(block: nn.Sequential) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv, bn = block[0], block[1]
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise TypeError(f"expected a conv-BN-ReLU block, found {block}")
    return conv, bn


@torch.no_grad()
def channel_importance(model: VGG, faces: torch.Tensor) -> list[torch.Tensor]:
    """Per conv block, each output channel's mean activation on `faces` times the norm of the weights reading it.

    A channel that is never active, or that the next layer ignores, scores 0: removing it changes nothing.
    """
    blocks, acts = conv_blocks(model), []
    hooks = [b.register_forward_hook(lambda _m, _i, out: acts.append(out.abs().mean((0, 2, 3)))) for b in blocks]
    try:
        model.eval()(faces)
    finally:
        for h in hooks:
            h.remove()
    readers = [_conv_bn(b)[0].weight for b in blocks[1:]] + [model.head.fc.weight]  # (cout, cin, ...) of whoever reads each
    return [a * w.transpose(0, 1).flatten(1).norm(dim=1) for a, w in zip(acts, readers, strict=True)]


@torch.no_grad()
def prune_vgg(model: VGG, narrow: VGG, faces: torch.Tensor) -> VGG:
    """Fill `narrow` (same stages and depth, fewer channels) with the channels of `model` that matter most on `faces`."""
    old, new = [_conv_bn(b) for b in conv_blocks(model)], [_conv_bn(b) for b in conv_blocks(narrow)]
    if len(old) != len(new):
        raise ValueError(f"cannot prune a {len(old)}-conv model into a {len(new)}-conv one")
    keep_in = torch.arange(old[0][0].in_channels)
    for (o_conv, o_bn), (n_conv, n_bn), score in zip(old, new, channel_importance(model, faces), strict=True):
        k = n_conv.out_channels
        if k > o_conv.out_channels:
            raise ValueError(f"cannot widen a layer ({o_conv.out_channels} -> {k} channels) by pruning")
        keep = score.topk(k).indices.sort().values
        n_conv.weight.copy_(o_conv.weight[keep][:, keep_in])
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(n_bn, name).copy_(getattr(o_bn, name)[keep])
        keep_in = keep
    narrow.head.fc.weight.copy_(model.head.fc.weight[:, keep_in])
    narrow.head.fc.bias.copy_(model.head.fc.bias)
    return narrow.eval()


def prune_checkpoint(src: str | os.PathLike[str], width: int, out: str | os.PathLike[str]) -> Path:
    """Prune a trained VGG checkpoint to `width` channels in its first stage; save it (config width updated) to `out`."""
    if width < 1:
        raise ValueError(f"--width is the first stage's channel count of the pruned copy, at least 1, not {width}")
    loaded = load_model(src)
    if not isinstance(loaded.model, VGG):
        raise CheckpointError(f"{src}: pruning needs a VGG-family model, not {loaded.config.model}")
    cfg = replace(loaded.config, width=width, init=str(src))
    narrow = build_model(cfg.model, width=width, drop_rate=cfg.drop_rate)
    assert isinstance(narrow, VGG)  # the same registry name as the VGG just loaded
    prune_vgg(loaded.model, narrow, calibration_batch(loaded.norm, cfg.crop_size))
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, narrow, cfg, loaded.norm, pruned_from=str(src))
    return out


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=cli_prog("fer_core.prune"), description=__doc__)
    p.add_argument("--checkpoint", required=True, help="trained VGG checkpoint to prune")
    p.add_argument("--width", type=int, required=True, help="first-stage channels of the pruned copy (doubling per stage)")
    p.add_argument("--out", required=True, type=output_file,
                   help="where to write the pruned checkpoint (fine-tune it with train --init)")
    args = p.parse_args(argv)
    try:
        path = prune_checkpoint(args.checkpoint, args.width, args.out)
    except (CheckpointError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {args.checkpoint} pruned to width {args.width}; fine-tune it with "
          f"python -m fer_core.train --init {path} --width {args.width} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
