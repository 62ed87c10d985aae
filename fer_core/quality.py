"""Face-crop quality: blur, noise, light, size and JPEG checks that say when a prediction deserves less trust."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .config import IMAGE_SIZE

# Limits from FER2013 Training (28,709 faces; `python benchmarks/quality.py` recomputes them): a face is flagged where
# fewer than about 2% of the training faces (1% for light) are as blurred, noisy, dark or flat. The models saw few faces
# like it, and on PublicTest they are right less often on them (README, Face quality).
SHARPNESS_MIN = 0.24  # 2nd percentile of the Laplacian's variance over the face's own variance (contrast-free)
NOISE_MAX = 8.5  # 98th percentile of the noise level in grey levels (Immerkaer 1996)
BRIGHTNESS_MIN = 52.0  # 1st percentile of the mean grey level
CONTRAST_MIN = 25.0  # 1st percentile of the grey levels' standard deviation
SMALL_PX = 32  # a crop cut from a square under this many pixels of the photo was enlarged 1.5x or more to 48
# 99th percentile of the jumps across JPEG's 8 x 8 block edges over those mid-block (about 1.0: no blocks). A face cut
# from more than 48 px of the photo is shrunk to 48, which smooths most blocks away: its limit grows as (side / 48)^0.8,
# fitted to the harm JPEG does to PublicTest faces enlarged, compressed and shrunk back (benchmarks/quality.py).
BLOCKINESS_MAX = 1.3
BLOCKINESS_GROWTH = 0.8
BLOCK = 8
GRID_STANDOUT = 1.15  # a JPEG grid is found off the corner where its line's jumps are 15% over the next line's (one line
# of 8, not the 2 or 4 of an enlarged picture): in 400 x 380 px photos 1.16-1.46x at quality 50, 1.4-2.4x at 25 and 10,
# at most 1.02x uncompressed
GRID_MIN_SIDE = 128  # smaller pictures keep the corner: over fewer lines the search found grids in 4-23% of unshifted ones

ISSUES: dict[str, str] = {  # what each flag means, for people
    "blurry": "blurred, out of focus or enlarged: the fine detail is gone",
    "noisy": "grainy, as photos in poor light are",
    "dark": "underexposed",
    "low contrast": "flat light or a washed-out photo",
    "small": f"under {SMALL_PX} px across in the photo, enlarged to {IMAGE_SIZE}",
    "compressed": "heavy JPEG compression: the detail is smeared into 8 x 8 blocks",
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
    blockiness: float = 1.0  # jumps across JPEG block edges over those mid-block, in the photo (about 1.0: no blocks)

    def to_dict(self) -> dict[str, object]:
        return {"issues": list(self.issues), "sharpness": round(self.sharpness, 3), "noise": round(self.noise, 2),
                "brightness": round(self.brightness, 1), "contrast": round(self.contrast, 1), "source_px": self.source_px,
                "blockiness": round(self.blockiness, 2)}


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
    return {"sharpness": sharpness, "noise": noise, "brightness": flat.mean(1), "contrast": contrast,
            "blockiness": _blockiness(f.squeeze(1))}


def _line_jumps(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For float images (N, H, W): the mean grey-level jump between each column and the next (N, W - 1), and between
    each row and the next (N, H - 1)."""
    return (f[:, :, 1:] - f[:, :, :-1]).abs().mean(1), (f[:, 1:, :] - f[:, :-1, :]).abs().mean(2)


