"""Why the model said what it said: Captum attribution maps for one face crop (compute) and heat-map overlays (render)."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np
import torch
from captum.attr import GuidedBackprop, GuidedGradCam, IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency
from PIL import Image
from torch import nn

from .checkpoint import LoadedModel
from .config import IMAGE_SIZE, NUM_CLASSES
from .crops import MARGIN, face_square, turned_square
from .faces import Box
from .transforms import preprocess

METHODS: dict[str, str] = {
    "gradcam": "Grad-CAM (last convolution layer)",
    "saliency": "Saliency (gradient magnitude)",
    "smoothgrad": "SmoothGrad (gradient averaged over noisy copies)",
    "integrated_gradients": "Integrated Gradients (from a mean-grey face)",
    "occlusion": "Occlusion (probability drop when an 8x8 patch is greyed out)",
    "guided_backprop": "Guided Backprop",
    "guided_gradcam": "Guided Grad-CAM",
}
_GUIDED_CAVEAT = ("Sanity check (Adebayo et al., 2018, 'Sanity Checks for Saliency Maps'): this map barely changes when the "
                  "model's weights are randomised, so it shows edges of the image more than what the model learned. "
                  "Compare it with Grad-CAM or Saliency before trusting it.")
CAVEATS: dict[str, str] = {"guided_backprop": _GUIDED_CAVEAT, "guided_gradcam": _GUIDED_CAVEAT}
# Captum warns on every guided call that it hooks the ReLUs (and removes the hooks after): expected, not news to a user.
warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations", category=UserWarning)

IG_STEPS = 32  # Gauss-Legendre: within 5% of a 256-step result; ~490 ms (ResNet-48), ~195 ms (VGG-48) on 2 threads
SMOOTHGRAD_SAMPLES = 16
SMOOTHGRAD_STDEV = 0.15  # in normalised units (data std = 1); Captum's default 1.0 drowns the face in noise
OCCLUSION_WINDOW, OCCLUSION_STRIDE = 8, 4  # 8x8 patches cover an eye or the mouth corner at 44 px
OCCLUSION_BATCH = 128  # perturbed copies per forward pass (all 100 windows of a 44 px crop in one pass)


def last_conv(model: nn.Module) -> nn.Conv2d:
    """The last nn.Conv2d in module order: where Grad-CAM looks, whatever the architecture."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer for Grad-CAM")
    return convs[-1]


