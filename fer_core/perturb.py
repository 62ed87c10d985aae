"""Named corruptions of 48x48 faces for robustness evaluation: blur, noise, light, low resolution, JPEG, occlusion."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from .transforms import gaussian_blur, low_resolution

# Where the features lie in FER2013's roughly aligned faces (rows of the 48x48 image, from the mean PublicTest face:
# the eyes darkest at rows 14-20, the mouth at 36-40).
EYES_ROWS, LOWER_ROWS = (12, 24), (29, 48)


def _noise(x: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    return x + std * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))


def _contrast(x: torch.Tensor, factor: float) -> torch.Tensor:
    mean = x.mean(dim=(2, 3), keepdim=True)
    return mean + factor * (x - mean)


def _jpeg(images: torch.Tensor, quality: int) -> torch.Tensor:
    out = []
    for face in images.numpy():
        buf = io.BytesIO()
        Image.fromarray(face).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L")))
    return torch.from_numpy(np.stack(out)) if out else images.clone()


def _band(x: torch.Tensor, rows: tuple[int, int]) -> torch.Tensor:
    x = x.clone()
    x[:, :, rows[0]:rows[1], :] = 128.0  # mid-grey, like a plain occluder
    return x


_FLOAT: dict[str, tuple[str, Callable[[torch.Tensor, int], torch.Tensor]]] = {
    "blur-1": ("Gaussian blur, sigma 1 px", lambda x, s: gaussian_blur(x, 1.0)),
    "blur-2": ("Gaussian blur, sigma 2 px", lambda x, s: gaussian_blur(x, 2.0)),
    "noise-10": ("Gaussian noise, sigma 10 grey levels", lambda x, s: _noise(x, 10.0, s)),
    "noise-25": ("Gaussian noise, sigma 25 grey levels", lambda x, s: _noise(x, 25.0, s)),
    "dark": ("brightness x 0.4 (an underexposed photo)", lambda x, s: x * 0.4),
    "low-contrast": ("contrast x 0.4 about each face's mean", lambda x, s: _contrast(x, 0.4)),
    "lowres-24": ("shrunk to 24 px and enlarged back", lambda x, s: low_resolution(x, 24)),
    "lowres-12": ("shrunk to 12 px and enlarged back", lambda x, s: low_resolution(x, 12)),
    "occlude-eyes": (f"grey band over rows {EYES_ROWS[0]}-{EYES_ROWS[1] - 1}, where the eyes lie (sunglasses)",
                     lambda x, s: _band(x, EYES_ROWS)),
    "occlude-lower": (f"grey band over rows {LOWER_ROWS[0]}-{LOWER_ROWS[1] - 1}: mouth and chin (a face mask)",
                      lambda x, s: _band(x, LOWER_ROWS)),
}
PERTURBATIONS: dict[str, str] = {"none": "the faces as they are", **{k: v[0] for k, v in _FLOAT.items()},
                                 "jpeg-10": "JPEG at quality 10"}


def check_corruption(name: str) -> None:
    """ValueError unless PERTURBATIONS has `name`."""
    if name not in PERTURBATIONS:
        raise ValueError(f"corruption must be one of {', '.join(PERTURBATIONS)}, not {name!r}")


def perturb(images: torch.Tensor, name: str, seed: int = 0) -> torch.Tensor:
    """uint8 faces (N, 48, 48) -> uint8 corrupted copies (PERTURBATIONS names them); the same seed, the same noise."""
    check_corruption(name)
    if name == "none":
        return images
    if name == "jpeg-10":
        return _jpeg(images, 10)
    out = _FLOAT[name][1](images.float().unsqueeze(1), seed).squeeze(1)
    return out.round().clamp(0, 255).to(torch.uint8)
