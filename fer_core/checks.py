"""Checks of a training config before a run starts: every problem at once, each saying what to give instead."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import torch

from .config import IMAGE_SIZE, MAX_THREADS, TrainConfig, load_json_file
from .distill import check_distill
from .ema import check_ema
from .models import list_models
from .targets import check_soft_labels
from .transforms import AUGMENT_LEVELS

PRECISIONS = ("fp32", "bf16")
DEVICES = ("cpu", "cuda")
SCHEDULES = ("cosine", "step", "constant")
LABELS = ("fer2013", "ferplus")
VAL_SPLITS = ("PublicTest", "PrivateTest")
MIN_CROP = 16  # the smallest crop every registered model takes (vgg pools four times)


def _choice(name: str, value: str, allowed: tuple[str, ...] | list[str]) -> str | None:
    return None if value in allowed else f"{name} must be one of {', '.join(allowed)}, not {value!r}"


def _range(name: str, value: float, low: float, high: float | None = None, *, high_open: bool = False,
           meaning: str = "") -> str | None:
    above = high is not None and (value >= high if high_open else value > high)
    if value >= low and not above:
        return None
    span = f"at least {low:g}" if high is None else f"{low:g} to {'below ' if high_open else ''}{high:g}"
    return f"{name}{meaning} must be {span}, not {value:g}"


def _refusal(check: Callable[[], None]) -> str | None:
    try:
        check()
    except ValueError as e:
        return str(e)
    return None


def type_problems(cfg: TrainConfig) -> list[str]:
    """The fields of cfg whose value is not of the field's type (a number where a number belongs: ints count as floats)."""
    found = []
    for f in fields(cfg):
        value, kind = getattr(cfg, f.name), type(f.default)
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok:
            found.append(f"{f.name} must be {_KINDS[kind]}, not {value!r}")
    return found


_KINDS = {str: "a string", int: "a whole number", float: "a number", bool: "true or false"}


def config_problems(cfg: TrainConfig) -> list[str]:
    """Every field of cfg a run would refuse or crash on, as messages (empty when the config is fine). The checks that
    need files (data, --init, --teacher, a GPU) happen when the run starts."""
    wrong_type = type_problems(cfg)
    if wrong_type:  # the range checks below would compare strings with numbers
        return wrong_type
    found = [
        _choice("model", cfg.model, list_models()),
        _choice("labels", cfg.labels, LABELS),
        _choice("schedule", cfg.schedule, SCHEDULES),
        _choice("augment", cfg.augment, list(AUGMENT_LEVELS)),
        _choice("precision", cfg.precision, PRECISIONS),
        _choice("device", cfg.device, DEVICES),
        _choice("val_split", cfg.val_split, VAL_SPLITS),
        _range("width", cfg.width, 1, meaning=" (channels of the first stage)"),
        _range("drop_rate", cfg.drop_rate, 0, 1, high_open=True),
        _range("epochs", cfg.epochs, 1),
        _range("batch_size", cfg.batch_size, 2, meaning=" (batch norm needs two images per step)"),
        _range("lr", cfg.lr, 0),
        _range("momentum", cfg.momentum, 0, 1, high_open=True),
        _range("weight_decay", cfg.weight_decay, 0),
        _range("label_smoothing", cfg.label_smoothing, 0, 1, high_open=True),
        _range("warmup_epochs", cfg.warmup_epochs, 0),
        _range("patience", cfg.patience, 0, meaning=" (0 = off)"),
        _range("crop_size", cfg.crop_size, MIN_CROP, IMAGE_SIZE, meaning=f" (a crop of the {IMAGE_SIZE}x{IMAGE_SIZE} face)"),
        _range("erasing", cfg.erasing, 0, 1, meaning=" (a probability)"),
        _range("mixup", cfg.mixup, 0, meaning=" (alpha; 0 = off)"),
        _range("degrade", cfg.degrade, 0, 1, meaning=" (a probability)"),
        _range("jpeg", cfg.jpeg, 0, 1, meaning=" (a probability)"),
        _range("limit", cfg.limit, 0, meaning=" (0 = all)"),
        _range("threads", cfg.threads, 0, MAX_THREADS, meaning=" (0 = all cores)"),
        _refusal(lambda: check_soft_labels(cfg.soft_labels)),
        _refusal(lambda: check_ema(cfg.ema)),
        _refusal(lambda: check_distill(cfg)),
    ]
    return [p for p in found if p]


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The TrainConfig fields in a JSON file (`fer-train --config`); ValueError for a missing or unreadable file, one
    that is not a JSON object, or names no TrainConfig field has (a typo would otherwise be ignored)."""
    data = load_json_file(path, label=f"--config {path}")
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a JSON object of settings like {{\"lr\": 0.02}}, "
                         f"not a {type(data).__name__}")
    known = [f.name for f in fields(TrainConfig)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"--config {path}: unknown settings {', '.join(unknown)}; the settings are {', '.join(known)}")
    return data


def check_config(cfg: TrainConfig) -> None:
    """ValueError listing every problem config_problems finds; nothing when there is none."""
    problems = config_problems(cfg)
    if problems:
        raise ValueError("; ".join(problems))


def check_precision(precision: str) -> None:
    """ValueError unless precision is one of PRECISIONS."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")


def check_device(device: str) -> torch.device:
    """The torch device for a config's `device`; ValueError for an unknown name or a GPU this machine lacks."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but PyTorch sees no CUDA GPU here; train with --device cpu")
    return torch.device(device)


def available_devices() -> list[str]:
    """The DEVICES this machine can train on: always "cpu", then "cuda" where PyTorch sees a GPU."""
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
