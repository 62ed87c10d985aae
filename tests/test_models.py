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


@pytest.mark.parametrize("name", list_models())
def test_inference_copy_matches_the_model(name):
    from fer_core.models import inference_copy

    torch.manual_seed(0)
    model = build_model(name).eval()
    with torch.no_grad():  # give BN non-trivial statistics so folding it into the convs is really exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    fast = inference_copy(model)
    x = torch.randn(5, 1, 44, 44)
    with torch.inference_mode():
        assert torch.allclose(fast(x), model(x), atol=1e-4, rtol=1e-3)
    if torch.backends.mkldnn.is_available() and name.startswith(("small", "vgg")):
        assert fast is not model  # the oneDNN path is taken for the plain conv nets
    assert model.training is False and any(p.requires_grad for p in model.parameters())  # the original is untouched
