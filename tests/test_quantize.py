"""int8 inference: the quantized copy of the shipped model against its float32 answers on real faces, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from photos import astronaut

import fer_core.quantize as quantize
from fer_core.card import results_table
from fer_core.checkpoint import CheckpointError, load_model
from fer_core.evaluate import main as evaluate_main
from fer_core.evaluate import predict_probs
from fer_core.models import build_model, list_models
from fer_core.predict import main as predict_main
from fer_core.predict import predict_image
from fer_core.quantize import QuantizationError, calibration_batch, int8_copy


@pytest.fixture(scope="module")
def fp32():
    return load_model()


@pytest.fixture(scope="module")
def int8():
    return load_model(precision="int8")


def _quantized_layers(module: torch.nn.Module) -> list[str]:
    return [type(m).__name__ for m in module.modules() if "quantized" in type(m).__module__]


def test_int8_copy_has_int8_layers_and_keeps_the_float_model(int8):
    layers = _quantized_layers(int8.fast)
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in int8.model.modules())
    # every conv became an int8 conv (BN folded; ReLU fused where one follows it), and the head an int8 Linear
    assert layers.count("ConvReLU2d") + layers.count("Conv2d") == convs and layers.count("ConvReLU2d") > 0
    assert "Linear" in layers
    assert int8.precision == "int8" and all(p.dtype == torch.float32 for p in int8.model.parameters())
    assert not _quantized_layers(int8.model)  # gradients, Captum and fine-tuning still get the float model


@pytest.fixture(scope="module")
def fast_pair(fast_checkpoint):
    return load_model(fast_checkpoint), load_model(fast_checkpoint, precision="int8")


@pytest.mark.parametrize("shipped", ["fer_resnet", "fer_fast"])
def test_int8_agrees_with_fp32_on_held_out_real_faces(shipped, fp32, int8, fast_pair, sample_data):
    # fer_vgg.pt with 8-bit activations on an AVX2 CPU without VNNI agreed on only 90% (16-bit sums overflowed);
    # its pruned, distilled fer_fast.pt is the VGG checked here
    if shipped == "fer_fast":
        fp32, int8 = fast_pair
    x, y = sample_data.split("PublicTest")  # not the calibration faces (those are Training rows)
    for tta in ("none", "tencrop" if shipped == "fer_fast" else "flip"):  # ten-crop of the ResNet: 25 s more on AVX2
        p32, p8 = predict_probs(fp32, x, tta), predict_probs(int8, x, tta)
        assert p8.shape == (140, 7) and p8.dtype == np.float32 and np.allclose(p8.sum(1), 1, atol=1e-5)
        assert (p8.argmax(1) == p32.argmax(1)).mean() >= 0.95
        assert np.abs(p8 - p32).max() < 0.25 and np.abs(p8 - p32).mean() < 0.02
        y_np = y.numpy()
        assert abs((p8.argmax(1) == y_np).mean() - (p32.argmax(1) == y_np).mean()) <= 0.03


@pytest.mark.parametrize("name", list_models())
def test_every_registered_architecture_quantizes(name, fp32):
    # Untrained weights (logits nearly tied), so only the outputs' closeness is asserted, not the agreement.
    torch.manual_seed(0)
    model = build_model(name, width=8).eval()
    calib = calibration_batch(fp32.norm, fp32.config.crop_size)[:32]
    q = int8_copy(model, calib, min_agreement=0.0)
    assert _quantized_layers(q)
    with torch.inference_mode():
        out, ref = q(calib), model(calib)
    assert out.dtype == torch.float32 and out.shape == (32, 7)
    assert float((out - ref).abs().max()) < 0.1 * float(ref.abs().max()) + 1e-3


def test_photo_prediction_with_int8(fp32, int8):
    (face8,) = predict_image(astronaut(), int8)
    (face32,) = predict_image(astronaut(), fp32)
    assert face8.box == face32.box and face8.label == face32.label
    assert face8.confidence == pytest.approx(face32.confidence, abs=0.1)


def test_calibration_uses_real_training_faces_of_the_sample(fp32):
    c = calibration_batch(fp32.norm, fp32.config.crop_size)
    assert c.shape == (quantize.CALIBRATION_FACES, 1, 44, 44) and c.dtype == torch.float32
    assert -1 < float(c.mean()) < 1 and 0.5 < float(c.std()) < 1.5  # normalised with the Training statistics


def test_unknown_precision_and_missing_calibration_data_are_clear_errors(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=r"one of \('fp32', 'int8', 'onnx', 'onnx-int8'\), not 'int4'"):
        load_model(precision="int4")
    monkeypatch.setattr(quantize, "SAMPLE_DATA", tmp_path / "gone.csv.gz")
    for precision in ("int8", "onnx"):  # the ONNX copies are checked on the same faces, even in fp32
        with pytest.raises(CheckpointError, match="copies are calibrated and checked on the sample faces at .*gone.csv.gz"):
            load_model(precision=precision)
    assert load_model().precision == "fp32"  # float inference does not need the sample


def test_a_too_lossy_copy_is_refused(fp32):
    calib = calibration_batch(fp32.norm, fp32.config.crop_size)[:32]
    with pytest.raises(QuantizationError, match=r"agrees with the float model on .* \(at least 101% needed\)"):
        int8_copy(fp32.model, calib, min_agreement=1.01)


def test_evaluate_and_predict_clis_take_precision(sample_path, tmp_path, fast_checkpoint, run_main):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "fer_core.evaluate", "--threads", "1", "--data", str(sample_path),
                        "--checkpoint", str(fast_checkpoint), "--precision", "int8", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["precision"] == "int8" and "precision=int8" in r.stdout and rep["n"] == 140
    assert rep["int8_activation_bits"] == (7 if quantize.reduce_range() else 8)
    assert "| PublicTest | none | int8 | 140 |" in results_table([rep])
    photo = tmp_path / "a.jpg"
    astronaut().save(photo)
    r = subprocess.run([sys.executable, "-m", "fer_core.predict", "--threads", "1", "--precision", "int8", "--json",
                        "--checkpoint", str(fast_checkpoint), str(photo)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    (face,) = json.loads(r.stdout)["faces"]
    assert sum(face["probs"].values()) == pytest.approx(1, abs=1e-4)
    r = run_main(predict_main, "--precision", "int4", photo)
    assert r.returncode == 2 and "invalid choice: 'int4'" in r.stderr


# ---------------------------------------------------------------------------------------------- ONNX Runtime


@pytest.mark.parametrize("precision", ["onnx", "onnx-int8"])
def test_onnx_runtime_copies_answer_like_pytorch_on_held_out_real_faces(precision, fast_pair, fast_checkpoint,
                                                                         sample_data, run_main, tmp_path):
    pytest.importorskip("onnxruntime")
    fp32, _ = fast_pair
    ort = load_model(fast_checkpoint, precision=precision)
    assert ort.fast.int8 == (precision == "onnx-int8") and ort.fast.agreement >= 0.95  # on the calibration faces
    x, y = sample_data.split("PublicTest")  # held out from calibration
    for tta in ("none", "flip"):  # TTA views reach the copy as one batch, whatever the mode
        p32, po = predict_probs(fp32, x, tta), predict_probs(ort, x, tta)
        assert po.shape == (140, 7) and po.dtype == np.float32 and np.allclose(po.sum(1), 1, atol=1e-5)
        if precision == "onnx":  # the same network in another runtime: the same numbers
            assert np.allclose(po, p32, atol=1e-4)
        else:  # all 3,589 PublicTest faces on AVX2: fer_fast.pt 71.22% vs 71.44% (fer_vgg.pt of 11-26: 98.8% the same answers)
            assert (po.argmax(1) == p32.argmax(1)).mean() >= 0.95 and np.abs(po - p32).mean() < 0.02
            assert abs((po.argmax(1) == y.numpy()).mean() - (p32.argmax(1) == y.numpy()).mean()) <= 0.03
    if precision == "onnx-int8":  # the CLIs take every INFERENCE_PRECISIONS value; the report says which ran
        out = tmp_path / "r.json"
        r = run_main(evaluate_main, "--threads", 1, "--checkpoint", fast_checkpoint, "--data", sample_data.source,
                     "--precision", precision, "--out", out)
        assert r.returncode == 0, r.stderr
        rep = json.loads(out.read_text())
        assert rep["precision"] == precision and rep["int8_activation_bits"] == 7


def test_onnx_runtime_missing_is_a_clear_error(fast_checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(CheckpointError, match=r"needs onnxruntime and onnx \(pip install -r requirements.txt\)"):
        load_model(fast_checkpoint, precision="onnx")
