"""Temperature scaling on real faces: the fit finds the NLL minimum, is stored in the checkpoint, and changes no answer."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from fer_core.calibrate import calibrate_checkpoint, centre_logits, fit_temperature, main, nll
from fer_core.checkpoint import load_model
from fer_core.config import DEFAULT_CHECKPOINT
from fer_core.evaluate import predict_probs


@pytest.fixture(scope="module")
def sample_logits(sample_data):
    x, y = sample_data.split("PublicTest")
    return centre_logits(load_model(), x), y


def test_fitted_temperature_is_the_nll_minimum(sample_logits):
    logits, y = sample_logits
    t = fit_temperature(logits, y)
    for other in (t * 0.9, t * 1.1, 1.0):
        assert nll(logits, y, t) <= nll(logits, y, other) + 1e-6
    # logits three times as large need a temperature three times as large
    assert fit_temperature(logits * 3, y) == pytest.approx(3 * t, rel=1e-3)
    with pytest.raises(ValueError, match="no images"):
        fit_temperature(logits[:0], y[:0])


def test_calibrated_checkpoint_keeps_every_answer(sample_path, sample_data, sample_logits, tmp_path):
    out = tmp_path / "cal.pt"
    shipped_t = load_model().temperature
    fit = calibrate_checkpoint(DEFAULT_CHECKPOINT, sample_path, "PublicTest", out)
    assert fit["after"]["nll"] <= fit["before"]["nll"] + 1e-9
    before, after = load_model(), load_model(out)
    assert after.temperature == pytest.approx(fit["temperature"]) and after.meta["temperature_fit"]["split"] == "PublicTest"
    x, _ = sample_data.split("PrivateTest")  # images the fit never saw
    p0, p1 = predict_probs(before, x), predict_probs(after, x)
    assert (p0.argmax(1) == p1.argmax(1)).all()
    logits = centre_logits(before, x)
    assert np.allclose(p1, torch.softmax(logits / after.temperature, 1).numpy(), atol=1e-5)
    assert load_model().temperature == shipped_t  # the source checkpoint was not touched


def test_cli_in_place_and_errors(sample_path, tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    shutil.copy(DEFAULT_CHECKPOINT, ckpt)
    assert main(["--checkpoint", str(ckpt), "--data", str(sample_path), "--threads", "1"]) == 0
    assert "temperature" in capsys.readouterr().out and "temperature" in torch.load(ckpt, weights_only=True)
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--data", str(sample_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["--checkpoint", str(ckpt), "--data", str(sample_path), "--split", "Nope"]) == 2
