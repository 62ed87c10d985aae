"""Normalisation, batched augmentation and eval/TTA views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_core.transforms import (
    Normalization,
    augment_batch,
    centre_crop,
    degrade_batch,
    eval_views,
    jpeg_batch,
    jpeg_like,
    mixup,
    photo_batch,
    preprocess,
    random_erasing,
    to_float,
)


@pytest.fixture()
def batch(sample_data):
    x, _ = sample_data.split("Training")
    return to_float(x[:64], Normalization.fit(x))


def test_normalization_matches_numpy(sample_data):
    x, _ = sample_data.split("Training")
    n = Normalization.fit(x)
    arr = x.numpy().astype(np.float64)
    assert n.mean == pytest.approx(arr.mean()) and n.std == pytest.approx(arr.std(ddof=1))
    z = to_float(x, n)
    assert z.shape == (350, 1, 48, 48) and z.dtype == torch.float32
    assert float(z.mean()) == pytest.approx(0, abs=1e-4) and float(z.std()) == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("level", ["none", "light", "standard", "strong"])
def test_augment_shapes_dtype_and_finite(batch, level):
    out = augment_batch(batch, 44, torch.Generator().manual_seed(0), level, erasing=0.5)
    assert out.shape == (64, 1, 44, 44) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_augment_none_is_the_centre_crop(batch):
    out = augment_batch(batch, 44, torch.Generator().manual_seed(0), "none")
    assert torch.allclose(out, centre_crop(batch, 44), atol=1e-5)


def test_augment_is_per_image_random_and_seeded(batch):
    a = augment_batch(batch, 44, torch.Generator().manual_seed(1), "standard")
    b = augment_batch(batch, 44, torch.Generator().manual_seed(1), "standard")
    c = augment_batch(batch, 44, torch.Generator().manual_seed(2), "standard")
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Same image repeated gets different augmentations inside one batch.
    same = augment_batch(batch[:1].repeat(8, 1, 1, 1), 44, torch.Generator().manual_seed(0), "standard")
    assert len({round(float(v), 4) for v in same.sum((1, 2, 3))}) > 1


def test_light_augmentation_includes_flips(batch):
    out = augment_batch(batch[:1].repeat(64, 1, 1, 1), 48, torch.Generator().manual_seed(0), "light")
    flipped = batch[0:1].flip(-1)
    # With no shift range beyond 2 px some outputs are close to the flipped image, others to the original.
    d_orig = (out - batch[0:1]).abs().mean((1, 2, 3))
    d_flip = (out - flipped).abs().mean((1, 2, 3))
    assert int((d_flip < d_orig).sum()) > 10 and int((d_orig < d_flip).sum()) > 10


def test_random_erasing_zeroes_rectangles(batch):
    x = batch + 5.0  # no zeros before erasing
    out = random_erasing(x, 1.0, torch.Generator().manual_seed(0))
    zeros = (out == 0).flatten(1).sum(1)
    assert (zeros > 0).all() and (zeros < 0.25 * 48 * 48).all()
    assert torch.equal(random_erasing(x, 0.0, torch.Generator().manual_seed(0)), x)


def test_eval_views(batch):
    assert eval_views(batch, 44, "none").shape == (1, 64, 1, 44, 44)
    flip = eval_views(batch, 44, "flip")
    assert flip.shape == (2, 64, 1, 44, 44) and torch.equal(flip[1], flip[0].flip(-1))
    ten = eval_views(batch, 44, "tencrop")
    assert ten.shape == (10, 64, 1, 44, 44)
    assert torch.equal(ten[0], batch[..., :44, :44]) and torch.equal(ten[4], centre_crop(batch, 44))
    assert torch.equal(ten[5:], ten[:5].flip(-1))
    multi = eval_views(batch, 44, "multiscale")  # centre crop, whole face scaled to 44, then both mirrored
    assert multi.shape == (4, 64, 1, 44, 44) and torch.equal(multi[0], ten[4]) and torch.equal(multi[2:], multi[:2].flip(-1))
    # the scaled view shows the whole 48 px face: its mean brightness is the image's, which the crop's is not
    full_mean, crop_mean, whole_mean = batch.mean((-2, -1)), multi[0].mean((-2, -1)), multi[1].mean((-2, -1))
    assert (whole_mean - full_mean).abs().max() < 0.02 < (crop_mean - full_mean).abs().max()
    for tta in ("tencrop", "multiscale"):  # a model that sees the whole 48 px face has only the mirror to add
        assert torch.equal(eval_views(batch, 48, tta), eval_views(batch, 48, "flip"))
    with pytest.raises(ValueError, match="tta must be one of"):
        eval_views(batch, 44, "twelve")


def test_preprocess_is_the_normalised_centre_crop(sample_data):
    x, _ = sample_data.split("PublicTest")
    n = Normalization(mean=100.0, std=50.0)
    out = preprocess(x[:3], n, 44)
    expected = (x[:3, 2:46, 2:46].float() - 100.0) / 50.0
    assert torch.allclose(out[:, 0], expected)
    with pytest.raises(ValueError, match="48x48"):
        preprocess(torch.zeros(1, 40, 40, dtype=torch.uint8), n, 44)


def test_mixup_mixes_with_a_permutation(batch):
    y = torch.arange(64) % 7
    xm, ya, yb, lam = mixup(batch, y, 0.4, torch.Generator().manual_seed(0))
    assert 0 <= lam <= 1 and xm.shape == batch.shape and torch.equal(ya, y)
    assert sorted(yb.tolist()) == sorted(y.tolist())


def test_degrade_blurs_shrinks_or_adds_noise_to_the_chosen_share_of_images(sample_data):
    norm = Normalization.fit(sample_data.split("Training")[0])
    x = to_float(sample_data.split("Training")[0], norm).contiguous()  # 350 real faces
    assert torch.equal(degrade_batch(x, 0.0, torch.Generator().manual_seed(0)), x)
    out = degrade_batch(x, 0.5, torch.Generator().manual_seed(0))
    changed = (out != x).flatten(1).any(1)
    assert out.shape == x.shape and 0.4 * len(x) < int(changed.sum()) < 0.6 * len(x)  # about half (binomial sd 2.7%)
    assert torch.equal(out, degrade_batch(x, 0.5, torch.Generator().manual_seed(0)))  # seeded
    def detail(t):  # mean absolute difference between neighbouring pixels
        return (t[:, :, :, 1:] - t[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    ratio = detail(out)[changed] / detail(x)[changed]
    smoother, rougher = int((ratio < 0.95).sum()), int((ratio > 1.05).sum())
    assert smoother + rougher >= 0.9 * int(changed.sum())  # each degraded image lost detail (blur, low res) or gained noise
    assert smoother > rougher > 0.15 * int(changed.sum())  # two smoothing kinds of three, one noisy
    every = degrade_batch(x, 1.0, torch.Generator().manual_seed(1))
    assert (every != x).flatten(1).any(1).all()
    crops = augment_batch(x, 44, torch.Generator().manual_seed(0), "standard", 0.0)  # as training: augment, then degrade
    assert degrade_batch(crops, 1.0, torch.Generator().manual_seed(0)).shape == (len(x), 1, 44, 44)


def test_jpeg_like_is_a_jpeg_round_trip_done_on_the_whole_batch(sample_data):
    """The tensor version agrees with PIL's libjpeg to a fraction of a grey level, so training sees the real artefacts."""
    from photos import jpeg_copy
    from PIL import Image

    from fer_core.quality import assess

    faces = sample_data.split("PublicTest")[0][:48]
    norm = Normalization()
    x = to_float(faces, norm)
    for quality in (10, 25, 40):
        pil = [np.asarray(jpeg_copy(Image.fromarray(face), quality)) for face in faces.numpy()]
        ours = (jpeg_like(x, quality, norm) * norm.std + norm.mean).round().squeeze(1).numpy()
        assert np.abs(ours - np.stack(pil)).mean() < 0.5, quality  # measured 0.14-0.17 grey levels
        assert np.abs(ours - faces.numpy().astype(np.float32)).mean() > 2  # and far from the original
    blocky = (jpeg_like(x, 10, norm) * norm.std + norm.mean).round().clamp(0, 255).to(torch.uint8).squeeze(1)
    assert sum("compressed" in q.issues for q in assess(blocky)) >= 0.9 * len(faces)  # what fer_core.quality flags
    crops = jpeg_like(augment_batch(x, 44, torch.Generator().manual_seed(0), "standard", 0.0), 10, norm)
    assert crops.shape == (len(x), 1, 44, 44)  # padded to whole blocks and cut back


def test_jpeg_batch_compresses_the_chosen_share_and_leaves_other_runs_unchanged(batch):
    out = jpeg_batch(batch, 0.5, torch.Generator().manual_seed(0))
    changed = (out != batch).flatten(1).any(1)
    assert 0.3 * len(batch) < int(changed.sum()) < 0.7 * len(batch)
    assert torch.equal(out, jpeg_batch(batch, 0.5, torch.Generator().manual_seed(0)))  # seeded
    assert (jpeg_batch(batch, 1.0, torch.Generator().manual_seed(1)) != batch).flatten(1).any(1).all()
    # Without --jpeg, training draws the same random numbers as before it existed: a resumed run goes on as it began
    assert torch.equal(photo_batch(batch, 0.5, 0.0, torch.Generator().manual_seed(3)),
                       degrade_batch(batch, 0.5, torch.Generator().manual_seed(3)))
    assert torch.equal(photo_batch(batch, 0.0, 0.0, torch.Generator().manual_seed(3)), batch)
