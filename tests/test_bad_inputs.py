"""Bad and odd inputs, made at test time from real photos: each gives the right faces or a clear ImageError, and the CLI
turns every one of them into a JSON line (never a traceback or a hang)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest
from photos import ASTRONAUT_FACE, astronaut, coffee, encode, iou, piped, png_header, scaled, ten_faces
from PIL import Image
from skimage import data as skdata

from fer_core.checkpoint import load_model
from fer_core.config import EMOTIONS
from fer_core.images import ImageError
from fer_core.predict import FacePrediction, predict_image


@dataclass(frozen=True)
class Expect:
    error: str = ""  # regex the ImageError message must match; "" = the file must work
    faces: int = 0  # how many faces
    box: tuple[int, int, int, int] | None = None  # where the first (largest) one is, roughly (IoU > 0.7)
    detect: bool = True  # False = --no-detect
    check: Callable[[list[FacePrediction]], bool] | None = None  # anything else to hold


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _fer_face() -> np.ndarray:
    from fer_core.config import SAMPLE_DATA
    from fer_core.data import load_csv

    return load_csv(SAMPLE_DATA, cache=False).images["PublicTest"][0].numpy()


def _zip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("astronaut.png", data)
    return buf.getvalue()


def _corrupt_middle(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2 : len(out) // 2 + 64] = bytes(64)
    return bytes(out)


def _rgb16_png() -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    return buf.tobytes()


def _with_transparent_border() -> Image.Image:
    im = astronaut().convert("RGBA")
    alpha = np.zeros((512, 512), np.uint8)
    alpha[20:400, 100:420] = 255  # the head and shoulders stay opaque
    im.putalpha(Image.fromarray(alpha))
    return im


def _transparent() -> Image.Image:
    im = astronaut().convert("RGBA")
    im.putalpha(0)
    return im


def _animated(first: Image.Image, second: Image.Image) -> bytes:
    return encode(first, "GIF", save_all=True, append_images=[second.resize(first.size)], duration=100, loop=0)


def _gif_bomb() -> bytes:
    """A 29-byte GIF whose screen and frame claim 65535 x 65535 pixels."""
    return (b"GIF89a" + (65535).to_bytes(2, "little") * 2 + b"\0\0\0" + b"," + b"\0\0\0\0" + (65535).to_bytes(2, "little") * 2
            + b"\0" + b"\x08\x02\x4c\x01\x00;")


PORTRAIT = (100, 0, 400, 512)  # a 300 x 512 portrait cut from the astronaut photo
FACE = ASTRONAUT_FACE
PORTRAIT_FACE = (FACE[0] - 100, FACE[1], FACE[2], FACE[3])
A = astronaut

# name -> (file contents, or a callable making them, or None for "do not create"; what must happen)
CASES: dict[str, tuple[Callable[[], bytes] | None, Expect]] = {
    # ---- not usable: a clear error that names the problem
    "empty.jpg": (lambda: b"", Expect(error="empty file")),
    "truncated.jpg": (lambda: encode(A(), "JPEG")[:20000], Expect(error="truncated or corrupt JPEG file")),
    "truncated.png": (lambda: encode(A(), "PNG")[:50000], Expect(error="truncated or corrupt PNG file")),
    "text_renamed.jpg": (lambda: b"Dear diary,\nno picture today.\n" * 20, Expect(error="not an image")),
    "html_renamed.png": (lambda: b"<!doctype html><html><body><img src=x></body></html>", Expect(error="not an image")),
    "pdf_renamed.jpg": (lambda: b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n", Expect(error="not an image")),
    "zip_renamed.png": (lambda: _zip(encode(A(), "PNG")), Expect(error="not an image")),
    "drawing.svg": (lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
                    b'<circle cx="32" cy="32" r="20"/></svg>', Expect(error="SVG vector images are not supported")),
    "svg_renamed.png": (lambda: b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>',
                        Expect(error="SVG")),
    "bomb_20000x20000.png": (lambda: png_header(20000, 20000),
                             Expect(error=r"too large: 400 megapixels .*possible decompression bomb")),
    "over_limit_10000x6000.png": (lambda: png_header(10000, 6000), Expect(error=r"too large: 10000 x 6000 pixels")),
    "bomb_65535x65535.gif": (_gif_bomb, Expect(error="too large: 4294.84 megapixels")),
    "real_bomb_8000x7000.png": (lambda: encode(Image.new("L", (8000, 7000)), "PNG"),
                                Expect(error=r"too large: 8000 x 7000 pixels exceeds the limit of 50 megapixels")),
    "corrupt_header.png": (lambda: b"\x89PNG\r\n\x1a\n" + b"\x13garbage" * 20, Expect(error="truncated or corrupt PNG file")),
    "jpeg_header_only.jpg": (lambda: b"\xff\xd8\xff\xe0\x00\x10JFIF", Expect(error="truncated or corrupt JPEG file")),
    "corrupt_data.png": (lambda: _corrupt_middle(encode(A(), "PNG")), Expect(error="corrupt PNG file")),
    "unsupported.tif": (lambda: (Path(skdata.data_dir) / "multipage_rgb.tif").read_bytes(),
                        Expect(error="corrupt or unsupported TIFF")),
    "folder.jpg": (None, Expect(error="is a directory")),
    "missing.jpg": (None, Expect(error="no such file")),
    # ---- odd but usable: the right result
    "one_pixel.png": (lambda: encode(Image.new("RGB", (1, 1), (200, 150, 120)), "PNG"), Expect(faces=0)),
    "one_pixel_whole.png": (lambda: encode(Image.new("RGB", (1, 1), (200, 150, 120)), "PNG"),  # luma 162
                            Expect(faces=1, box=(0, 0, 1, 1), detect=False, check=lambda f: (f[0].crop == 162).all())),
    "grey16.png": (lambda: encode(Image.fromarray(np.asarray(A().convert("L")).astype(np.uint16) * 257), "PNG"),
                   Expect(faces=1, box=FACE)),
    "rgb16.png": (_rgb16_png, Expect(faces=1, box=FACE)),
    "cmyk.jpg": (lambda: encode(A().convert("CMYK"), "JPEG", quality=95), Expect(faces=1, box=FACE)),
    "rgba_transparent_border.png": (lambda: encode(_with_transparent_border(), "PNG"), Expect(faces=1, box=FACE)),
    "fully_transparent.png": (lambda: encode(_transparent(), "PNG"), Expect(faces=0)),  # white, as a browser shows it
    "palette.png": (lambda: encode(A().convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), Expect(faces=1, box=FACE)),
    "palette_transparency.gif": (lambda: encode(A().convert("P", palette=Image.Palette.ADAPTIVE), "GIF", transparency=0),
                                 Expect(faces=1, box=FACE)),
    "greyscale.jpg": (lambda: encode(A().convert("L"), "JPEG", quality=95), Expect(faces=1, box=FACE)),
    # Dithering to black and white destroys the shading the cascade looks for; --no-detect still classifies it.
    "bilevel.png": (lambda: encode(A().convert("1"), "PNG"), Expect(faces=0)),
    "exif_rotated_portrait.jpg": (lambda: encode(A().crop(PORTRAIT).transpose(Image.Transpose.ROTATE_90), "JPEG",
                                                 quality=95, exif=_exif(6)), Expect(faces=1, box=PORTRAIT_FACE)),
    "exif_upside_down.jpg": (lambda: encode(A().transpose(Image.Transpose.ROTATE_180), "JPEG", quality=95, exif=_exif(3)),
                             Expect(faces=1, box=FACE)),
    "exif_bad_orientation.jpg": (lambda: encode(A(), "JPEG", quality=95, exif=_exif(9)), Expect(faces=1, box=FACE)),
    "animated_face_first.gif": (lambda: _animated(A(), coffee()), Expect(faces=1, box=FACE)),
    "animated_face_second.gif": (lambda: _animated(coffee(), A()), Expect(faces=0)),  # the first frame is the picture
    "two_page.tif": (lambda: encode(A(), "TIFF", save_all=True, append_images=[coffee()]), Expect(faces=1, box=FACE)),
    "float32.tif": (lambda: encode(Image.fromarray(np.asarray(A().convert("L")).astype(np.float32) / 255), "TIFF"),
                    Expect(faces=1, box=FACE)),
    "int32.tif": (lambda: encode(A().convert("L").convert("I"), "TIFF"), Expect(faces=1, box=FACE)),
    "photo.webp": (lambda: encode(A(), "WEBP", quality=90), Expect(faces=1, box=FACE)),
    "photo.bmp": (lambda: encode(A(), "BMP"), Expect(faces=1, box=FACE)),
    "trailing_garbage.jpg": (lambda: encode(A(), "JPEG") + b"\0garbage" * 500, Expect(faces=1, box=FACE)),
    "png_named.jpg": (lambda: encode(A(), "PNG"), Expect(faces=1, box=FACE)),
    "large_4096x4096.jpg": (lambda: encode(A().resize((4096, 4096), Image.Resampling.BILINEAR), "JPEG", quality=80),
                            Expect(faces=1, box=scaled(FACE, 8))),
    "panorama_16200x120.jpg": (lambda: encode(Image.fromarray(np.tile(skdata.coffee()[100:220], (1, 27, 1))), "JPEG"),
                               Expect(faces=0)),
    "panorama_whole.jpg": (lambda: encode(Image.fromarray(np.tile(skdata.coffee()[100:220], (1, 27, 1))), "JPEG"),
                           Expect(faces=1, box=(0, 0, 16200, 120), detect=False)),
    "no_face.jpg": (lambda: encode(coffee(), "JPEG"), Expect(faces=0)),
    "ten_faces.png": (lambda: encode(ten_faces()[0], "PNG"), Expect(faces=10)),
    "fer_crop_whole.png": (lambda: encode(Image.fromarray(_fer_face()), "PNG"),
                           Expect(faces=1, box=(0, 0, 48, 48), detect=False, check=lambda f: (f[0].crop == _fer_face()).all())),
}


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_inputs")
    (root / "folder.jpg").mkdir()
    for name, (make, _) in CASES.items():
        if make is not None:
            (root / name).write_bytes(make())
    return {name: root / name for name in CASES}


@pytest.fixture(autouse=True)
def _fail_instead_of_hanging():
    """A guard, not a speed test: an input that makes the code loop forever fails here instead of stalling the suite."""

    def hung(signum, frame):
        raise TimeoutError("no result after 120 s: the input made the code hang")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30 and sum(1 for _, e in CASES.values() if e.error) >= 15


@pytest.mark.parametrize("name", list(CASES))
def test_each_input_gives_the_right_faces_or_a_clear_error(name, files, model):
    _, want = CASES[name]
    path = files[name]
    if want.error:
        with pytest.raises(ImageError, match=want.error) as info:
            predict_image(path, model, detect=want.detect)
        assert str(info.value).startswith(f"{path}: ")  # the message names the file
        assert "\n" not in str(info.value)
        return
    faces = predict_image(path, model, detect=want.detect)
    assert len(faces) == want.faces
    for face in faces:
        assert list(face.probs) == list(EMOTIONS) and sum(face.probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert face.crop.shape == (48, 48) and face.crop.dtype == np.uint8
    if want.box is not None:
        assert iou(faces[0].box, want.box) > 0.7, faces[0].box
    if want.check is not None:
        assert want.check(faces)


def test_the_cli_turns_every_input_into_one_json_line(files):
    paths = [str(files[name]) for name, (_, want) in CASES.items() if want.detect]
    r = subprocess.run([sys.executable, "-m", "fer_core.predict", "--json", "--threads", "1", *paths], capture_output=True,
                       text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert "Traceback" not in r.stderr and r.returncode == 1
    rows = {row["path"]: row for row in map(json.loads, r.stdout.splitlines())}
    assert sorted(rows) == sorted(paths)
    for name, (_, want) in CASES.items():
        if want.detect:
            row = rows[str(files[name])]
            if want.error:
                assert set(row) == {"path", "error"} and row["error"], name
            else:
                assert len(row["faces"]) == want.faces, name
    errors = sum(1 for _, want in CASES.values() if want.error)
    assert f"{errors} of {len(paths)} inputs failed" in r.stderr


def test_a_pipe_is_read_up_to_the_file_size_limit(monkeypatch):
    """A pipe has no size to check before reading: it is read one byte past the limit, then refused."""
    import fer_core.images as images

    photo = encode(astronaut(), "PNG")
    monkeypatch.setattr(images, "MAX_FILE_BYTES", len(photo))
    with piped(photo) as path:
        assert images.load_image(path).size == (512, 512)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", len(photo) - 1)
    with piped(photo) as path, pytest.raises(ImageError, match=r"/dev/fd/\d+: more than the limit of"):
        images.load_image(path)
