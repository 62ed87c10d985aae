"""Knowledge distillation: a trained checkpoint's softened outputs on each training batch as extra targets."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import LoadedModel
from .config import TrainConfig
from .transforms import Normalization


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
    """A frozen checkpoint that scores the student's normalised, augmented batches (same pixels, its own normalisation)."""

    def __init__(self, loaded: LoadedModel, student_norm: Normalization, precision: str = "fp32",
                 device: torch.device | str = "cpu") -> None:
        self.net: nn.Module = loaded.model.to(device, memory_format=torch.channels_last).eval()
        self.precision = precision
        for p in self.net.parameters():
            p.requires_grad_(False)
        # (x - m_s) / s_s -> (x - m_t) / s_t  ==  xb * scale + shift
        self.scale = student_norm.std / loaded.norm.std
        self.shift = (student_norm.mean - loaded.norm.mean) / loaded.norm.std

    @torch.inference_mode()
    def logits(self, xb: torch.Tensor) -> torch.Tensor:
        """(B, 1, h, w) student-normalised batch -> (B, 7) fp32 teacher logits."""
        xt = xb * self.scale + self.shift
        with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            out = self.net(xt)
        return out.float()


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """Hinton's term: t^2 * KL(softmax(teacher / t) || softmax(student / t)), averaged over the batch."""
    target = F.softmax(teacher / t, dim=1)
    return F.kl_div(F.log_softmax(student / t, dim=1), target, reduction="batchmean") * t * t


def combined_loss(hard: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor | None, cfg: TrainConfig) -> torch.Tensor:
    """(1 - distill) * the label loss + distill * the teacher's term; the label loss alone without a teacher."""
    if teacher is None:
        return hard
    return (1 - cfg.distill) * hard + cfg.distill * distill_loss(student, teacher, cfg.distill_t)