def _blockiness(f: torch.Tensor, x0: int = 0, y0: int = 0) -> torch.Tensor:
    """(N,) for float images (N, H, W) whose top left pixel is (x0, y0) of the picture JPEG divided into 8 x 8 blocks
    from its own top left corner: the median, over the block edges (lines between columns 7|8, 15|16, ... and such
    rows), of the mean grey-level jump across the edge over that across the two lines mid-block beside it (4 away).
    About 1.0 without blocks. The median lets one straight edge of the scene on a block edge count for little; the lines
    4 away make a face enlarged 2x or 4x (a jump every 2 or 4 lines) no blockier than a sharp one."""
    ratios = []
    for d, start in zip(_line_jumps(f), (x0, y0), strict=True):
        lines = torch.arange(BLOCK // 2, max(BLOCK // 2, d.shape[1] - BLOCK // 2))  # none in a sliver of a picture
        lines = lines[(lines + start) % BLOCK == BLOCK - 1]
        mid = (d[:, lines - BLOCK // 2] + d[:, lines + BLOCK // 2]) / 2
        ratios.append(d[:, lines] / mid.clamp(min=1.0))
    if min(r.shape[1] for r in ratios) < 2:
        return torch.ones(len(f))  # under about 24 px: too few block edges to tell
    return torch.cat(ratios, 1).median(1).values


def grid_phase(image: Image.Image, most: int = 1024) -> tuple[int, int]:
    """Where the photo's JPEG block edges are: (px, py) with edges between columns px|px+1 (mod 8), and rows likewise;
    (7, 7), blocks from the top left corner, unless the jumps on another line of every 8 stand out from those on the
    others (GRID_STANDOUT): a photo cropped or padded after it was compressed. Read from at most `most` px square of
    its middle, cut at multiples of 8 so that the grid stays where it is; a picture under GRID_MIN_SIDE keeps the corner."""
    if min(image.size) < GRID_MIN_SIDE:
        return BLOCK - 1, BLOCK - 1
    x0, y0 = (max(0, (n - most) // 2) // BLOCK * BLOCK for n in image.size)
    middle = image.crop((x0, y0, min(image.width, x0 + most), min(image.height, y0 + most)))
    grey = torch.from_numpy(np.array(middle.convert("L"), dtype=np.float32))
    phase = []
    for d in _line_jumps(grey.unsqueeze(0)):
        per = torch.stack([d[0, r::BLOCK].mean() for r in range(BLOCK)])  # the mean jump on each line of every 8
        best = int(per.argmax())
        second = per[torch.arange(BLOCK) != best].max().clamp(min=1e-6)  # one line of 8: not an enlargement's 2 or 4
        phase.append(best if per[best] >= GRID_STANDOUT * second else BLOCK - 1)
    return phase[0], phase[1]


def source_blockiness(image: Image.Image, squares: list[tuple[int, int, int]]) -> list[float]:
    """Blockiness of each face square (x, y, side) of a photo, measured at the photo's own pixels on its block grid,
    wherever that grid is (grid_phase: a photo cropped after it was compressed has its blocks elsewhere)."""
    px, py = grid_phase(image) if squares else (BLOCK - 1, BLOCK - 1)
    out = []
    for x, y, side in squares:
        box = (max(0, x), max(0, y), min(image.width, x + side), min(image.height, y + side))
        grey = torch.from_numpy(np.array(image.crop(box).convert("L"), dtype=np.float32))
        out.append(float(_blockiness(grey.unsqueeze(0), box[0] + BLOCK - 1 - px, box[1] + BLOCK - 1 - py)[0]))
    return out


def blockiness_limit(source_px: int | None) -> float:
    """BLOCKINESS_MAX for a face cut from `source_px` pixels of its photo (None: the crop is the photo)."""
    return BLOCKINESS_MAX * max(1.0, (source_px or IMAGE_SIZE) / IMAGE_SIZE) ** BLOCKINESS_GROWTH


def assess(crops: np.ndarray | torch.Tensor, source_px: list[int] | None = None,
           blockiness: list[float] | None = None) -> list[Quality]:
    """The quality of each face crop (N, 48, 48) uint8; `source_px`, where known, the side in the photo each was cut
    from; `blockiness`, where known, each one's in the photo (source_blockiness), else the crop's own."""
    m = measure(crops)
    n = len(m["sharpness"])
    for name, given in (("source sizes", source_px), ("blockiness values", blockiness)):
        if given is not None and len(given) != n:
            raise ValueError(f"{len(given)} {name} for {n} crops")
    out = []
    for i in range(n):
        sharp, noise, light, spread = (float(m[k][i]) for k in ("sharpness", "noise", "brightness", "contrast"))
        px = None if source_px is None else int(source_px[i])
        blocks = float(m["blockiness"][i] if blockiness is None else blockiness[i])
        flags = {"blurry": sharp < SHARPNESS_MIN, "noisy": noise > NOISE_MAX, "dark": light < BRIGHTNESS_MIN,
                 "low contrast": spread < CONTRAST_MIN, "small": px is not None and px < SMALL_PX,
                 "compressed": blocks > blockiness_limit(px if blockiness is not None else None)}
        out.append(Quality(sharp, noise, light, spread, px, tuple(k for k, bad in flags.items() if bad), blocks))
    return out


def describe(issues: tuple[str, ...] | list[str]) -> str:
    """One line for people: "" for none, else e.g. "blurry (blurred or out of focus: ...); small (...)"."""
    return "; ".join(f"{k} ({ISSUES[k]})" for k in issues)
