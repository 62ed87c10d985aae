"""Temperature scaling on real faces: the fit finds the NLL minimum per TTA mode, is stored, and changes no centre answer."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from fer_core.calibrate import CALIBRATED_TTA, calibrate_checkpoint, fit_temperature, main, nll
from fer_core.checkpoint import load_model
from fer_core.evaluate import predict_probs, probs_at, view_logits


@pytest.mark.parametrize("tta", ["none", "tencrop"])
def test_fitted_temperature_is_the_nll_minimum(sample_data, tta, fast_checkpoint):
    x, y = sample_data.split("PublicTest")
    logits = view_logits(load_model(fast_checkpoint), x, tta)
    assert logits.shape == (1 if tta == "none" else 10, len(y), 7)
    t = fit_temperature(logits, y)
    for other in (t * 0.9, t * 1.1, 1.0):
        assert nll(logits, y, t) <= nll(logits, y, other) + 1e-6
    # logits three times as large need a temperature three times as large
    assert fit_temperature(logits * 3, y) == pytest.approx(3 * t, rel=1e-3)
    with pytest.raises(ValueError, match="no images"):
        fit_temperature(logits[:, :0], y[:0])


def test_calibrated_checkpoint_keeps_every_centre_answer(sample_path, sample_data, tmp_path, fast_checkpoint):
    out = tmp_path / "cal.pt"
    shipped = load_model(fast_checkpoint)
    fit = calibrate_checkpoint(fast_checkpoint, sample_path, "PublicTest", out)
    assert set(fit["by_tta"]) == set(CALIBRATED_TTA) and fit["split"] == "PublicTest" and fit["n"] == 140
    after = load_model(out)
    x, _ = sample_data.split("PrivateTest")  # images the fit never saw
    for tta in CALIBRATED_TTA:
        f = fit["by_tta"][tta]
        assert f["after"]["nll"] <= f["before"]["nll"] + 1e-9
        assert after.temperature_for(tta) == pytest.approx(f["temperature"])
        expected = probs_at(view_logits(shipped, x, tta), f["temperature"]).numpy()
        assert np.allclose(predict_probs(after, x, tta), expected, atol=1e-5)
    assert after.temperature == after.temperature_for("none") == after.temperature_for("flip")  # flip: the centre's
    assert (predict_probs(after, x).argmax(1) == predict_probs(shipped, x).argmax(1)).all()
    assert load_model(fast_checkpoint).temperature_for("tencrop") == shipped.temperature_for("tencrop")  # source untouched


def test_cli_in_place_and_errors(sample_path, tmp_path, capsys, fast_checkpoint):
    ckpt = tmp_path / "m.pt"
    shutil.copy(fast_checkpoint, ckpt)
    assert main(["--checkpoint", str(ckpt), "--data", str(sample_path), "--threads", "1"]) == 0
    assert "TTA tencrop: temperature" in capsys.readouterr().out
    assert set(torch.load(ckpt, weights_only=True)["temperature_tta"]) == set(CALIBRATED_TTA)
    assert main(["--checkpoint", str(tmp_path / "missing.pt"), "--data", str(sample_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["--checkpoint", str(ckpt), "--data", str(sample_path), "--split", "Nope"]) == 2
    assert capsys.readouterr().err.startswith("error: split 'Nope' is not in")  # not KeyError's quoted repr
