"""Knowledge distillation: a trained checkpoint's softened outputs on each training batch as extra targets."""

from __future__ import annotations

import os
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import LoadedModel, load_model
from .config import TrainConfig
from .transforms import Normalization, eval_views, to_float


def teacher_paths(teacher: str) -> list[str]:
    """The checkpoints named by a teacher setting: one path, or several separated by commas (an ensemble)."""
    return [os.path.expanduser(p.strip()) for p in teacher.split(",") if p.strip()]


def load_teachers(teacher: str) -> list[LoadedModel]:
    """Load every teacher checkpoint (a missing or corrupt one raises CheckpointError naming it)."""
    return [load_model(p) for p in teacher_paths(teacher)]


def check_distill(cfg: TrainConfig) -> None:
    """ValueError unless the distillation fields agree: a teacher exactly when 0 < distill <= 1, and distill_t > 0."""
    if not 0.0 <= cfg.distill <= 1.0:
        raise ValueError(f"distill is the weight of the teacher's term in the loss, 0 to 1, not {cfg.distill}")
    if cfg.distill_t <= 0:
        raise ValueError(f"distill_t (the softmax temperature of the distillation term) must be > 0, not {cfg.distill_t}")
    if cfg.distill > 0 and not cfg.teacher:
        raise ValueError("distill > 0 needs a teacher checkpoint (--teacher PATH)")
    if cfg.teacher and cfg.distill == 0:
        raise ValueError(f"--teacher {cfg.teacher} is unused with distill 0: give --distill W (e.g. 0.5)")


class Teacher:
    """Frozen checkpoints that score the student's normalised, augmented batches (same pixels, each its own normalisation).

    One checkpoint gives its logits; several (an ensemble) give the log of their mean probabilities, which the
    distillation term treats as logits: softmax(log p / t) is the ensemble's distribution softened by t.
    """

    def __init__(self, loaded: LoadedModel | list[LoadedModel], student_norm: Normalization, precision: str = "fp32",
                 device: torch.device | str = "cpu") -> None:
        members = loaded if isinstance(loaded, list) else [loaded]
        if not members:
            raise ValueError("a Teacher needs at least one checkpoint")
        self.nets: list[nn.Module] = [m.model.to(device).to(memory_format=torch.channels_last).eval() for m in members]
        self.precision = precision
        for net in self.nets:
            for p in net.parameters():
                p.requires_grad_(False)
        # (x - m_s) / s_s -> (x - m_t) / s_t  ==  xb * scale + shift, per member
        self.affine = [(student_norm.std / m.norm.std, (student_norm.mean - m.norm.mean) / m.norm.std) for m in members]

    @torch.inference_mode()
    def logits(self, xb: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) student-normalised batch -> (B, 7) fp32 teacher logits (ensemble: log mean probability)."""
        outs = []
        for net, (scale, shift) in zip(self.nets, self.affine, strict=True):
            with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                outs.append(net(xb * scale + shift).float())
        if len(outs) == 1:
            return outs[0]
        return torch.stack([F.softmax(o, dim=1) for o in outs]).mean(0).log()


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """Hinton's term: t^2 * KL(softmax(teacher / t) || softmax(student / t)), averaged over the batch."""
    target = F.softmax(teacher / t, dim=1)
    return F.kl_div(F.log_softmax(student / t, dim=1), target, reduction="batchmean") * t * t


def combined_loss(hard: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor | None, cfg: TrainConfig) -> torch.Tensor:
    """(1 - distill) * the label loss + distill * the teacher's term; the label loss alone without a teacher."""
    if teacher is None:
        return hard
    return (1 - cfg.distill) * hard + cfg.distill * distill_loss(student, teacher, cfg.distill_t)


@torch.inference_mode()
def centre_probs(loaded: LoadedModel, images: torch.Tensor, device: torch.device | str = "cpu",
                 batch_size: int = 512) -> torch.Tensor:
    """(N, 7) softmax probabilities of uint8 images' (N, 48, 48) centre crops, computed on `device` (a GPU too)."""
    net = loaded.model.to(device).eval()
    views = eval_views(to_float(images, loaded.norm), loaded.config.crop_size, "none")[0]
    out = [F.softmax(net(views[i : i + batch_size].to(device)).float(), dim=1).cpu()
           for i in range(0, len(views), batch_size)]
    loaded.model.cpu()
    return torch.cat(out) if out else torch.zeros(0, 7)


def best_teacher(probs: dict[str, torch.Tensor], labels: torch.Tensor, min_members: int = 2) -> tuple[list[str], float]:
    """The subset (at least min_members, all if fewer) of candidates whose mean probability is most accurate on
    `labels`, and that accuracy: picks a teacher on the validation split. probs: name -> (N, 7) probabilities."""
    names = list(probs)
    best: tuple[float, list[str]] = (-1.0, names)
    for k in range(min(min_members, len(names)), len(names) + 1):
        for subset in combinations(names, k):
            acc = (torch.stack([probs[n] for n in subset]).mean(0).argmax(1) == labels).float().mean().item()
            if acc > best[0]:
                best = (acc, list(subset))
    return best[1], best[0]
