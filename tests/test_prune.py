"""fer_core.prune: narrower VGG copies that keep the channels that matter."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from fer_core.checkpoint import load_model, read_checkpoint
from fer_core.config import DEFAULT_CHECKPOINT
from fer_core.models import build_model
from fer_core.prune import channel_importance, conv_blocks, main, prune_vgg
from fer_core.quantize import calibration_batch


@pytest.fixture(scope="module")
def faces(fast_checkpoint):
    return calibration_batch(load_model(fast_checkpoint).norm, 44)[:64]  # real training faces of the sample


def test_dead_channels_are_the_ones_removed_and_the_answers_do_not_change(faces):
    torch.manual_seed(0)
    wide = build_model("vgg", width=8).eval()
    dead = []
    with torch.no_grad():
        for b in conv_blocks(wide):  # the last quarter of every layer's channels never fires (relu(0 * x - 1) = 0)
            n = b[1].num_features
            b[1].weight[3 * n // 4:] = 0.0
            b[1].bias[3 * n // 4:] = -1.0
            b[1].bias[:3 * n // 4] = 0.5  # the others always do, so each scores above zero
            dead.append(torch.arange(3 * n // 4, n))
    for score, d in zip(channel_importance(wide, faces), dead, strict=True):
        assert torch.all(score[d] == 0) and torch.all(score[:d[0]] > 0)
    narrow = prune_vgg(wide, build_model("vgg", width=6), faces)
    assert [b[0].out_channels for b in conv_blocks(narrow)] == [6, 6, 12, 12, 24, 24, 48, 48]
    with torch.no_grad():
        torch.testing.assert_close(narrow(faces), wide(faces), atol=1e-5, rtol=1e-5)


def test_widening_or_a_different_depth_is_refused(faces):
    wide = build_model("vgg", width=8).eval()
    with pytest.raises(ValueError, match="widen"):
        prune_vgg(wide, build_model("vgg", width=10), faces)
    with pytest.raises(ValueError, match="conv"):
        prune_vgg(wide, build_model("vgg_deep", width=6), faces)


def test_cli_prunes_the_shipped_vgg_into_a_loadable_narrower_checkpoint(fast_checkpoint, faces, tmp_path):
    out = tmp_path / "vgg24.pt"  # the shipped fer_fast.pt is vgg width 32
    r = subprocess.run([sys.executable, "-m", "fer_core.prune", "--checkpoint", str(fast_checkpoint), "--width", "24",
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    narrow, wide = load_model(out), load_model(fast_checkpoint)
    assert narrow.config.width == 24 and narrow.config.init == str(fast_checkpoint)
    assert read_checkpoint(out)["pruned_from"] == str(fast_checkpoint)
    assert narrow.num_params < 0.75 * wide.num_params
    # Pruning to the same width keeps every channel in order: the same network, the same answers.
    same = prune_vgg(wide.model, build_model("vgg", width=32), faces)
    with torch.no_grad():
        torch.testing.assert_close(same(faces), wide.model(faces))


def test_cli_errors_are_clear(tmp_path, run_main):
    r = run_main(main, "--checkpoint", DEFAULT_CHECKPOINT.parent / "fer_resnet.pt", "--width", "16", "--out", tmp_path / "x.pt")
    assert r.returncode == 2 and "VGG" in r.stderr
    r = run_main(main, "--checkpoint", tmp_path / "missing.pt", "--width", "16", "--out", tmp_path / "x.pt")
    assert r.returncode == 2 and "not found" in r.stderr
    for width in (0, -3):  # 0 wrote a model with no channels; -3 was a traceback
        fast = DEFAULT_CHECKPOINT.parent / "fer_fast.pt"
        r = run_main(main, "--checkpoint", fast, "--width", width, "--out", tmp_path / "x.pt")
        assert r.returncode == 2 and f"at least 1, not {width}" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.pt").exists()
