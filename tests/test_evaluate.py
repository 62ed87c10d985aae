"""The evaluation report and CLI end to end, on the real sample with all three Usage values."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as skm

from fer_core.checkpoint import load_model
from fer_core.config import EMOTIONS
from fer_core.evaluate import evaluate_checkpoint, main, predict_probs
from fer_core.transforms import TTA_MODES


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fer_core.evaluate", "--threads", "1", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)


@pytest.mark.parametrize("split", ["Training", "PublicTest", "PrivateTest"])
def test_cli_writes_a_complete_report_for_every_split(sample_path, tmp_path, split):
    out = tmp_path / "report.json"
    r = _cli("--data", str(sample_path), "--split", split, "--out", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["split"] == split and rep["n"] == {"Training": 350, "PublicTest": 140, "PrivateTest": 70}[split]
    assert rep["labels"] == list(EMOTIONS) and rep["tta"] == "none"
    assert set(rep["per_class"]) == set(EMOTIONS)
    assert set(rep["per_class"]["fear"]) == {"precision", "recall", "f1", "support"}
    assert rep["checkpoint"].endswith(".pt") and rep["reference"] and {"name", "accuracy", "split", "protocol", "source"} <= set(
        rep["reference"][0])
    y, p = rep["predictions"]["y_true"], rep["predictions"]["y_pred"]
    assert rep["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert rep["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro", labels=range(7), zero_division=0))
    assert rep["confusion_matrix"] == skm.confusion_matrix(y, p, labels=range(7)).tolist()
    assert 0 <= rep["ece"] <= 1
    assert f"accuracy={rep['accuracy']:.4f}" in r.stdout


def test_cli_tta_and_errors(sample_path, tmp_path, fast_checkpoint, run_main):
    out = tmp_path / "r.json"
    r = run_main(main, "--threads", 1, "--data", sample_path, "--checkpoint", fast_checkpoint, "--split", "PrivateTest",
                 "--tta", "--out", out)
    assert r.returncode == 0 and json.loads(out.read_text())["tta"] == "multiscale"
    r = run_main(main, "--data", sample_path, "--split", "Validation")
    assert r.returncode == 2 and "it has Training, PublicTest, PrivateTest" in r.stderr
    r = run_main(main, "--data", tmp_path / "none.csv")
    assert r.returncode == 2 and "FER2013 data not found" in r.stderr
    r = run_main(main, "--data", sample_path, "--checkpoint", tmp_path / "none.pt")
    assert r.returncode == 2 and "checkpoint not found" in r.stderr


def test_tta_probabilities(sample_data, fast_checkpoint):
    loaded = load_model(fast_checkpoint)
    x, _ = sample_data.split("PublicTest")
    for tta in TTA_MODES:
        p = predict_probs(loaded, x, tta, batch_size=64)
        assert p.shape == (140, 7) and np.allclose(p.sum(1), 1, atol=1e-5)
    # Flip TTA is the mean of the plain and the mirrored prediction.
    plain = predict_probs(loaded, x)
    mirrored = predict_probs(loaded, x.flip(-1))
    assert np.allclose(predict_probs(loaded, x, "flip"), (plain + mirrored) / 2, atol=1e-5)


def test_evaluate_checkpoint_function_matches_cli_numbers(sample_path, tmp_path, run_main):
    rep = evaluate_checkpoint(None, sample_path, "PublicTest")
    out = tmp_path / "r.json"
    assert run_main(main, "--threads", 1, "--data", sample_path, "--out", out).returncode == 0
    assert json.loads(out.read_text())["accuracy"] == pytest.approx(rep["accuracy"])
