"""Checks of a training config before a run starts: every problem at once, each saying what to give instead."""

from __future__ import annotations

from collections.abc import Callable

from .config import IMAGE_SIZE, TrainConfig
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
    above = value > high if high is not None and not high_open else high is not None and value >= high
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


def config_problems(cfg: TrainConfig) -> list[str]:
    """Every field of cfg a run would refuse or crash on, as messages (empty when the config is fine). The checks that
    need files (data, --init, --teacher, a GPU) happen when the run starts."""
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
        _range("limit", cfg.limit, 0, meaning=" (0 = all)"),
        _range("threads", cfg.threads, 0, meaning=" (0 = all cores)"),
        _refusal(lambda: check_soft_labels(cfg.soft_labels)),
        _refusal(lambda: check_ema(cfg.ema)),
        _refusal(lambda: check_distill(cfg)),
    ]
    return [p for p in found if p]


def check_config(cfg: TrainConfig) -> None:
    """ValueError listing every problem config_problems finds; nothing when there is none."""
    problems = config_problems(cfg)
    if problems:
        raise ValueError("; ".join(problems))
