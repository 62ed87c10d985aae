"""Saving and loading checkpoints: weights, config and normalisation, loadable with weights_only=True."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import DEFAULT_CHECKPOINT, EMOTIONS, TrainConfig, atomic_torch_save
from .models import build_model, count_params, inference_copy
from .quantize import QuantizationError, calibration_batch, check_inference_precision, int8_copy
from .transforms import Normalization

FORMAT = "fer_core.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or not one of ours; the message says which."""


@dataclass
class LoadedModel:
    """A model in eval mode with everything needed to preprocess its input."""

    model: nn.Module
    config: TrainConfig
    norm: Normalization
    path: str
    meta: dict[str, Any]
    precision: str = "fp32"  # inference: "fp32" (exact), "int8" (quantized copy, ~3x faster at batch 1), "onnx" /
    # "onnx-int8" (ONNX Runtime copies: same answers / ~99% the same, 2-3x faster than PyTorch's on an AVX2 CPU)

    @property
    def num_params(self) -> int:
        return count_params(self.model)

    @property
    def temperature(self) -> float:
        """Softmax temperature stored by `fer_core.calibrate` (1.0 = uncalibrated); probabilities use logits / T."""
        return float(self.meta.get("temperature", 1.0))

    def temperature_for(self, tta: str = "none") -> float:
        """The temperature fitted for a TTA mode (`fer_core.calibrate`), else the centre crop's, else 1.0."""
        return float(self.meta.get("temperature_tta", {}).get(tta, self.temperature))

    @cached_property
    def fast(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The eval-only copy used for predictions (oneDNN fp32, int8, ONNX Runtime); `model` stays for gradients and hooks."""
        if self.precision == "fp32":
            return inference_copy(self.model)
        calib = calibration_batch(self.norm, self.config.crop_size)
        if self.precision == "int8":
            return int8_copy(self.model, calib)
        from .onnxrt import ort_copy

        return ort_copy(self.model, calib, int8=self.precision == "onnx-int8")


def checkpoint_dict(model: nn.Module, cfg: TrainConfig, norm: Normalization, **extra: Any) -> dict[str, Any]:
    """The dict stored on disk; `extra` holds optimizer state, epoch, metrics..."""
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    return {"format": FORMAT, "config": cfg.to_dict(), "norm": {"mean": norm.mean, "std": norm.std},
            "emotions": list(EMOTIONS), "model": state, **extra}


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, cfg: TrainConfig, norm: Normalization, **extra: Any) -> None:
    atomic_torch_save(checkpoint_dict(model, cfg, norm, **extra), path)


def _load_error(e: Exception) -> str:
    """torch.load's failure in one line; its weights-only advice (load untrusted pickles) is not repeated."""
    if isinstance(e, pickle.UnpicklingError):
        return "not a pickle of tensors and plain values: a different file type, a damaged file, or arbitrary objects"
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first.split('. ')[0][:300]}"


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """torch.load with weights_only=True, turning every failure into a CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean the same thing here
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({_load_error(e)})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a fer_core checkpoint (expected format {FORMAT!r})")
    if list(ckpt.get("emotions", [])) != list(EMOTIONS):
        raise CheckpointError(f"{path}: trained for classes {ckpt.get('emotions')}, expected {list(EMOTIONS)}")
    return ckpt


def float_weights(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A checkpoint's state dict with floating tensors as float32 (shipped checkpoints store fp16)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}


def load_model(path: str | os.PathLike[str] | None = None, precision: str = "fp32") -> LoadedModel:
    """Load a checkpoint (default: the shipped model) as an eval-mode float32 model.

    precision="int8" predicts with a quantized copy, "onnx" / "onnx-int8" with ONNX Runtime copies (built here, ~1-4 s
    on 2 cores, so a failure is a clear CheckpointError now rather than later); gradients, Captum and `model` stay
    float32 PyTorch either way.
    """
    check_inference_precision(precision)
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    ckpt = read_checkpoint(path)
    cfg = TrainConfig.from_dict(ckpt["config"])
    try:
        model = build_model(cfg.model, width=cfg.width, drop_rate=cfg.drop_rate)
        model.load_state_dict(float_weights(ckpt))
    except (ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"{path}: weights do not fit model {cfg.model!r} (width {cfg.width}): {e}") from e
    model.eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}
    loaded = LoadedModel(model=model, config=cfg, norm=Normalization(**ckpt["norm"]), path=str(path), meta=meta,
                         precision=precision)
    if precision != "fp32":
        try:
            loaded.fast  # noqa: B018 - build (and check) the int8 or ONNX copy now
        except QuantizationError as e:
            raise CheckpointError(f"{path}: {e}") from e
    return loaded


def export_checkpoint(src: str | os.PathLike[str], dst: str | os.PathLike[str], half: bool = True) -> None:
    """Strip optimizer state from a training checkpoint (optionally storing weights as fp16) for shipping."""
    ckpt = read_checkpoint(src)
    keep = {k: v for k, v in ckpt.items() if k not in ("optimizer",)}
    if half:
        keep["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    atomic_torch_save(keep, dst)
