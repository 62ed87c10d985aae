"""Real test photos built from scikit-image's bundled images (no download): a portrait, a face seen from the side, ten
faces, face-free scenes."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import threading
import zlib
from collections.abc import Iterator

import numpy as np
from PIL import Image
from skimage import data as skdata

from fer_core.tracking import iou  # noqa: F401 - the tests' box overlap is the library's (checked by hand in test_tracking)

# Where the frontal-face cascade finds the astronaut's face in the 512 x 512 original (checked by eye: brows to chin).
ASTRONAUT_FACE = (177, 66, 95, 95)
HEAD = (150, 30, 300, 200)  # the astronaut's head with hair and some background, as (left, top, right, bottom)
# scikit-image photos without a face (its "camera" has one, seen from the side)
FACE_FREE = ("coffee", "brick", "rocket", "chelsea", "hubble_deep_field", "gravel", "cat", "horse", "moon", "coins", "page",
             "text", "clock", "immunohistochemistry", "retina", "grass", "logo", "cell", "colorwheel")
# Where the profile search finds the cameraman's face in the 512 x 512 original (checked by eye: ear to nose tip, hairline
# to chin); the frontal cascade finds no face in that photo.
CAMERAMAN_FACE = (179, 94, 103, 103)


def astronaut() -> Image.Image:
    return Image.fromarray(skdata.astronaut())


def cameraman() -> Image.Image:
    """scikit-image's cameraman (greyscale, as RGB): a face seen from the side, a three-quarter view looking right."""
    return Image.fromarray(skdata.camera()).convert("RGB")


def coffee() -> Image.Image:
    """A cup of coffee on a table: a real photo without a face."""
    return Image.fromarray(skdata.coffee())


def ten_faces(tile: int = 180, gap: int = 20) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """The astronaut's head, upscaled, ten times in a 5 x 2 grid; and the (left, top, right, bottom) of each tile."""
    head = astronaut().crop(HEAD).resize((tile, round(tile * 170 / 150)), Image.Resampling.BICUBIC)
    w, h = head.size
    sheet = Image.new("RGB", (5 * (w + gap) + gap, 2 * (h + gap) + gap), (235, 235, 235))
    tiles = []
    for i in range(10):
        x, y = gap + (i % 5) * (w + gap), gap + (i // 5) * (h + gap)
        sheet.paste(head, (x, y))
        tiles.append((x, y, x + w, y + h))
    return sheet, tiles


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def jpeg_copy(image: Image.Image, quality: int, mode: str = "L") -> Image.Image:
    """The image as after saving it as JPEG at `quality` and opening it again (in `mode`)."""
    return Image.open(io.BytesIO(encode(image, "JPEG", quality=quality))).convert(mode)


def png_header(width: int, height: int) -> bytes:
    """A 100-byte PNG whose header declares width x height RGB pixels (what a decompression bomb looks like up front)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def scaled(box: tuple[int, int, int, int], factor: float) -> tuple[int, int, int, int]:
    return tuple(round(v * factor) for v in box)  # type: ignore[return-value]


def rgb_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def write_video(path, frames: list[Image.Image], fps: float = 10.0, fourcc: str = "mp4v") -> None:
    """Encode real photos as a video file with OpenCV's FFmpeg (MPEG-4 Part 2 in .mp4, or e.g. MJPG in .avi)."""
    import cv2

    w, h = frames[0].size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for f in frames:
        writer.write(np.ascontiguousarray(rgb_array(f.resize((w, h)))[:, :, ::-1]))
    writer.release()


def face_clip(path, fps: float = 10.0) -> list[bool]:
    """A 3 s clip: the astronaut's portrait for 1 s, a cup of coffee (no face) for 1 s, the portrait mirrored for 1 s.
    Returns whether each frame shows a face."""
    face, cup = astronaut(), coffee().resize((512, 512))
    n = round(fps)
    frames = [face] * n + [cup] * n + [face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)] * n
    write_video(path, frames, fps)
    return [True] * n + [False] * n + [True] * n