def _private_copy(model: nn.Module) -> nn.Module:
    # Captum adds and removes hooks on the module it is given; a per-call copy keeps the shared model (one per
    # dashboard process) free of hooks, so concurrent explanations cannot interleave. Weights need no gradient.
    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _smoothgrad(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    # Noise from a private generator: deterministic, and no global RNG state shared with other threads.
    gen = torch.Generator().manual_seed(0)
    noisy = x.detach() + SMOOTHGRAD_STDEV * torch.randn((SMOOTHGRAD_SAMPLES, *x.shape[1:]), generator=gen)
    return Saliency(net).attribute(noisy.requires_grad_(), target=target, abs=True).mean(0, keepdim=True)


def _gradcam(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    cam = LayerGradCam(net, last_conv(net)).attribute(x, target=target, relu_attributions=True)  # (1, 1, h, w)
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")


def _occlusion(net: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    probs = lambda inp: torch.softmax(net(inp), 1)  # probabilities read as "how much the class loses"
    return Occlusion(probs).attribute(x, target=target, sliding_window_shapes=(1, OCCLUSION_WINDOW, OCCLUSION_WINDOW),
                                      strides=(1, OCCLUSION_STRIDE, OCCLUSION_STRIDE), baselines=0.0,
                                      perturbations_per_eval=OCCLUSION_BATCH)


# Each returns attributions shaped like x (1, 1, crop, crop); only positive values are shown (abs for gradients).
_ATTRIBUTE: dict[str, Callable[[nn.Module, torch.Tensor, int], torch.Tensor]] = {
    "gradcam": _gradcam,
    "saliency": lambda net, x, t: Saliency(net).attribute(x, target=t, abs=True),
    "smoothgrad": _smoothgrad,
    "integrated_gradients": lambda net, x, t: IntegratedGradients(net).attribute(
        x, baselines=torch.zeros_like(x), target=t, n_steps=IG_STEPS, internal_batch_size=IG_STEPS).abs(),
    "occlusion": _occlusion,
    "guided_backprop": lambda net, x, t: GuidedBackprop(net).attribute(x, target=t).abs(),
    "guided_gradcam": lambda net, x, t: GuidedGradCam(net, last_conv(net)).attribute(
        x, target=t, interpolate_mode="bilinear").abs(),
}


def _to_unit_map(attr: torch.Tensor, crop_size: int) -> np.ndarray:
    """(1, 1, c, c) attributions -> (48, 48) float32 in [0, 1], zero outside the centre crop the model saw."""
    a = np.nan_to_num(attr.detach().reshape(crop_size, crop_size).numpy().astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    a = np.maximum(a, 0.0)
    # Scale by the 99th percentile, not the max: one extreme gradient pixel would otherwise leave the rest black.
    top = float(np.quantile(a, 0.99))
    top = top if top > 0 else float(a.max())
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    if top > 0:
        off = (IMAGE_SIZE - crop_size) // 2  # same offset as transforms.centre_crop
        out[off : off + crop_size, off : off + crop_size] = np.clip(a / top, 0.0, 1.0)
    return out


def explain(model: LoadedModel, crop: np.ndarray, method: str = "gradcam", target: int | None = None) -> np.ndarray:
    """Attribution map (48, 48) float32 in [0, 1] for a uint8 (48, 48) face crop; target = class index (default: predicted)."""
    if method not in _ATTRIBUTE:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    crop = np.asarray(crop)
    if crop.shape != (IMAGE_SIZE, IMAGE_SIZE) or crop.dtype != np.uint8:
        raise ValueError(f"expected a uint8 ({IMAGE_SIZE}, {IMAGE_SIZE}) crop, got {crop.dtype} {crop.shape}")
    if target is not None and not 0 <= int(target) < NUM_CLASSES:
        raise ValueError(f"target must be a class index in 0..{NUM_CLASSES - 1}, not {target}")
    crop_size = model.config.crop_size
    # A caller inside inference_mode or no_grad (e.g. a prediction path) must not silently break the gradients.
    with torch.inference_mode(False), torch.enable_grad():
        net = _private_copy(model.model)
        x = preprocess(torch.from_numpy(np.ascontiguousarray(crop))[None], model.norm, crop_size)  # (1, 1, c, c)
        if target is None:
            with torch.no_grad():
                target = int(net(x).argmax(1))
        attr = _ATTRIBUTE[method](net, x.clone().requires_grad_(), int(target))
    return _to_unit_map(attr, crop_size)


# ---------------------------------------------------------------------------------------------- render


@lru_cache(maxsize=16)
def _lut(cmap: str) -> np.ndarray:
    """(256, 3) uint8 colour table of a matplotlib colormap (matplotlib comes with Captum)."""
    import matplotlib

    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"unknown colormap {cmap!r}") from None
    return (colormap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def _blend(rgb: np.ndarray, heat: np.ndarray, alpha: float, cmap: str) -> np.ndarray:
    # Opacity grows with the heat, so cold regions keep showing the face instead of a blue wash. uint8 colours and
    # cv2.blendLinear keep a whole-photo overlay at ~15 bytes per pixel.
    colours = _lut(cmap)[np.rint(heat * 255).astype(np.uint8)]  # (H, W, 3) uint8
    w = np.ascontiguousarray(alpha * heat, dtype=np.float32)
    return cv2.blendLinear(colours, np.ascontiguousarray(rgb, dtype=np.uint8), w, 1.0 - w)


def _as_rgb(image: np.ndarray | Image.Image) -> Image.Image:
    return (image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image).astype(np.uint8))).convert("RGB")


def overlay(image: np.ndarray | Image.Image, heatmap: np.ndarray, alpha: float = 0.5, box: Box | None = None,
            cmap: str = "jet", margin: float = MARGIN, size: int = 192, angle: float = 0.0) -> Image.Image:
    """Heat map over the face crop (box=None; shown at size x size px) or over the photo inside the face's crop square.

    With a box, `margin` and `angle` must be the ones the crop was cut with (FacePrediction.margin and .angle).
    """
    heat = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float32)), 0.0, 1.0)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be 2-D, got shape {heat.shape}")
    if box is None:
        base = _as_rgb(image).resize((size, size), Image.Resampling.BILINEAR)
        big = cv2.resize(heat, (size, size), interpolation=cv2.INTER_LINEAR)
        return Image.fromarray(_blend(np.asarray(base), big, alpha, cmap))
    photo = _as_rgb(image).copy()
    if angle:
        return _overlay_turned(photo, heat, alpha, cmap, box, margin, angle)
    x0, y0, side = face_square(box, margin)
    width, height = photo.size
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(width, x0 + side), min(height, y0 + side)
    if cx1 <= cx0 or cy1 <= cy0:
        return photo  # the box lies outside this image: nothing to draw
    # Sample the map only where the square meets the photo (resizing it to side x side first would allocate
    # side**2 floats: gigabytes for a whole-image "face" of a long panorama).
    s = heat.shape[1] / side, heat.shape[0] / side
    to_map = np.array([[s[0], 0, (cx0 - x0 + 0.5) * s[0] - 0.5], [0, s[1], (cy0 - y0 + 0.5) * s[1] - 0.5]], np.float32)
    big = cv2.warpAffine(heat, to_map, (cx1 - cx0, cy1 - cy0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    region = np.asarray(photo.crop((cx0, cy0, cx1, cy1)))
    photo.paste(Image.fromarray(_blend(region, big, alpha, cmap)), (cx0, cy0))
    return photo


def _overlay_turned(photo: Image.Image, heat: np.ndarray, alpha: float, cmap: str, box: Box, margin: float,
                    angle: float) -> Image.Image:
    """overlay() for a face turned by `angle`: the map turned with the face square; pixels outside it stay as they were."""
    (x0, y0, x1, y1), to_crop = turned_square(box, margin, angle)
    width, height = photo.size
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        return photo
    kx, ky = heat.shape[1] / IMAGE_SIZE, heat.shape[0] / IMAGE_SIZE  # crop pixels to map pixels, centres kept
    to_map = np.array([[kx, 0, kx / 2 - 0.5], [0, ky, ky / 2 - 0.5], [0, 0, 1]]) @ np.vstack([to_crop, [0, 0, 1]])
    to_map = to_map @ np.array([[1, 0, cx0 - x0], [0, 1, cy0 - y0], [0, 0, 1]])  # from the visible part's pixels
    big = cv2.warpAffine(heat, to_map[:2].astype(np.float32), (cx1 - cx0, cy1 - cy0),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    region = np.asarray(photo.crop((cx0, cy0, cx1, cy1)))
    photo.paste(Image.fromarray(_blend(region, big, alpha, cmap)), (cx0, cy0))  # zero heat outside: blend weight 0
    return photo
