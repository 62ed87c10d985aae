"""48x48 greyscale face crops cut from photos as training's were: a square around each face, turned with it if needed."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from .config import IMAGE_SIZE
from .faces import Box

# Context added around a detected face, as a fraction of its box on each side. Measured on the 560 sample faces
# (upscaled, detected again): a FER2013 crop is the Haar box itself (median crop/box side 1.01, quartiles 0.95-1.08),
# and on them a partly trained VGG lost 4.5 accuracy points with a 0.15 margin. So crops frame faces as training's do.
MARGIN = 0.0


def face_square(box: Box, margin: float = MARGIN) -> tuple[int, int, int]:
    """The square (x, y, side) a face crop covers: the box's long side plus `margin` of it on each side, same centre."""
    x, y, w, h = box
    side = max(1, round(max(w, h) * (1 + 2 * margin)))
    return round(x + w / 2 - side / 2), round(y + h / 2 - side / 2), side


def turned_square(box: Box, margin: float = MARGIN, angle: float = 0.0) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The bounds (x0, y0, x1, y1) of the face square turned by `angle`, and the 2x3 matrix from those bounds' pixel
    indices to the upright crop's (48 x 48 pixels)."""
    x0, y0, side = face_square(box, margin)
    cx, cy, half = x0 + side / 2, y0 + side / 2, side / 2 * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle))))
    bounds = (int(np.floor(cx - half)), int(np.floor(cy - half)), int(np.ceil(cx + half)), int(np.ceil(cy + half)))
    # Turn by -angle about the face's centre (back upright) and scale the square's side to 48 px, in pixel-centre terms.
    centre = (cx - bounds[0] - 0.5, cy - bounds[1] - 0.5)
    to_crop = np.asarray(cv2.getRotationMatrix2D(centre, -angle, IMAGE_SIZE / side), np.float64)
    to_crop[:, 2] += (IMAGE_SIZE / 2 - 0.5) - np.array(centre)
    return bounds, to_crop


def _crop_turned(image: Image.Image, box: Box, margin: float, angle: float) -> np.ndarray:
    (x0, y0, x1, y1), to_crop = turned_square(box, margin, angle)
    width, height = image.size
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if cx1 <= cx0 or cy1 <= cy0:
        raise ValueError(f"box {box} lies outside the {width} x {height} image")
    grey = np.asarray(image.crop((cx0, cy0, cx1, cy1)).convert("L"))
    # Shrink the part inside the image to about the crop's scale first (INTER_AREA averages; turning a large face
    # straight to 48 px would alias), then turn it; the border is replicated as for upright crops.
    s = min(1.0, float(np.hypot(*to_crop[0, :2])))
    small = grey if s == 1.0 else cv2.resize(grey, (max(1, round(grey.shape[1] * s)), max(1, round(grey.shape[0] * s))),
                                             interpolation=cv2.INTER_AREA)
    sx, sy = small.shape[1] / grey.shape[1], small.shape[0] / grey.shape[0]
    # small's pixel index i is the bounds' index (i + 0.5) / s - 0.5 + offset of the part inside the image
    from_small = np.array([[1 / sx, 0, 0.5 / sx - 0.5 + cx0 - x0], [0, 1 / sy, 0.5 / sy - 0.5 + cy0 - y0], [0, 0, 1]])
    return cv2.warpAffine(small, to_crop @ from_small, (IMAGE_SIZE, IMAGE_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def crop_face(image: Image.Image, box: Box, margin: float = MARGIN, angle: float = 0.0) -> np.ndarray:
    """A (48, 48) uint8 greyscale face crop: square around the box with a margin, edge-padded where it leaves the image;
    a face turned by `angle` degrees (Face.angle) is cut from the square turned with it, so the crop is upright."""
    if angle:
        return _crop_turned(image, box, margin, angle)
    x0, y0, side = face_square(box, margin)
    width, height = image.size
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(width, x0 + side), min(height, y0 + side)
    if cx1 <= cx0 or cy1 <= cy0:
        raise ValueError(f"box {box} lies outside the {width} x {height} image")
    grey = np.asarray(image.crop((cx0, cy0, cx1, cy1)).convert("L"))  # crop first: converting a whole photo is waste
    # Resize the part inside the image, then pad to 48x48: padding first would allocate side x side pixels, which for
    # a whole 50000 x 1000 panorama (--no-detect) is gigabytes. Replicating the border keeps padded pixels at face
    # brightness; black bands would shift the normalisation.
    s = IMAGE_SIZE / side
    left, top = min(IMAGE_SIZE - 1, round((cx0 - x0) * s)), min(IMAGE_SIZE - 1, round((cy0 - y0) * s))
    right, bottom = max(left + 1, round((cx1 - x0) * s)), max(top + 1, round((cy1 - y0) * s))
    shrink = grey.shape[0] > bottom - top or grey.shape[1] > right - left
    inner = cv2.resize(grey, (right - left, bottom - top), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    pad = ((top, IMAGE_SIZE - bottom), (left, IMAGE_SIZE - right))
    return np.pad(inner, pad, mode="edge") if any(p for pair in pad for p in pair) else inner
