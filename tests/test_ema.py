"""Weight EMA: the average's arithmetic, its place in training (selection, best.pt, last.pt) and exact resume."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fer_core.checkpoint import load_model, read_checkpoint
from fer_core.config import TrainConfig
from fer_core.ema import WeightEMA, check_ema
from fer_core.runfolder import RunFolder
from fer_core.targets import training_rows
from fer_core.train import evaluate, fit, main

TINY = TrainConfig(model="small", width=8, batch_size=32, epochs=2, lr=0.05, warmup_epochs=1, crop_size=44, threads=1,
                   patience=0, ema=0.9)


def test_average_follows_the_formula_and_copies_integer_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = WeightEMA(model, 0.5)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for n in range(1, 6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(4, 3))  # train mode: batch norm's running stats and step counter move
        ema.update()
        d = min(0.5, (1 + n) / (10 + n))  # 0.2, 0.25, ... then capped at 0.5
        for k, v in model.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v if v.is_floating_point() else v.clone()
    got = ema.model.state_dict()
    for k, v in expected.items():
        assert torch.allclose(got[k], v, atol=1e-6), k
    assert got["1.num_batches_tracked"].item() == 5 and ema.updates == 5
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5])
def test_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(ValueError, match="ema is the per-step decay"):
        check_ema(decay)


def test_selection_and_best_checkpoint_use_the_average(sample_data, tmp_path):
    status = fit(TINY.replace(epochs=1, warmup_epochs=0), tmp_path / "r", data=sample_data)  # one epoch: it is the best
    run = RunFolder(tmp_path / "r")
    last, best = read_checkpoint(run.file("last.pt")), read_checkpoint(run.file("best.pt"))
    assert last["ema"]["updates"] == len(training_rows(sample_data, TINY)[0]) // 32  # one per SGD step
    trained, averaged = last["model"], last["ema"]["model"]
    assert any(not torch.equal(trained[k], averaged[k]) for k in trained if trained[k].is_floating_point())
    assert all(torch.equal(best["model"][k], averaged[k]) for k in averaged)  # best.pt is the average, not the weights
    loaded = load_model(run.file("best.pt"))  # and it scores the accuracy the run logged and selected on
    vx, vy = sample_data.split("PublicTest")
    acc = evaluate(loaded.model, vx, vy, loaded.norm, TINY.crop_size)["val_acc"]
    assert acc == pytest.approx(status["best_acc"], abs=1.5 / len(vx))


def test_resume_restores_the_average_exactly(sample_data, tmp_path):
    fit(TINY, tmp_path / "straight", data=sample_data)
    fit(TINY.replace(epochs=1), tmp_path / "split", data=sample_data)
    fit(TINY, tmp_path / "split", resume=True, data=sample_data)
    a = read_checkpoint(tmp_path / "straight" / "last.pt")["ema"]
    b = read_checkpoint(tmp_path / "split" / "last.pt")["ema"]
    assert a["updates"] == b["updates"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_cli_rejects_a_decay_of_one(sample_path, tmp_path, run_main):
    r = run_main(main, "--run", tmp_path / "r", "--data", sample_path, "--model", "small", "--width", 8, "--ema", 1)
    assert r.returncode == 2 and "ema is the per-step decay" in r.stderr
    assert not (tmp_path / "r" / "last.pt").exists()
