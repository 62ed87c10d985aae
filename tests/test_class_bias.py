"""benchmarks/class_bias.py: the bias search and its held-out estimate, on the sample and on a planted shift."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np

from fer_core.config import REPO_ROOT, SAMPLE_DATA

SCRIPT = REPO_ROOT / "benchmarks" / "class_bias.py"


def load_script():
    spec = importlib.util.spec_from_file_location("class_bias", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bias_search_undoes_a_planted_shift_and_scores_it_on_held_out_halves():
    cb = load_script()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 2000)
    clean = rng.normal(0, 1, (2000, 7))
    clean[np.arange(2000), y] += 2.0  # a decent classifier...
    shifted = clean.copy()
    shifted[:, 6] += 1.5  # ...pushed towards neutral
    b = cb.fit_biases(shifted, y)
    assert -2.0 <= b[6] - b[:6].mean() <= -1.0  # the search pulls neutral back down
    assert cb.accuracy(y, (shifted + b).argmax(1)) > cb.accuracy(y, shifted.argmax(1)) + 0.05
    acc, f1 = cb.cross_fitted(shifted, y, splits=2)
    assert len(acc) == 4 and acc.mean() > 0.05 and f1.mean() > 0.05  # a real shift survives held-out scoring
    acc, _ = cb.cross_fitted(clean, y, splits=2)
    assert abs(acc.mean()) < 0.02  # without one there is nothing to gain


def test_cli_prints_in_sample_and_held_out_figures_on_the_sample():
    r = subprocess.run([sys.executable, str(SCRIPT), "--checkpoint", str(REPO_ROOT / "checkpoints" / "fer_fast.pt"),
                        "--tta", "none", "--splits", "1", "--data", str(SAMPLE_DATA), "--threads", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert "fer_fast.pt TTA none: PublicTest " in line and "(2 halves)" in line
    base, in_sample = (float(s.split("%")[0].split()[-1]) for s in (line.split(";")[0], line.split(";")[1]))
    assert in_sample >= base  # fitting on the scored images never loses


def test_cli_without_data_says_where_to_put_it(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--data", str(tmp_path / "nowhere.csv")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
