"""fer_core.soup: averaging fine-tunes of one start gives a loadable checkpoint; other architectures are refused."""

from __future__ import annotations

import pytest
import torch

from fer_core.checkpoint import CheckpointError, float_weights, load_model, read_checkpoint
from fer_core.config import TrainConfig
from fer_core.evaluate import build_report, predict_probs
from fer_core.soup import main, soup
from fer_core.train import fit


@pytest.fixture(scope="module")
def fine_tunes(sample_data, tmp_path_factory):
    """Two short fine-tunes (different seeds and learning rates) of one small model trained on the sample."""
    root = tmp_path_factory.mktemp("soup")
    cfg = TrainConfig(model="small", width=8, batch_size=32, epochs=2, warmup_epochs=0, threads=1, patience=0)
    fit(cfg, root / "base", data=sample_data)
    init = str(root / "base" / "best.pt")
    for seed, lr in ((1, 0.01), (2, 0.02)):
        fit(cfg.replace(epochs=1, seed=seed, lr=lr, init=init), root / f"ft{seed}", data=sample_data)
    return [root / "ft1" / "best.pt", root / "ft2" / "best.pt"], root


def test_soup_is_the_mean_of_the_weights_and_loads(fine_tunes, sample_data):
    paths, root = fine_tunes
    assert main([*map(str, paths), "--out", str(root / "soup.pt")]) == 0
    a, b = (float_weights(read_checkpoint(p)) for p in paths)
    mixed = read_checkpoint(root / "soup.pt")
    name = next(k for k, v in a.items() if v.is_floating_point() and v.ndim == 4)  # a convolution's weights
    assert not torch.equal(a[name], b[name])  # the two fine-tunes did move apart
    torch.testing.assert_close(mixed["model"][name], (a[name] + b[name]) / 2)
    assert [i["path"] for i in mixed["soup"]] == [str(p) for p in paths]
    assert "best_acc" not in mixed and "epoch" not in mixed  # one ingredient's facts are not the soup's
    loaded = load_model(root / "soup.pt")
    x, y = sample_data.images["PublicTest"], sample_data.labels["PublicTest"].numpy()
    report = build_report(predict_probs(loaded, x), y, split="PublicTest", tta="none", loaded=loaded)
    assert report["n"] == len(y) and 0.0 <= report["accuracy"] <= 1.0


def test_soup_refuses_other_architectures_and_single_checkpoints(fine_tunes, sample_data, tmp_path, capsys):
    paths, _ = fine_tunes
    cfg = TrainConfig(model="small", width=16, batch_size=32, epochs=1, warmup_epochs=0, threads=1, patience=0)
    fit(cfg, tmp_path / "wide", data=sample_data)
    with pytest.raises(CheckpointError, match="width differ"):
        soup([paths[0], tmp_path / "wide" / "best.pt"])
    assert main([str(paths[0]), str(tmp_path / "wide" / "best.pt"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "width differ" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    with pytest.raises(ValueError, match="at least two"):
        soup(paths[:1])
    with pytest.raises(CheckpointError, match="not found"):
        soup([paths[0], tmp_path / "missing.pt"])
