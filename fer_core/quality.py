"""Face-crop quality: blur, noise, light and size checks that say when a prediction deserves less trust."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import IMAGE_SIZE

# Limits from FER2013 Training (28,709 faces; `python benchmarks/quality.py` recomputes them): a face is flagged where
# fewer than about 2% of the training faces (1% for light) are as blurred, noisy, dark or flat. The models saw few faces
# like it, and on PublicTest they are right less often on them (README, Face quality).
SHARPNESS_MIN = 0.24  # 2nd percentile of the Laplacian's variance over the face's own variance (contrast-free)
NOISE_MAX = 8.5  # 98th percentile of the noise level in grey levels (Immerkaer 1996)
BRIGHTNESS_MIN = 52.0  # 1st percentile of the mean grey level
CONTRAST_MIN = 25.0  # 1st percentile of the grey levels' standard deviation
SMALL_PX = 32  # a crop cut from a square under this many pixels of the photo was enlarged 1.5x or more to 48

ISSUES: dict[str, str] = {  # what each flag means, for people
    "blurry": "blurred, out of focus or enlarged: the fine detail is gone",
    "noisy": "grainy, as photos in poor light are",
    "dark": "underexposed",
    "low contrast": "flat light or a washed-out photo",
    "small": f"under {SMALL_PX} px across in the photo, enlarged to {IMAGE_SIZE}",
}

_LAPLACE = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3)
_IMMERKAER = torch.tensor([[1.0, -2, 1], [-2, 4, -2], [1, -2, 1]]).view(1, 1, 3, 3)


@dataclass(frozen=True)
class Quality:
    """One face crop's measurements and the issues they raise (names of ISSUES; empty for an unremarkable face)."""

    sharpness: float  # variance of the Laplacian / variance of the face: under 0.1 the detail is gone
    noise: float  # estimated Gaussian noise, grey levels
    brightness: float  # mean grey level, 0-255
    contrast: float  # standard deviation of the grey levels
    source_px: int | None  # side of the photo's square the crop was cut from (None: not known)
    issues: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"issues": list(self.issues), "sharpness": round(self.sharpness, 3), "noise": round(self.noise, 2),
                "brightness": round(self.brightness, 1), "contrast": round(self.contrast, 1), "source_px": self.source_px}


def measure(crops: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
    """Sharpness, noise, brightness and contrast of uint8 face crops (N, H, W), each a float tensor (N,)."""
    x = torch.as_tensor(np.ascontiguousarray(crops)) if isinstance(crops, np.ndarray) else crops
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or x.shape[-1] < 3 or x.shape[-2] < 3:
        raise ValueError(f"expected greyscale crops (N, H, W) of at least 3 x 3 pixels, got {tuple(x.shape)}")
    f = x.float().unsqueeze(1)
    flat = f.flatten(1)
    contrast = flat.std(1) if flat.shape[1] > 1 else torch.zeros(len(f))
    sharpness = F.conv2d(f, _LAPLACE).flatten(1).var(1) / contrast.clamp(min=1.0) ** 2
    noise = F.conv2d(f, _IMMERKAER).abs().flatten(1).mean(1) * math.sqrt(math.pi / 2) / 6
    return {"sharpness": sharpness, "noise": noise, "brightness": flat.mean(1), "contrast": contrast}


def assess(crops: np.ndarray | torch.Tensor, source_px: list[int] | None = None) -> list[Quality]:
    """The quality of each face crop (N, 48, 48) uint8; `source_px`, where known, the side in the photo each was cut from."""
    m = measure(crops)
    n = len(m["sharpness"])
    if source_px is not None and len(source_px) != n:
        raise ValueError(f"{len(source_px)} source sizes for {n} crops")
    out = []
    for i in range(n):
        sharp, noise, light, spread = (float(m[k][i]) for k in ("sharpness", "noise", "brightness", "contrast"))
        px = None if source_px is None else int(source_px[i])
        flags = {"blurry": sharp < SHARPNESS_MIN, "noisy": noise > NOISE_MAX, "dark": light < BRIGHTNESS_MIN,
                 "low contrast": spread < CONTRAST_MIN, "small": px is not None and px < SMALL_PX}
        out.append(Quality(sharp, noise, light, spread, px, tuple(k for k, bad in flags.items() if bad)))
    return out


def describe(issues: tuple[str, ...] | list[str]) -> str:
    """One line for people: "" for none, else e.g. "blurry (blurred or out of focus: ...); small (...)"."""
    return "; ".join(f"{k} ({ISSUES[k]})" for k in issues)
