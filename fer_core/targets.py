"""Which rows a run trains and validates on, and their training targets: class indices or FER+ soft labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .config import NUM_CLASSES, TrainConfig
from .data import DataError, FERData, with_vote_shares


def training_rows(data: FERData, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices into the Training split: the rows trained on, and those held out for validation (every 10th, only
    when the data has no cfg.val_split); cfg.limit keeps the first N rows trained on."""
    rows = torch.arange(len(data.split("Training")[1]))
    if cfg.val_split in data.images:
        train, held = rows, rows[:0]
    else:
        hold = rows % 10 == 0
        train, held = rows[~hold], rows[hold]
    return (train[: cfg.limit] if cfg.limit > 0 else train), held


def select_splits(data: FERData, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training and validation tensors; without the val split, hold out every 10th training image."""
    x, y = data.split("Training")
    train, held = training_rows(data, cfg)
    vx, vy = data.split(cfg.val_split) if cfg.val_split in data.images else (x[held], y[held])
    if len(train) < cfg.batch_size or len(vx) == 0:
        where = f" ({cfg.val_split})" if cfg.val_split in data.images else " (every 10th Training image, as there is no "\
            f"{cfg.val_split} split)"
        raise DataError(f"{data.source or 'the data'}: {len(train)} images to train on and {len(vx)} to validate on{where}; "
                        f"training needs at least one batch ({cfg.batch_size}) and one validation image")
    return x[train], y[train], vx, vy


def val_unseen(data: FERData, cfg: TrainConfig) -> torch.Tensor | None:
    """(N,) bool over select_splits' validation faces: those with no copy in Training (fer_core.audit), scored apart
    as val_acc_unseen; None where the validation faces come from Training or none of them has a copy there."""
    from .audit import seen_in_training

    seen = seen_in_training(data, cfg.val_split) if cfg.val_split in data.images else None
    return torch.from_numpy(~seen) if seen is not None and seen.any() else None


def check_soft_labels(weight: float) -> None:
    """ValueError unless 0 <= weight <= 1."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"soft_labels is the weight of the FER+ vote shares in each target, 0 to 1, not {weight}")


def soft_targets(data: FERData, cfg: TrainConfig) -> torch.Tensor | None:
    """(N, 7) targets for the rows select_splits trains on: the one-hot FER2013 label moved towards the image's FER+
    vote shares by cfg.soft_labels (the one-hot alone where FER+ has no majority); None when soft_labels is 0."""
    check_soft_labels(cfg.soft_labels)
    if cfg.soft_labels == 0:
        return None
    data = with_vote_shares(data)
    train, _ = training_rows(data, cfg)
    onehot = F.one_hot(data.labels["Training"][train], NUM_CLASSES).float()
    shares = data.extra["dist_Training"][train].float()
    voted = (shares.sum(1, keepdim=True) > 0).float()
    return onehot + cfg.soft_labels * voted * (shares - onehot)


def class_weights(labels: torch.Tensor) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1."""
    counts = torch.bincount(labels, minlength=NUM_CLASSES).float().clamp(min=1)
    w = counts.sum() / (NUM_CLASSES * counts)
    return w / w.mean()
