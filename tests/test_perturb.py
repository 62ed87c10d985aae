"""Corruptions for robustness evaluation, on the real sample faces: each does what its name says, and evaluate uses them."""

from __future__ import annotations

import pytest
import torch

from fer_core.config import DEFAULT_CHECKPOINT, SAMPLE_DATA
from fer_core.evaluate import evaluate_checkpoint, main
from fer_core.perturb import EYES_ROWS, LOWER_ROWS, PERTURBATIONS, perturb


@pytest.fixture(scope="module")
def faces(sample_data) -> torch.Tensor:
    return sample_data.split("PublicTest")[0]


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_every_corruption_keeps_the_shape_and_is_repeatable(faces, name):
    out = perturb(faces, name)
    assert out.shape == faces.shape and out.dtype == torch.uint8
    assert torch.equal(out, perturb(faces, name))  # the same seed, the same corruption
    assert torch.equal(out, faces) == (name == "none")


def test_the_corruptions_do_what_they_say(faces):
    x = faces.float()
    def sharpness(t):  # mean absolute difference between neighbouring pixels
        return (t.float()[:, :, 1:] - t.float()[:, :, :-1]).abs().mean()
    assert sharpness(perturb(faces, "blur-2")) < sharpness(perturb(faces, "blur-1")) < 0.7 * sharpness(faces)
    residual = perturb(faces, "noise-25").float() - x
    assert 20 < residual.std() < 26 and 7 < (perturb(faces, "noise-10").float() - x).std() < 11  # clipping trims a little
    assert not torch.equal(perturb(faces, "noise-10", seed=1), perturb(faces, "noise-10"))
    assert perturb(faces, "dark").float().mean() == pytest.approx(0.4 * x.mean(), rel=0.01)
    assert perturb(faces, "low-contrast").float().std(dim=(1, 2)).mean() == pytest.approx(0.4 * x.std(dim=(1, 2)).mean(),
                                                                                            rel=0.03)
    lost = {n: (perturb(faces, n).float() - x).abs().mean() for n in ("lowres-24", "lowres-12", "jpeg-10")}
    assert 0 < lost["lowres-24"] < lost["lowres-12"] and lost["jpeg-10"] > 1
    for name, (top, bottom) in (("occlude-eyes", EYES_ROWS), ("occlude-lower", LOWER_ROWS)):
        out = perturb(faces, name)
        assert (out[:, top:bottom] == 128).all()
        assert torch.equal(out[:, :top], faces[:, :top]) and torch.equal(out[:, bottom:], faces[:, bottom:])


def test_the_bands_cover_the_eyes_and_mouth_of_the_real_faces(sample_data):
    mean = sample_data.split("Training")[0].float().mean(0)  # the average face: eyes and mouth are its dark patches
    left_eye_row = int(mean[:24, 10:22].mean(1).argmin())
    mouth_row = int(mean[30:, 18:30].mean(1).argmin()) + 30
    assert EYES_ROWS[0] <= left_eye_row < EYES_ROWS[1] and LOWER_ROWS[0] <= mouth_row < LOWER_ROWS[1]


def test_evaluate_scores_corrupted_faces_and_says_so(fast_checkpoint, run_main, tmp_path):
    clean = evaluate_checkpoint(fast_checkpoint, SAMPLE_DATA, "PublicTest")
    masked = evaluate_checkpoint(fast_checkpoint, SAMPLE_DATA, "PublicTest", corruption="occlude-lower")
    assert masked["corruption"] == "occlude-lower" and "corruption" not in clean
    assert masked["accuracy"] < clean["accuracy"]  # hiding the mouth costs the model (15 points on all of PublicTest)
    assert masked["predictions"]["y_true"] == clean["predictions"]["y_true"]  # the same images, for fer-compare
    with pytest.raises(ValueError, match="corruption must be one of none, blur-1"):
        evaluate_checkpoint(DEFAULT_CHECKPOINT.parent / "missing.pt", SAMPLE_DATA, corruption="fog")  # before loading
    r = run_main(main, "--checkpoint", fast_checkpoint, "--data", SAMPLE_DATA, "--corruption", "fog")
    assert r.returncode == 2 and "invalid choice: 'fog'" in r.stderr
    r = run_main(main, "--checkpoint", fast_checkpoint, "--data", SAMPLE_DATA, "--corruption", "blur-2", "--threads", 1)
    assert r.returncode == 0 and "corruption=blur-2" in r.stdout and '"corruption": "blur-2"' in r.stdout