def two_people_clip(path, fps: float = 10.0) -> None:
    """A 2 s clip of two people side by side (the astronaut's head, and its mirror image): the left one is larger for
    the first second, the right one for the second, and both drift right by 2 px a frame."""
    head = astronaut().crop(HEAD)
    mirrored = head.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    frames = []
    for i in range(round(2 * fps)):
        big_left = i < fps
        canvas = Image.new("RGB", (640, 400), (200, 200, 200))
        for img, x, tall in ((head, 20, 260 if big_left else 170), (mirrored, 340, 170 if big_left else 260)):
            canvas.paste(img.resize((round(tall * 150 / 170), tall), Image.Resampling.BICUBIC), (x + 2 * i, 40))
        frames.append(canvas)
    write_video(path, frames, fps)


def turned_fer_scene(face: np.ndarray, tilt: float, scene: int = 320, side: int = 144) -> Image.Image:
    """A real 48x48 FER face enlarged to `side` px, centred in a `scene` px picture (borders replicated, so no second
    face) and turned `tilt` degrees counter-clockwise about the centre."""
    import cv2

    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    pad = (scene - side) // 2
    canvas = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    turn = cv2.getRotationMatrix2D((scene / 2, scene / 2), tilt, 1.0)
    return Image.fromarray(cv2.warpAffine(canvas, turn, (scene, scene), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))


def turned_astronaut(angle: float) -> tuple[Image.Image, tuple[float, float]]:
    """The astronaut turned `angle` degrees counter-clockwise about the photo's centre (edges mirrored), and where her
    face's centre lands."""
    import cv2

    a = np.asarray(astronaut())
    h, w = a.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    x, y, bw, bh = ASTRONAUT_FACE
    centre = turn @ (x + bw / 2, y + bh / 2, 1.0)
    return Image.fromarray(cv2.warpAffine(a, turn, (w, h), borderMode=cv2.BORDER_REFLECT)), (centre[0], centre[1])


def group_scene(faces: np.ndarray, fraction: float, size: tuple[int, int] = (4000, 3000), most: int = 40,
                tilt: float = 0.0) -> tuple[Image.Image, list[tuple[int, int, int]]]:
    """A group photo: real 48x48 FER faces enlarged to `fraction` of the short side, each with a quarter of its side of
    replicated border, in rows over scikit-image's coffee photo (no face) enlarged to `size`; and each face's (x, y,
    side) as if upright. At most `most` faces, taken in order (cycling); turned by +tilt and -tilt degrees in turn."""
    import cv2

    width, height = size
    side = round(fraction * min(size))
    pad, tile = side // 4, 2 * side
    canvas = cv2.resize(np.asarray(coffee().convert("L")), size, interpolation=cv2.INTER_CUBIC)
    placed: list[tuple[int, int, int]] = []
    cells = [(r, c) for r in range(height // tile) for c in range(width // tile)][:most]
    for k, (r, c) in enumerate(cells):
        face = cv2.resize(faces[k % len(faces)], (side, side), interpolation=cv2.INTER_CUBIC)
        bordered = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        if tilt:  # about the face's centre, which stays where it was
            half = bordered.shape[0] / 2
            turn = cv2.getRotationMatrix2D((half, half), tilt if k % 2 == 0 else -tilt, 1.0)
            bordered = cv2.warpAffine(bordered, turn, bordered.shape[::-1], borderMode=cv2.BORDER_REPLICATE)
        x0, y0 = c * tile + pad, r * tile + pad  # the bordered face's corner; the face is `pad` further in
        canvas[y0 : y0 + side + 2 * pad, x0 : x0 + side + 2 * pad] = bordered
        placed.append((x0 + pad, y0 + pad, side))
    return Image.fromarray(canvas), placed


def matched(box: tuple[int, int, int, int], face: tuple[int, int, int]) -> bool:
    """Whether a detected box is the face (x, y, side): centres within a quarter side, sides 0.6-1.6 times."""
    x, y, side = face
    return (0.6 * side < max(box[2], box[3]) < 1.6 * side
            and float(np.hypot(box[0] + box[2] / 2 - x - side / 2, box[1] + box[3] / 2 - y - side / 2)) < side / 4)


@contextlib.contextmanager
def piped(data: bytes) -> Iterator[str]:
    """A path that can be read only once, as a shell's `<(cat photo.jpg)` gives: /dev/fd/N of a pipe fed `data` by a
    thread (a reader that stops early leaves the rest unwritten)."""
    r, w = os.pipe()

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), os.fdopen(w, "wb") as f:
            f.write(data)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        yield f"/dev/fd/{r}"
    finally:
        os.close(r)
        feeder.join(timeout=5)
