"""The learning-rate range test on the real sample: a geometric sweep, the early stop once the loss blows up, the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fer_core.config import SAMPLE_DATA, TrainConfig
from fer_core.lrfind import DIVERGED, FLAT, caveat, lr_range_test, main

TINY = TrainConfig(data=str(SAMPLE_DATA), model="small", width=8, batch_size=32, threads=1)


def test_the_sweep_is_geometric_and_the_suggestion_is_a_tenth_of_the_lowest_loss(sample_data):
    r = lr_range_test(TINY, sample_data, start=1e-3, end=1.0, steps=30)
    assert len(r["lr"]) == len(r["loss"]) == len(r["smoothed"]) == 30
    assert r["lr"][0] == pytest.approx(1e-3) and r["lr"][-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log(r["lr"])), math.log(1e3) / 29)
    assert all(math.isfinite(v) for v in r["smoothed"]) and r["loss"][0] == pytest.approx(r["smoothed"][0])  # bias-corrected
    assert r["lowest"] == r["lr"][int(np.argmin(r["smoothed"]))] and r["suggested"] == pytest.approx(r["lowest"] / 10)
    assert r["fall"] == pytest.approx(r["smoothed"][3] - min(r["smoothed"]))  # from the level after a tenth of the steps
    again = lr_range_test(TINY, sample_data, start=1e-3, end=1.0, steps=30)
    assert again["loss"] == pytest.approx(r["loss"], rel=1e-4)  # seeded: the same batches and augmentation


def test_the_sweep_stops_once_the_loss_blows_up(sample_data):
    r = lr_range_test(TINY, sample_data, start=1e-2, end=1e5, steps=60)
    assert len(r["lr"]) < 60
    last = r["smoothed"][-1]
    assert not math.isfinite(last) or last > DIVERGED * min(r["smoothed"])


def test_cli_prints_the_suggestion_and_refuses_bad_settings(tmp_path, run_main, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["--data", SAMPLE_DATA, "--model", "small", "--width", 8, "--batch-size", 32, "--threads", 1, "--steps", 20]
    r = run_main(main, *args)
    assert r.returncode == 0 and "step   10  lr" in r.stdout and "suggested peak lr" in r.stdout
    r = run_main(main, *args, "--json")
    shown = json.loads(r.stdout)
    assert r.returncode == 0 and len(shown["lr"]) <= 20 and shown["suggested"] == pytest.approx(shown["lowest"] / 10)
    assert list(tmp_path.iterdir()) == []  # nothing written
    from fer_core.config import DEFAULT_CHECKPOINT
    fast = DEFAULT_CHECKPOINT.parent / "fer_fast.pt"  # a vgg: another architecture than --model small asks for
    for extra, message in ((["--steps", 5], "at least 10 steps"), (["--crop-size", 60], "crop_size"),
                           (["--init", fast], "holds model 'vgg' width 32, but this run trains 'small' width 8"),
                           (["--data", tmp_path / "none.csv"], "FER2013 data not found")):
        r = run_main(main, *args, *extra)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, extra


def test_a_flat_curve_or_trained_weights_make_the_suggestion_a_weak_one():
    flat, steep = {"fall": FLAT / 2}, {"fall": FLAT * 3}
    assert "hardly fell (0.05 below its early level)" in caveat(flat, TINY) and caveat(steep, TINY) == ""
    assert "from trained weights" in caveat(steep, TINY.replace(init="some.pt"))
    assert caveat({}, TINY) == ""  # a result written before `fall` existed
