"""SGD training with augmentation, LR schedule, early stopping and resumable run folders; CLI `python -m fer_core.train`."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import CheckpointError, float_weights, read_checkpoint, save_checkpoint
from .checks import SCHEDULES, check_config, check_device, check_precision, config_problems, read_config_file
from .config import (
    RECIPES,
    DataNotFoundError,
    TrainConfig,
    atomic_write_json,
    cli_main,
    cli_prog,
    parse_bool,
    set_seed,
    set_threads,
    tune_allocator,
)
from .data import DataError, FERData, load_dataset
from .distill import Teacher, combined_loss, load_teachers
from .ema import WeightEMA
from .metrics import eta_seconds
from .models import build_model, count_params, list_models
from .runfolder import RunFolder, Stopper
from .targets import class_weights, select_splits, soft_targets, val_unseen
from .transforms import Normalization, augment_batch, mixup, photo_batch, preprocess

EpochCallback = Callable[[dict[str, Any]], None]
StepCallback = Callable[[int, int, float], None]


def lr_at(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning rate at a global step: cosine with linear warmup, step decay, or constant."""
    total = cfg.epochs * steps_per_epoch
    warm = cfg.warmup_epochs * steps_per_epoch
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":  # divide by 10 at 50% and 75% of training
        return cfg.lr * (0.1 ** ((step >= total * 0.5) + (step >= total * 0.75)))
    if cfg.schedule != "cosine":
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {cfg.schedule!r}")
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with Nesterov momentum; no weight decay on batch-norm parameters and biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)


def build_for_training(cfg: TrainConfig, device: torch.device,
                       weights: dict[str, torch.Tensor] | None = None) -> tuple[nn.Module, torch.optim.SGD]:
    """cfg's model (with `weights` loaded, else freshly initialised) on device, channels_last if asked, and its SGD."""
    model = build_model(cfg.model, width=cfg.width, drop_rate=cfg.drop_rate)
    if weights is not None:
        model.load_state_dict(weights)
    model = model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels once
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    set_relu_inplace(model, True)  # only for training: Captum's hooks need build_model's out-of-place ReLUs
    return model, make_optimizer(model, cfg)


def set_relu_inplace(model: nn.Module, inplace: bool) -> None:
    """Make every nn.ReLU work in place (one activation-sized allocation less per block, the same numbers) or not."""
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = inplace


def bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 convolutions natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def forward(model: nn.Module, xb: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Training forward pass; "bf16" runs it under bfloat16 autocast (CPU or CUDA) and returns fp32 logits."""
    check_precision(precision)
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = model(xb)
    return out.float()


def train_one_epoch(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                    norm: Normalization, epoch: int, weight: torch.Tensor | None = None,
                    on_step: StepCallback | None = None, stopper: Stopper | None = None,
                    targets: torch.Tensor | None = None, teacher: Teacher | None = None,
                    ema: WeightEMA | None = None) -> dict[str, float]:
    """One pass over uint8 images x (N, 48, 48) on the model's device; returns loss, accuracy, images/s (or `stopped`).

    `targets` (N, 7), when given, are the training targets (soft labels) instead of the class indices y; accuracy
    is still against y. A `teacher` adds its distillation term, scored on the same augmented batch; `ema` is
    updated after every step. Loss and accuracy accumulate on the device, augmentation draws its random numbers
    there, and on a GPU `on_step` is called every 25 steps: nothing makes the loop wait for the GPU after each batch.
    """
    model.train()
    seed = cfg.seed * 100_003 + epoch  # fixed per epoch: resume is exact
    gen = torch.Generator().manual_seed(seed)
    aug_gen = gen if x.device.type == "cpu" else torch.Generator(device=x.device).manual_seed(seed)
    torch.manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen).to(x.device)
    steps = len(x) // cfg.batch_size  # drop the last partial batch (batch norm dislikes tiny batches)
    level = cfg.augment
    report_every = 1 if x.device.type == "cpu" else 25
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    seen = 0
    t0 = time.perf_counter()
    for i in range(steps):
        if stopper is not None and stopper.stop:
            return {"stopped": True}
        idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
        xb = ((x[idx].float() - norm.mean) / norm.std).unsqueeze(1)  # (B, 1, 48, 48)
        xb = augment_batch(xb, cfg.crop_size, aug_gen, level, cfg.erasing)
        yb = y[idx]
        tb = yb if targets is None else targets[idx]  # class indices or (B, 7) probabilities
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        for g in opt.param_groups:
            g["lr"] = lr_at(cfg, epoch * steps + i, steps)
        if cfg.mixup > 0:
            xb, ta, tb2, lam = mixup(xb, tb, cfg.mixup, aug_gen)
        shown = xb  # the teacher scores the face undegraded: its answer is what the face shows, not what survives
        if cfg.degrade > 0 or cfg.jpeg > 0:
            xb = photo_batch(xb, cfg.degrade, cfg.jpeg, aug_gen)
            xb = xb.contiguous(memory_format=torch.channels_last) if cfg.channels_last else xb
        out = forward(model, xb, cfg.precision)
        if cfg.mixup > 0:
            loss = lam * F.cross_entropy(out, ta, weight, label_smoothing=cfg.label_smoothing) + (1 - lam) * F.cross_entropy(
                out, tb2, weight, label_smoothing=cfg.label_smoothing)
        else:
            loss = F.cross_entropy(out, tb, weight, label_smoothing=cfg.label_smoothing)
        loss = combined_loss(loss, out, teacher.logits(shown) if teacher is not None else None, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update()
        total_loss += loss.detach() * len(idx)
        correct += (out.argmax(1) == yb).sum()
        seen += len(idx)
        if on_step is not None and ((i + 1) % report_every == 0 or i + 1 == steps):
            on_step(i + 1, steps, loss.item())
    mean_loss, n_correct = total_loss.item(), correct.item()  # waits for the device's last step
    secs = time.perf_counter() - t0
    return {"train_loss": mean_loss / max(seen, 1), "train_acc": n_correct / max(seen, 1),
            "train_seconds": secs, "images_per_s": seen / max(secs, 1e-9)}


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: Normalization, crop_size: int,
             batch_size: int = 512, channels_last: bool = True, unseen: torch.Tensor | None = None) -> dict[str, float]:
    """Loss and accuracy on uint8 images with the eval preprocessing (centre crop), on the model's device; with the
    `unseen` mask (targets.val_unseen) also the accuracy on those faces alone."""
    model.eval()
    loss, right = 0.0, torch.zeros(len(x), dtype=torch.bool, device=x.device)
    for i in range(0, len(x), batch_size):
        xb = preprocess(x[i : i + batch_size], norm, crop_size)
        out = model(xb.contiguous(memory_format=torch.channels_last) if channels_last else xb)
        loss += F.cross_entropy(out, y[i : i + batch_size], reduction="sum").item()
        right[i : i + batch_size] = out.argmax(1) == y[i : i + batch_size]
    row = {"val_loss": loss / max(len(x), 1), "val_acc": int(right.sum()) / max(len(x), 1)}
    if unseen is not None:
        row["val_acc_unseen"] = int(right[unseen.to(x.device)].sum()) / max(int(unseen.sum()), 1)
    return row


def read_init(cfg: TrainConfig) -> dict[str, Any]:
    """The checkpoint named by cfg.init, checked to hold the same architecture as cfg (ValueError otherwise)."""
    init = read_checkpoint(cfg.init)
    theirs = TrainConfig.from_dict(init["config"])
    if (theirs.model, theirs.width) != (cfg.model, cfg.width):
        raise ValueError(f"--init {cfg.init}: holds model {theirs.model!r} width {theirs.width}, "
                         f"but this run trains {cfg.model!r} width {cfg.width}")
    return init


def fit(cfg: TrainConfig, run_dir: str | os.PathLike[str], resume: bool = False, on_epoch_end: EpochCallback | None = None,
        on_step: StepCallback | None = None, stopper: Stopper | None = None, data: FERData | None = None) -> dict[str, Any]:
    """Train per cfg into run_dir; resume continues from last.pt. Returns the final status dict."""
    check_config(cfg)  # before any file is written
    teachers = load_teachers(cfg.teacher)  # a bad teacher fails before the data loads
    device = check_device(cfg.device)  # likewise; resuming keeps this device, whatever the run trained on
    run = RunFolder(run_dir)
    set_threads(cfg.threads)
    tune_allocator()
    set_seed(cfg.seed)
    start_epoch, best_acc, best_epoch, history = 0, -1.0, -1, []
    ckpt = None
    if resume and run.file("last.pt").exists():
        ckpt = read_checkpoint(run.file("last.pt"))
        cfg = TrainConfig.from_dict({**ckpt["config"], "epochs": cfg.epochs, "patience": cfg.patience, "device": cfg.device})
    data = data if data is not None else load_dataset(cfg.data or None, labels=cfg.labels)
    x, y, vx, vy = (t.to(device) for t in select_splits(data, cfg))  # uint8 images: 74 MB for all of FER2013
    targets, unseen = soft_targets(data, cfg), val_unseen(data, cfg)
    targets = targets.to(device) if targets is not None else None
    init = read_init(cfg) if ckpt is None and cfg.init else None
    source = ckpt or init
    norm = Normalization(**source["norm"]) if source else Normalization.fit(x.cpu())
    model, opt = build_for_training(cfg, device, float_weights(init) if init is not None else None)
    teacher = Teacher(teachers, norm, cfg.precision, device) if teachers else None
    ema = WeightEMA(model, cfg.ema) if cfg.ema > 0 else None  # then selection, best.pt and reports use the average
    judged = ema.model if ema is not None else model
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["optimizer"])
        start_epoch, best_acc, best_epoch = ckpt["epoch"] + 1, ckpt["best_acc"], ckpt["best_epoch"]
        history = [r for r in run.read_metrics() if r["epoch"] < start_epoch]
    atomic_write_json(run.file("config.json"), {**cfg.to_dict(), "num_params": count_params(model)})
    weight = class_weights(y).to(device) if cfg.class_weights else None
    status: dict[str, Any] = {"state": "running", "epoch": start_epoch, "epochs": cfg.epochs, "best_acc": best_acc,
                              "best_epoch": best_epoch, "started": time.time()}
    run.write_status(**status)
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        tr = train_one_epoch(model, opt, x, y, cfg, norm, epoch, weight, on_step, stopper, targets, teacher, ema)
        if tr.get("stopped"):
            status["state"] = "stopped"
            break
        row = {"epoch": epoch, **tr, **evaluate(judged, vx, vy, norm, cfg.crop_size, channels_last=cfg.channels_last,
                                                unseen=unseen), "lr": opt.param_groups[0]["lr"], "time": time.time()}
        improved = row["val_acc"] > best_acc
        if improved:
            best_acc, best_epoch = row["val_acc"], epoch
            save_checkpoint(run.file("best.pt"), judged, cfg, norm, epoch=epoch, best_acc=best_acc, best_epoch=best_epoch,
                            metrics=row)
        save_checkpoint(run.file("last.pt"), model, cfg, norm, optimizer=opt.state_dict(), epoch=epoch,
                        best_acc=best_acc, best_epoch=best_epoch, **({"ema": ema.state_dict()} if ema else {}))
        history.append(row)
        run.write_metrics(history)
        status |= {"epoch": epoch + 1, "best_acc": best_acc, "best_epoch": best_epoch, "last": row,
                   "eta_s": eta_seconds(history, cfg.epochs - epoch - 1)}
        early = cfg.patience > 0 and epoch - best_epoch >= cfg.patience
        if early or epoch + 1 == cfg.epochs:
            status["state"] = "finished"
            status["reason"] = "early stop" if early else "all epochs done"
        run.write_status(**status)
        if on_epoch_end is not None:
            on_epoch_end(row)
        if early:
            break
    else:
        status["state"] = "finished"
    if status["state"] == "running":  # loop ended by a stop with nothing left to do
        status["state"] = "finished"
    run.write_status(**status)
    return status


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=cli_prog("fer_core.train"), description="Train a FER model (resumable run folder).")
    p.add_argument("--run", default="runs/default", help="run folder (created; holds checkpoints and metrics)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    add_config_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--list-models", action="store_true", help="print the registered models with parameter counts and exit")
    p.add_argument("--dry-run", action="store_true", help="print the settings the run would use (defaults, recipe, --config, "
                   "--init's recipe, flags) as JSON for --config, check them, and exit without training")
    return p


def add_config_args(p: argparse.ArgumentParser) -> None:
    """The flags config_from_args reads: --recipe, --config and one per TrainConfig field."""
    p.add_argument("--recipe", choices=list(RECIPES), help="start from a named recipe (flags and --config override it): "
                   + "; ".join(f"{name}: {r.summary}" for name, r in RECIPES.items()).replace("%", "%%"))
    p.add_argument("--config", help="JSON file of TrainConfig fields (flags override it)")
    for f in fields(TrainConfig):  # one flag per field, None = not given (the recipe, --config or --init decides)
        kind = type(f.default)
        default = f" (default: {f.default})" if f.default != "" else ""
        p.add_argument(f"--{f.name.replace('_', '-')}", type=parse_bool if kind is bool else kind, default=None,
                       metavar=f.name.upper(), help=(f.metadata["help"] + default).replace("%", "%%"))


# Fields an --init checkpoint does not pass on: where it ran and how fast that machine was (bf16 pays only on CPUs with
# AVX512-BF16/AMX; emulated it is ~10x slower), and the teacher it learned from (a file on that machine; the shipped
# model's names a folder no user has, and fine-tuning should not distil unless asked: --teacher).
LOCAL_FIELDS = ("data", "device", "threads", "precision", "teacher", "distill", "distill_t")


def init_recipe(checkpoint: str | os.PathLike[str], base: TrainConfig | None = None) -> TrainConfig:
    """What `--init checkpoint` starts from: the checkpoint's recipe with base's LOCAL_FIELDS (default: defaults)."""
    base = base or TrainConfig()
    return TrainConfig.from_dict(read_checkpoint(checkpoint)["config"]).replace(
        init=str(checkpoint), **{name: getattr(base, name) for name in LOCAL_FIELDS})


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then --recipe, then --config, then the --init checkpoint's recipe (not its LOCAL_FIELDS), then the
    run's own config when resuming, then flags."""
    base = RECIPES[args.recipe].config() if args.recipe else TrainConfig()
    if args.config:
        base = TrainConfig.from_dict({**base.to_dict(), **read_config_file(args.config)})
    last = Path(args.run) / "last.pt"
    if args.resume and last.exists():
        base = TrainConfig.from_dict(read_checkpoint(last)["config"])
    elif args.init:  # the recipe, not where it ran: this machine's data, device, threads, precision, and no teacher
        base = init_recipe(args.init, base)
    changes = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    return base.replace(**changes)


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.list_models:
        width = args.width or TrainConfig.width
        for name in list_models():
            print(f"{name:<10} width {width:>3}: {count_params(build_model(name, width=width)):>12,} parameters")
        return 0
    if Path(args.run).exists() and not Path(args.run).is_dir():
        print(f"error: --run {args.run} is a file; give the folder for the run (made if missing)", file=sys.stderr)
        return 2
    try:
        cfg = config_from_args(args)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    problems = config_problems(cfg)
    if problems:  # refused before the run folder is made or the model built
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        return 2
    if args.dry_run:  # nothing is made or loaded: the JSON round-trips through --config
        print(json.dumps(cfg.to_dict(), indent=1))
        return 0
    if args.resume and not (Path(args.run) / "last.pt").exists():  # a mistyped run name would start afresh unnoticed
        print(f"note: nothing to resume in {args.run} (no last.pt yet): starting the run from its first epoch",
              file=sys.stderr, flush=True)
    stopper = Stopper()
    stopper.install()

    def on_step(i: int, n: int, loss: float) -> None:
        if not args.quiet and (i % 10 == 0 or i == n):
            print(f"\r  step {i}/{n} loss {loss:.3f}", end="", file=sys.stderr, flush=True)

    def on_epoch(row: dict[str, Any]) -> None:
        unseen = f" (faces Training lacks {row['val_acc_unseen']:.4f})" if "val_acc_unseen" in row else ""
        print(f"\repoch {row['epoch'] + 1}/{cfg.epochs} train_loss {row['train_loss']:.3f} train_acc {row['train_acc']:.3f} "
              f"val_acc {row['val_acc']:.4f}{unseen} lr {row['lr']:.4f} {row['images_per_s']:.0f} img/s", flush=True)

    model = build_model(cfg.model, width=cfg.width, drop_rate=cfg.drop_rate)
    print(f"model {cfg.model} width {cfg.width}: {count_params(model):,} parameters; run folder {args.run}", flush=True)
    try:
        status = fit(cfg, args.run, resume=args.resume, on_epoch_end=on_epoch, on_step=on_step, stopper=stopper)
    except (DataNotFoundError, DataError, CheckpointError, OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)  # OSError: an unwritable run folder or a full disk (last.pt is intact)
        if Path(args.run).is_dir():
            RunFolder(args.run).write_status(state="failed", error=str(e))
        return 2
    print(f"{status['state']}: best val_acc {status['best_acc']:.4f} at epoch {status['best_epoch'] + 1}", flush=True)
    return 0 if status["state"] in ("finished", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
