"""Normalisation, batched tensor augmentation and the eval/TTA views shared by every code path."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import IMAGE_SIZE

# (max rotation in degrees, zoom range, max extra shift in px, brightness/contrast jitter)
AUGMENT_LEVELS: dict[str, tuple[float, float, float, float]] = {
    "none": (0.0, 0.0, 0.0, 0.0),
    "light": (0.0, 0.0, 2.0, 0.0),
    "standard": (10.0, 0.1, 2.0, 0.2),
    "strong": (15.0, 0.2, 4.0, 0.3),
}
TTA_VIEWS = {"none": "centre crop", "flip": "centre crop and its mirror (2 views)",
             "tencrop": "four corner crops and the centre crop, each mirrored (10 views)",
             "multiscale": "centre crop and the whole face scaled down to the crop size, each mirrored (4 views)"}
TTA_MODES = tuple(TTA_VIEWS)


@dataclass(frozen=True)
class Normalization:
    """Pixel statistics of the Training split (0..255 scale)."""

    mean: float = 129.4
    std: float = 65.0

    @classmethod
    def fit(cls, images: torch.Tensor) -> Normalization:
        """Compute mean and std from uint8 images (B, H, W)."""
        x = images.to(torch.float64)
        return cls(mean=float(x.mean()), std=float(x.std()))


def to_float(images: torch.Tensor, norm: Normalization, channels_last: bool = False) -> torch.Tensor:
    """uint8 (B, H, W) or (B, 1, H, W) -> normalised float32 (B, 1, H, W)."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    x = (images.to(torch.float32) - norm.mean) / norm.std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Crop the central size x size window of (B, C, H, W)."""
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def eval_views(x: torch.Tensor, crop_size: int, tta: str = "none",
               resize: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Views for evaluation: (V, B, C, crop, crop); V = 1 (none), 2 (flip), 10 (ten-crop) or 4 (multiscale).

    "multiscale" pairs the centre crop with the whole 48 px face resized to the crop (antialiased bilinear), each
    mirrored: on PublicTest it matched ten-crop (the releases it was chosen with: fer_resnet 73.45% against 73.17%,
    fer_vgg 71.89% against 71.66%, neither difference significant) at 4 views instead of 10. `resize` replaces that
    resize (an ONNX export uses `resize_matrix`, the same map as matrix products)."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
    c = centre_crop(x, crop_size)
    if tta == "none":
        return c.unsqueeze(0)
    h, w = x.shape[-2:]
    if tta == "flip" or crop_size == h:  # nothing to crop: ten-crop and multiscale degenerate to flip
        return torch.stack([c, c.flip(-1)])
    if tta == "multiscale":
        whole = resize(x) if resize else F.interpolate(x, size=(crop_size, crop_size), mode="bilinear", antialias=True,
                                                       align_corners=False)
        return torch.stack([c, whole, c.flip(-1), whole.flip(-1)])
    corners = [x[..., :crop_size, :crop_size], x[..., :crop_size, w - crop_size :],
               x[..., h - crop_size :, :crop_size], x[..., h - crop_size :, w - crop_size :], c]
    return torch.stack(corners + [v.flip(-1) for v in corners])


def resize_matrix(src: int, dst: int) -> torch.Tensor:
    """R (dst, src) with R @ X @ R.T equal to eval_views' antialiased bilinear resize of a (src, src) image X."""
    eye = torch.eye(src).reshape(src, 1, 1, src)  # each row a one-pixel-high image with a single bright pixel
    out = F.interpolate(eye, size=(1, dst), mode="bilinear", antialias=True, align_corners=False)
    return out.reshape(src, dst).T.contiguous()


def preprocess(images: torch.Tensor, norm: Normalization, crop_size: int) -> torch.Tensor:
    """The single eval preprocessing: uint8 (B, 48, 48) -> normalised centre crop (B, 1, crop, crop)."""
    if images.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected 48x48 images, got {tuple(images.shape[-2:])}")
    return centre_crop(to_float(images, norm), crop_size).contiguous()


def _affine_params(b: int, level: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    rot, zoom, _, _ = AUGMENT_LEVELS[level]
    dev = gen.device
    angle = (torch.rand(b, generator=gen, device=dev) * 2 - 1) * math.radians(rot)
    scale = 1 + (torch.rand(b, generator=gen, device=dev) * 2 - 1) * zoom
    flip = torch.where(torch.rand(b, generator=gen, device=dev) < 0.5, -1.0, 1.0)
    return angle, scale, flip, torch.rand(b, 2, generator=gen, device=dev) * 2 - 1


def augment_batch(
    x: torch.Tensor, crop_size: int, gen: torch.Generator, level: str = "standard", erasing: float = 0.0
) -> torch.Tensor:
    """Per-image random crop, flip, rotation, zoom, jitter and erasing for a normalised batch.

    One affine grid_sample call does crop + flip + rotation + zoom for the whole batch, with
    independent parameters per image (torchvision v2 transforms draw one set per call).
    Random numbers come from `gen` on gen's device: a generator on x's GPU keeps the whole step on the GPU
    (a CPU draw copied over would make every batch wait for the previous one). (B, 1, H, W) -> (B, 1, crop, crop).
    """
    if level not in AUGMENT_LEVELS:
        raise ValueError(f"augment must be one of {list(AUGMENT_LEVELS)}, not {level!r}")
    b, _, h, _ = x.shape
    _, _, shift_px, jitter = AUGMENT_LEVELS[level]
    angle, scale, flip, shift = (t.to(x.device) for t in _affine_params(b, level, gen))  # no-op when gen is on x's device
    s0 = crop_size / h
    max_shift = ((h - crop_size) / 2 + shift_px) * 2 / h  # in normalised [-1, 1] units
    if level == "none":
        flip, shift = torch.ones(b, device=x.device), torch.zeros(b, 2, device=x.device)
    cos, sin = torch.cos(angle) * s0 / scale, torch.sin(angle) * s0 / scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, shift[:, 0] * max_shift], 1),
        torch.stack([sin * flip, cos, shift[:, 1] * max_shift], 1),
    ], 1)  # (B, 2, 3): output coords -> input coords
    grid = F.affine_grid(theta, [b, 1, crop_size, crop_size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if jitter > 0:
        contrast = (1 + (torch.rand(b, 1, 1, 1, generator=gen, device=gen.device) * 2 - 1) * jitter).to(x.device)
        bright = ((torch.rand(b, 1, 1, 1, generator=gen, device=gen.device) * 2 - 1) * jitter).to(x.device)
        out = out * contrast + bright
    if erasing > 0:
        out = random_erasing(out, erasing, gen)
    return out


DEGRADE_BLUR = (0.5, 0.8, 1.2)  # Gaussian sigmas in px, one drawn per degraded image
DEGRADE_SIDES = (16, 22, 30)  # low resolution: shrunk to this side of a 44 px crop (scaled to the crop) and back
DEGRADE_NOISE_GREY = 15.0  # noise up to this many grey levels
DEGRADE_NOISE = DEGRADE_NOISE_GREY / 65.0  # the same in normalised units (the Training std is about 65)


def degrade_batch(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """With probability p per image, one of three degradations of a photo: Gaussian blur, low resolution or Gaussian
    noise, each with a random strength, batched by kind and strength. Applied after augment_batch (training gives its
    teacher the undegraded batch)."""
    b, _, h, w = x.shape
    dev = gen.device
    on = torch.rand(b, generator=gen, device=dev) < p
    kind = torch.randint(0, 3, (b,), generator=gen, device=dev)
    level = torch.randint(0, 3, (b,), generator=gen, device=dev)
    amount = torch.rand(b, generator=gen, device=dev)
    on, kind, level, amount = (t.to(x.device) for t in (on, kind, level, amount))
    out = x.clone()
    for i in range(3):
        blur = on & (kind == 0) & (level == i)
        if blur.any():
            out[blur] = gaussian_blur(x[blur], DEGRADE_BLUR[i])
        small = on & (kind == 1) & (level == i)
        if small.any():
            out[small] = low_resolution(x[small], max(4, round(DEGRADE_SIDES[i] * h / 44)))
    noisy = on & (kind == 2)
    if noisy.any():
        noise = torch.randn(x[noisy].shape, generator=gen, device=dev).to(x.device)
        out[noisy] = x[noisy] + noise * (amount[noisy] * DEGRADE_NOISE).view(-1, 1, 1, 1)
    return out


JPEG_QUALITIES = (10, 15, 25, 40)  # --jpeg: one drawn per compressed face
_LUMA = torch.tensor([  # JPEG's luminance quantisation table (ITU T.81, Annex K), scaled by quality as libjpeg does
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)
_k = torch.arange(8, dtype=torch.float64)
_DCT = (torch.cos((2 * _k[None, :] + 1) * _k[:, None] * math.pi / 16) * torch.where(_k[:, None] == 0, math.sqrt(1 / 8),
                                                                                    math.sqrt(2 / 8))).float()


def jpeg_table(quality: int) -> torch.Tensor:
    """The 8 x 8 quantisation steps libjpeg (and so PIL) uses for greyscale at this quality (1-100)."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return ((_LUMA * scale + 50) // 100).clamp(1, 255)


def jpeg_like(x: torch.Tensor, quality: int, norm: Normalization | None = None) -> torch.Tensor:
    """(B, 1, H, W) normalised faces as after a JPEG round trip at `quality`: 8 x 8 blocks from the top left corner
    (edge-padded), their DCT quantised with jpeg_table(quality), grey levels rounded and clipped; batched tensor ops."""
    norm = norm or Normalization()
    b, _, h, w = x.shape
    ph, pw = -h % 8, -w % 8
    g = F.pad(x * norm.std + norm.mean - 128, (0, pw, 0, ph), mode="replicate")
    blocks = g.reshape(b, (h + ph) // 8, 8, (w + pw) // 8, 8).transpose(2, 3)  # (B, rows, cols, 8, 8)
    d, q = _DCT.to(x), jpeg_table(quality).to(x)
    coef = torch.round(d @ blocks @ d.T / q) * q
    g = (d.T @ coef @ d).transpose(2, 3).reshape(b, 1, h + ph, w + pw)[..., :h, :w]
    return (torch.round(g + 128).clamp(0, 255) - norm.mean) / norm.std


def jpeg_batch(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """With probability p per image, JPEG compression at one of JPEG_QUALITIES (`--jpeg`), batched by quality."""
    b = len(x)
    on = (torch.rand(b, generator=gen, device=gen.device) < p).to(x.device)
    level = torch.randint(0, len(JPEG_QUALITIES), (b,), generator=gen, device=gen.device).to(x.device)
    out = x.clone()
    for i, quality in enumerate(JPEG_QUALITIES):
        chosen = on & (level == i)
        if chosen.any():
            out[chosen] = jpeg_like(x[chosen], quality)
    return out


def photo_batch(x: torch.Tensor, degrade: float, jpeg: float, gen: torch.Generator) -> torch.Tensor:
    """degrade_batch then jpeg_batch, each only where its probability is above 0 (so that runs without one draw the
    same random numbers as before it existed)."""
    x = degrade_batch(x, degrade, gen) if degrade > 0 else x
    return jpeg_batch(x, jpeg, gen) if jpeg > 0 else x


def low_resolution(x: torch.Tensor, side: int) -> torch.Tensor:
    """(B, 1, H, W) shrunk to side x side (area averaging) and enlarged back (bilinear): the detail a small face lacks."""
    small = F.interpolate(x, size=(side, side), mode="area")
    return F.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, 1, H, W) with reflected borders."""
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = k / k.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    return F.conv2d(F.conv2d(x, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))


def random_erasing(x: torch.Tensor, p: float, gen: torch.Generator, area: tuple[float, float] = (0.02, 0.2)) -> torch.Tensor:
    """Zero (= the mean) one random rectangle per image with probability p, vectorised over the batch."""
    b, _, h, w = x.shape
    dev = gen.device
    frac = area[0] + torch.rand(b, generator=gen, device=dev) * (area[1] - area[0])
    aspect = torch.exp((torch.rand(b, generator=gen, device=dev) * 2 - 1) * math.log(3.0))
    eh = (torch.sqrt(frac * h * w * aspect)).clamp(1, h).long()
    ew = (torch.sqrt(frac * h * w / aspect)).clamp(1, w).long()
    top = (torch.rand(b, generator=gen, device=dev) * (h - eh + 1)).long()
    left = (torch.rand(b, generator=gen, device=dev) * (w - ew + 1)).long()
    on = torch.rand(b, generator=gen, device=dev) < p
    top, left, eh, ew, on = (t.to(x.device) for t in (top, left, eh, ew, on))
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    mask = ((rows >= top.view(b, 1, 1)) & (rows < (top + eh).view(b, 1, 1))
            & (cols >= left.view(b, 1, 1)) & (cols < (left + ew).view(b, 1, 1)) & on.view(b, 1, 1))
    return x.masked_fill(mask.unsqueeze(1), 0.0)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float,
          gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mix each image with a shuffled partner; returns (x_mixed, y, y_partner, lam)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(x.shape[0], generator=gen, device=gen.device).to(x.device)
    return lam * x + (1 - lam) * x[perm], y, y[perm], lam
