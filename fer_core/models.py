"""CNN architectures for 48x48 greyscale faces and a small name -> constructor registry."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .config import NUM_CLASSES

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model: build_model("vgg", num_classes=7, width=32, drop_rate=0.3)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}")
    return _REGISTRY[name](**kwargs)


def describe_model(name: str) -> str:
    """The first line of a registered model's docstring (what the model card says about the architecture)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}")
    return (_REGISTRY[name].__doc__ or name).strip().splitlines()[0]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # nn.ReLU modules (not F.relu), one instance per use, so Captum's guided backprop hooks apply.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Classifier(nn.Module):
    """Global average pooling, dropout and a linear layer: (B, C, h, w) -> (B, num_classes)."""

    def __init__(self, cin: int, num_classes: int, drop_rate: float) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(self.pool(x), 1)))


class VGG(nn.Module):
    """VGG-style net: stages of `depth` 3x3 conv-BN-ReLU blocks, each stage ending in 2x2 max-pool."""

    def __init__(self, num_classes: int = NUM_CLASSES, in_chans: int = 1, width: int = 32,
                 stages: int = 4, depth: int = 2, drop_rate: float = 0.3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for s in range(stages):
            cout = width * 2**s
            for _ in range(depth):
                layers.append(conv_bn(cin, cout))
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = Classifier(cin, num_classes, drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, H, W) -> (B, num_classes)
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    """ResNet basic block with a projection shortcut when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, stride)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = (nn.Identity() if stride == 1 and cin == cout else
                      nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn2(self.conv2(self.conv1(x))) + self.short(x))


class ResNet(nn.Module):
    """ResNet-18-like net for 48 px input: a 3x3 stem and four stages of basic blocks."""

    def __init__(self, num_classes: int = NUM_CLASSES, in_chans: int = 1, width: int = 32,
                 blocks: tuple[int, ...] = (2, 2, 2, 2), drop_rate: float = 0.3) -> None:
        super().__init__()
        self.stem = conv_bn(in_chans, width)
        stages: list[nn.Module] = []
        cin = width
        for s, n in enumerate(blocks):
            cout = width * 2**s
            for b in range(n):
                stages.append(BasicBlock(cin, cout, 2 if (b == 0 and s > 0) else 1))
                cin = cout
        self.features = nn.Sequential(*stages)
        self.head = Classifier(cin, num_classes, drop_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.stem(x)))


@register_model
def small(num_classes: int = NUM_CLASSES, in_chans: int = 1, width: int = 16, drop_rate: float = 0.2) -> nn.Module:
    """Fast CPU model (72K parameters at width 16, 288K at 32): three VGG stages of two convs."""
    return VGG(num_classes, in_chans, width, stages=3, depth=2, drop_rate=drop_rate)


@register_model
def vgg(num_classes: int = NUM_CLASSES, in_chans: int = 1, width: int = 32, drop_rate: float = 0.3) -> nn.Module:
    """VGG-BN, four stages of two convs (~1.2M parameters at width 32, ~4.7M at 64)."""
    return VGG(num_classes, in_chans, width, stages=4, depth=2, drop_rate=drop_rate)


@register_model
def vgg_deep(num_classes: int = NUM_CLASSES, in_chans: int = 1, width: int = 32, drop_rate: float = 0.3) -> nn.Module:
    """VGG-BN with three convs per stage (~1.8M parameters at width 32)."""
    return VGG(num_classes, in_chans, width, stages=4, depth=3, drop_rate=drop_rate)


@register_model
def resnet(num_classes: int = NUM_CLASSES, in_chans: int = 1, width: int = 32, drop_rate: float = 0.3) -> nn.Module:
    """ResNet-18 layout for 48 px faces (~2.8M parameters at width 32, ~6.3M at 48, ~11M at 64)."""
    return ResNet(num_classes, in_chans, width, drop_rate=drop_rate)


class _OneDNNInference(nn.Module):
    """Eval-only twin of a model: BN folded into the convs, weights in oneDNN's blocked layout (dense in, dense out)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous().to_mkldnn()).to_dense()


def inference_copy(model: nn.Module, atol: float = 1e-4) -> nn.Module:
    """A faster eval-only copy for CPU inference (~1.4x at batch 1), or the model itself where that is not possible.

    The copy is checked against the model on a random batch; any failure or difference above `atol` falls back.
    It has no gradients or hooks: use the original for training and Captum explanations.
    """
    model = model.eval()
    if not torch.backends.mkldnn.is_available():
        return model
    try:
        import copy
        import warnings

        with warnings.catch_warnings():  # torch.utils.mkldnn defines (deprecated) ScriptModules on import
            warnings.simplefilter("ignore")
            from torch.fx.experimental.optimization import fuse
            from torch.utils.mkldnn import to_mkldnn

            fast = _OneDNNInference(to_mkldnn(fuse(copy.deepcopy(model)))).eval()
        x = torch.randn(2, 1, 44, 44, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            ok = torch.allclose(fast(x), model(x), atol=atol, rtol=1e-3)
        return fast if ok else model
    except Exception:  # noqa: BLE001 - an architecture oneDNN cannot take simply runs as it is
        return model
