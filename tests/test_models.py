"""Every registered model: forward shapes, ReLU modules for Captum, parameter counts, registry errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fer_core.models import build_model, count_params, list_models


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("size", [44, 48])
def test_forward_shape(name, size):
    model = build_model(name, width=8, num_classes=7).eval()
    out = model(torch.randn(3, 1, size, size).contiguous(memory_format=torch.channels_last))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_relu_modules_not_inplace_and_not_shared(name):
    model = build_model(name, width=8)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert relus and not any(r.inplace for r in relus)
    assert len({id(r) for r in relus}) == len(relus)


def test_param_counts_grow_with_width():
    assert count_params(build_model("vgg", width=32)) == 1_174_439
    assert count_params(build_model("vgg", width=64)) > 4 * count_params(build_model("vgg", width=32)) - 100_000
    assert count_params(build_model("small", width=16)) < 400_000


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'alexnet'; available"):
        build_model("alexnet")
