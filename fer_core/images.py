"""Safe image loading: any file, bytes, PIL image or array in, an RGB PIL image out, or an ImageError saying why not."""

from __future__ import annotations

import io
import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 50_000_000  # refuse larger images before decoding them (a 50 MP RGB image is already 150 MB)
MAX_FILE_BYTES = 200_000_000  # refuse larger files before reading them into memory
ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray


class ImageError(ValueError):
    """The input is not an image we can use; the message says why in words a user understands."""


# ---------------------------------------------------------------------------------------------- loading


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"empty image: {width} x {height} pixels")
    if width * height > MAX_PIXELS:
        raise ImageError(f"too large: {width} x {height} pixels exceeds the limit of {MAX_PIXELS / 1e6:g} megapixels "
                         "(refused as a possible decompression bomb)")


# Leading bytes of formats Pillow reads: a file that starts like one but does not open is corrupt, not "not an image".
_SIGNATURES = {b"\x89PNG": "PNG", b"\xff\xd8": "JPEG", b"GIF8": "GIF", b"BM": "BMP", b"II*\0": "TIFF", b"MM\0*": "TIFF",
               b"RIFF": "WebP"}


def _kind(data: bytes) -> str | None:
    return next((fmt for sig, fmt in _SIGNATURES.items() if data.startswith(sig)), None)


def _open(data: bytes, name: str) -> Image.Image:
    """Decode bytes into a fully loaded image, checking the header size before decoding any pixels."""
    if not data:
        raise ImageError(f"{name}: empty file")
    head = data[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        raise ImageError(f"{name}: SVG vector images are not supported; export it as PNG or JPEG")
    try:
        im = _open_header(data)
        _check_size(*im.size)  # header only: nothing is decoded yet
        im.load()  # decodes the first frame of an animation
    except ImageError as e:
        raise ImageError(f"{name}: {e}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(pixels[1]) / 1e6:g} megapixels" if pixels else "its size"
        raise ImageError(f"{name}: too large: {size} exceeds the limit of {MAX_PIXELS / 1e6:g} megapixels "
                         "(refused as a possible decompression bomb)") from None
    except UnidentifiedImageError:
        kind = _kind(data)
        why = f"corrupt or unsupported {kind} file (cannot read its header)" if kind else "not an image (format not recognised)"
        raise ImageError(f"{name}: {why}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError) as e:
        # Pillow reports corrupt and cut-off files through several exception types.
        why = "truncated or corrupt" if "truncat" in str(e).lower() or isinstance(e, EOFError) else "corrupt"
        raise ImageError(f"{name}: {why} {_kind(data) or 'image'} file ({e})") from None
    return im


_WARNINGS_LOCK = threading.Lock()  # catch_warnings swaps a process-wide filter list; serialise our use of it


def _open_header(data: bytes) -> Image.Image:
    """Image.open (reads the header only) with Pillow's decompression-bomb warning raised as an exception."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit int and float greyscale -> 8-bit, scaled by the range the values use (not clipped at 255)."""
    a = np.asarray(im).astype(np.float64)
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
    if im.mode == "F" and lo >= 0.0 and hi <= 1.0:
        scale, lo = 255.0, 0.0  # float images in [0, 1]
    elif lo >= 0.0 and hi <= 255.0:
        scale, lo = 1.0, 0.0
    elif lo >= 0.0 and hi <= 65535.0:
        scale, lo = 255.0 / 65535.0, 0.0  # 16-bit data, whatever container mode holds it
    else:
        scale = 255.0 / max(hi - lo, 1e-12)  # anything else: stretch the range it has
    return Image.fromarray(np.clip(np.rint((a - lo) * scale), 0, 255).astype(np.uint8), "L")


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB; transparency is composited onto white, as a browser shows it on a white page."""
    try:
        if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
            im = _high_depth_to_l(im)
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        if im.mode in ("LA", "La", "PA", "RGBa"):
            im = im.convert("RGBA")
        if im.mode == "RGBA":
            white = Image.new("RGBA", im.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, im).convert("RGB")
        return im if im.mode == "RGB" else im.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageError(f"unsupported image mode {im.mode!r} ({e})") from None


def _array_to_image(a: np.ndarray) -> Image.Image:
    """(H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA arrays of bool, integer or float [0, 1] / [0, 255] values."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(f"array of shape {a.shape} is not an image (expected H x W, H x W x 3 or H x W x 4)")
    _check_size(a.shape[1], a.shape[0])
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ImageError(f"array of dtype {a.dtype} is not an image")
    if a.dtype != np.uint8:
        x = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        hi = float(x.max(initial=0.0))
        scale = 255.0 if np.issubdtype(a.dtype, np.floating) and hi <= 1.0 else (1.0 if hi <= 255 else 255.0 / 65535.0)
        a = np.clip(np.rint(x * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))  # uint8 (H, W) -> L, (H, W, 3) -> RGB, (H, W, 4) -> RGBA


def _read_source(source: str | os.PathLike | bytes) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), "image"
    path = Path(source)
    try:
        if path.is_file():
            if (size := path.stat().st_size) > MAX_FILE_BYTES:
                raise ImageError(f"{path}: file too large ({size / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB)")
            return path.read_bytes(), str(path)
        with path.open("rb") as f:  # a pipe (/dev/fd/N, a FIFO) has no size to check first: read one byte past the limit
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise ImageError(f"{path}: more than the limit of {MAX_FILE_BYTES / 1e6:.0f} MB")
        return data, str(path)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None


def load_image(source: ImageSource) -> Image.Image:
    """Open a path, bytes, PIL image or array as an upright RGB image, or raise ImageError saying why not."""
    if isinstance(source, np.ndarray):
        return _array_to_image(source).convert("RGB")
    if isinstance(source, Image.Image):
        _check_size(*source.size)
        im, name = source, "image"
        try:
            im.load()  # an image from Image.open is still lazy: decoding errors surface here
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"{name}: truncated or corrupt image ({e})") from None
    elif isinstance(source, str | os.PathLike | bytes | bytearray | memoryview):
        data, name = _read_source(source)
        im = _open(data, name)
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}")
    try:
        im = ImageOps.exif_transpose(im)  # phones store portraits sideways plus an Orientation tag
    except Exception:  # noqa: BLE001 - a broken EXIF block should not cost the user the picture
        pass
    try:
        return _to_rgb(im)
    except ImageError as e:
        raise ImageError(f"{name}: {e}") from None
