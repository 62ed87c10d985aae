"""Face-crop quality flags: they pass real faces, catch the corruptions the models are brittle to, and reach the outputs."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from fer_core import quality
from fer_core.perturb import perturb
from fer_core.predict import csv_rows, predict_image
from fer_core.predict_cli import format_faces
from fer_core.quality import assess, measure


def flagged(crops: torch.Tensor) -> Counter[str]:
    return Counter(issue for q in assess(crops) for issue in q.issues)


def test_real_faces_pass_and_corrupted_ones_are_flagged_for_what_was_done(sample_data):
    faces = torch.cat([sample_data.split(s)[0] for s in ("Training", "PublicTest")])  # 490 real FER2013 faces
    n = len(faces)
    clean = assess(faces)
    assert sum(bool(q.issues) for q in clean) <= 0.06 * n  # each limit passes ~98% of training faces
    blur, small, noise = (flagged(perturb(faces, name)) for name in ("blur-1", "lowres-24", "noise-10"))
    assert blur["blurry"] >= 0.97 * n and small["blurry"] >= 0.97 * n and blur["noisy"] == 0
    assert noise["noisy"] >= 0.97 * n and noise["blurry"] <= 0.01 * n  # noise adds detail, it does not remove it
    # Light is measured apart from sharpness: a dimmed or flattened face is no blurrier than before
    dark, flat = flagged(perturb(faces, "dark")), flagged(perturb(faces, "low-contrast"))
    assert dark["dark"] >= 0.4 * n and dark["low contrast"] >= 0.7 * n and flat["low contrast"] >= 0.7 * n
    assert dark["blurry"] <= 0.02 * n and flat["blurry"] <= 0.02 * n and flat["dark"] <= 0.02 * n
    # The measurements move the way their names say
    # Blocks: JPEG at quality 10 is flagged; blur, noise, enlargement and an occluding band are not (the blocks' edges
    # are compared with the lines mid-block, 4 away, which a 2x or 4x enlargement also jumps across)
    assert flagged(perturb(faces, "jpeg-10"))["compressed"] >= 0.9 * n
    for name in ("none", "blur-1", "noise-10", "lowres-24", "lowres-12", "occlude-eyes"):
        assert flagged(perturb(faces, name))["compressed"] <= 0.03 * n, name
    m, b = measure(faces), measure(perturb(faces, "blur-2"))
    assert (b["sharpness"] < m["sharpness"]).float().mean() > 0.99 and m["noise"].median() < 6
    assert measure(perturb(faces, "noise-25"))["noise"].median() == pytest.approx(25, rel=0.15)  # noise sigma 25 grey levels


def test_the_limits_are_the_stated_percentiles_of_the_training_faces(full_data_path):
    from fer_core.data import load_dataset

    m = measure(load_dataset(full_data_path).split("Training")[0])
    assert np.percentile(m["sharpness"], 2) == pytest.approx(quality.SHARPNESS_MIN, rel=0.05)
    assert np.percentile(m["noise"], 98) == pytest.approx(quality.NOISE_MAX, rel=0.05)
    assert np.percentile(m["brightness"], 1) == pytest.approx(quality.BRIGHTNESS_MIN, rel=0.05)
    assert np.percentile(m["contrast"], 1) == pytest.approx(quality.CONTRAST_MIN, rel=0.05)
    assert np.percentile(m["blockiness"], 99) == pytest.approx(quality.BLOCKINESS_MAX, rel=0.05)


def test_jpeg_blocks_are_found_on_the_photos_own_grid_and_matter_less_on_a_large_face(sample_data, fast_checkpoint,
                                                                                     tmp_path):
    from photos import jpeg_copy

    from fer_core.checkpoint import load_model

    face = Image.fromarray(sample_data.split("PublicTest")[0][1].numpy())
    model = load_model(fast_checkpoint)
    jpeg_copy(face, 10).save(tmp_path / "blocky.png")  # a FER-style face saved at quality 10, then losslessly
    face.save(tmp_path / "clean.png")
    (blocky,), (clean,) = (predict_image(tmp_path / f"{n}.png", model, detect=False) for n in ("blocky", "clean"))
    assert "compressed" in blocky.issues and "compressed" not in clean.issues
    assert "8 x 8 blocks" in quality.describe(blocky.issues)
    # In a photo the blocks start at its top left corner, wherever the face is
    photo = jpeg_copy(face.resize((96, 96), Image.BICUBIC), 5)
    (inside,) = quality.source_blockiness(photo, [(13, 21, 64)])
    assert inside > quality.blockiness_limit(64) > quality.blockiness_limit(None) == quality.BLOCKINESS_MAX
    (unspoilt,) = quality.source_blockiness(face.resize((96, 96), Image.BICUBIC), [(13, 21, 64)])
    assert unspoilt < quality.BLOCKINESS_MAX
    (large,) = quality.assess(np.asarray(photo.resize((48, 48), Image.BILINEAR))[None], [96], [inside])
    (small,) = quality.assess(np.asarray(face)[None], [48], [inside])  # as blocky, but from a 48 px face
    assert "compressed" in small.issues and ("compressed" in large.issues) == (inside > quality.blockiness_limit(96))
    assert quality.source_blockiness(photo, [(-20, -20, 40)]) == [1.0]  # 20 x 20 px inside the photo: too few blocks


def test_small_or_enlarged_pictures_keep_the_corner_grid(sample_data):
    # An enlarged picture jumps every 2 or 4 lines, and a small one has too few lines to tell: neither is a shifted grid
    faces = sample_data.split("PublicTest")[0].numpy()
    for side in (48, 96, 120, 192, 256):
        found = [quality.grid_phase(Image.fromarray(f).resize((side, side), Image.BICUBIC)) for f in faces]
        assert sum(p != (7, 7) for p in found) <= len(faces) // 50, side
    as_photos = [quality.source_blockiness(Image.fromarray(f), [(0, 0, 48)])[0] for f in faces]
    assert as_photos == [float(b) for b in quality.measure(faces)["blockiness"]]  # the 48 px face is the photo


@pytest.mark.parametrize("q", [10, 25, 50])
def test_a_photo_cropped_after_compression_has_its_blocks_found_where_they_are(q):
    from photos import astronaut, coffee, jpeg_copy

    for picture in (astronaut(), coffee()):
        photo = jpeg_copy(picture, q, "RGB")
        cropped = photo.crop((3, 5, 403, 385))  # a screenshot or a crop saved losslessly: the grid starts 3 and 5 px in
        assert quality.grid_phase(photo) == (7, 7) and quality.grid_phase(cropped) == (4, 2)
        squares = [(120, 80, 96), (33, 200, 64)]
        where = [(x + 3, y + 5, side) for x, y, side in squares]
        assert quality.source_blockiness(cropped, squares) == quality.source_blockiness(photo, where)
        assert quality.grid_phase(picture) == quality.grid_phase(picture.crop((3, 5, 403, 385))) == (7, 7)  # no blocks
    if q == 10:  # and a face there is flagged as in the photo itself; a face from the uncompressed crop is not
        (face,) = quality.source_blockiness(cropped, [(120, 80, 64)])
        (clean,) = quality.source_blockiness(picture.crop((3, 5, 403, 385)), [(120, 80, 64)])
        assert face > quality.blockiness_limit(64) > clean


def test_a_face_cut_from_few_pixels_is_small_and_the_outputs_say_so(sample_data, fast_checkpoint):
    from fer_core.checkpoint import load_model

    model = load_model(fast_checkpoint)
    face = sample_data.split("PublicTest")[0][0].numpy()
    (tiny,) = predict_image(face[::2, ::2].copy(), model, detect=False)  # the whole 24 x 24 picture is the face
    (full,) = predict_image(face, model, detect=False)
    assert "small" in tiny.issues and "blurry" in tiny.issues and "small" not in full.issues
    assert tiny.to_dict()["issues"] == list(tiny.issues)
    assert csv_rows("tiny.png", [tiny])[0]["issues"] == ";".join(tiny.issues)
    assert f"[trust less: {', '.join(tiny.issues)}]" in format_faces("tiny.png", [tiny])
    assert ("trust less" in format_faces("face.png", [full])) == bool(full.issues)
    assert "small (under 32 px across" in quality.describe(tiny.issues)
    assert assess(face, [32])[0].issues == assess(face)[0].issues and "small" in assess(face, [31])[0].issues


def test_bad_crops_are_refused_with_a_message():
    with pytest.raises(ValueError, match="at least 3 x 3"):
        measure(np.zeros((4, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="2 source sizes for 1 crops"):
        assess(np.zeros((1, 48, 48), np.uint8), [40, 40])
    with pytest.raises(ValueError, match="2 blockiness values for 1 crops"):
        assess(np.zeros((1, 48, 48), np.uint8), None, [1.0, 1.0])
    (q,) = assess(np.full((48, 48), 128, np.uint8))  # a flat grey square: no detail, no contrast, no noise
    assert q.issues == ("blurry", "low contrast") and q.noise == 0 and q.to_dict()["issues"] == ["blurry", "low contrast"]


def test_cli_counts_the_faces_that_deserve_less_trust(sample_data, fast_checkpoint, tmp_path, run_main):
    from PIL import Image

    from fer_core import predict_cli

    faces = sample_data.split("PublicTest")[0][:3]
    grainy = perturb(faces, "noise-25")
    Image.fromarray(faces[0].numpy()).save(tmp_path / "clean.png")
    for i in (1, 2):
        Image.fromarray(grainy[i].numpy()).save(tmp_path / f"grainy{i}.png")
    r = run_main(predict_cli.main, "--threads", "1", "--no-detect", "--checkpoint", fast_checkpoint, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("[trust less: noisy]") == 2 and "clean.png: 1 face" in r.stdout
    assert "2 of 3 faces in photos deserve less trust (noisy 2)" in r.stderr
    r = run_main(predict_cli.main, "--threads", "1", "--no-detect", "--checkpoint", fast_checkpoint, tmp_path / "clean.png")
    assert r.returncode == 0 and "deserve less trust" not in r.stderr
