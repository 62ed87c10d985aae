"""int8 inference: a post-training quantized copy of a model, calibrated on the repo's real sample faces."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from .config import SAMPLE_DATA
from .transforms import Normalization, preprocess

# fp32 / int8: PyTorch (oneDNN copy / quantized copy); onnx / onnx-int8: the same model run by ONNX Runtime
# (fer_core.onnxrt), 2-3x faster at batch 1 on an AVX2 CPU.
INFERENCE_PRECISIONS = ("fp32", "int8", "onnx", "onnx-int8")
MIN_AGREEMENT = 0.95  # top-1 agreement with the float model on the calibration faces, or the copy is refused
CALIBRATION_FACES = 256  # of the sample's 350 Training faces; 64-350 all gave PublicTest within 0.1 pp of each other


class QuantizationError(RuntimeError):
    """int8 inference is not possible here (no quantized engine, no calibration data, or too lossy)."""


def check_inference_precision(precision: str) -> None:
    if precision not in INFERENCE_PRECISIONS:
        raise ValueError(f"inference precision must be one of {INFERENCE_PRECISIONS}, not {precision!r}")


def calibration_batch(norm: Normalization, crop_size: int) -> torch.Tensor:
    """The first 256 Training faces of the sample shipped in tests/data, preprocessed like evaluation input."""
    from .data import DataError, load_csv

    try:
        images = load_csv(SAMPLE_DATA, cache=False).images["Training"][:CALIBRATION_FACES]
    except (DataError, OSError, KeyError) as e:
        raise QuantizationError(f"the int8 and ONNX inference copies are calibrated and checked on the sample faces at "
                                f"{SAMPLE_DATA}, which could not be read: {e}") from e
    return preprocess(images, norm, crop_size).contiguous(memory_format=torch.channels_last)  # NHWC: 3x faster convs


def _engine() -> str:
    for name in ("x86", "fbgemm", "onednn"):
        if name in torch.backends.quantized.supported_engines:
            return name
    raise QuantizationError(f"this torch build has no x86 quantized engine (has {torch.backends.quantized.supported_engines})")


def reduce_range() -> bool:
    """Whether activations must use 7 bits: x86 int8 kernels without VNNI (AVX2 only) overflow 16-bit sums at 8.

    Measured on PublicTest: on an AVX2-only AMD EPYC (Zen 3) full 8-bit activations dropped fer_vgg from 70.7% to
    67.8% (90% agreement with fp32) and 7 bits kept 70.4%; on AVX512-VNNI (Zen 4) 7 bits cost 0.4 points instead.
    """
    is_vnni = getattr(torch.cpu, "_is_vnni_supported", None)  # private torch API: when it is gone, play safe
    return not (is_vnni is not None and is_vnni())


def int8_copy(model: nn.Module, calib: torch.Tensor, min_agreement: float = MIN_AGREEMENT) -> nn.Module:
    """Post-training static int8 quantization (per-channel weights, min/max activation ranges from `calib`).

    Convolutions, batch norm (folded), ReLU, pooling and the linear head run in int8 on the CPU; the copy
    takes and returns float32 like the model; its `activation_bits` says 7 or 8 (`reduce_range`). Raises
    QuantizationError if its top-1 predictions on `calib` agree with the float model's less than `min_agreement`.
    No gradients or hooks: Captum uses the original.
    """
    engine = _engine()
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():  # the FX quantization API warns that it moves to torchao; it is in torch <= 2.14
        warnings.simplefilter("ignore")
        from torch.ao.quantization import QConfig, QConfigMapping
        from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        seven_bits = reduce_range()
        qconfig = QConfig(activation=MinMaxObserver.with_args(reduce_range=seven_bits),
                          weight=PerChannelMinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_channel_symmetric))
        model = model.eval()
        try:
            prepared = prepare_fx(copy.deepcopy(model), QConfigMapping().set_global(qconfig), example_inputs=(calib[:1],))
            with torch.inference_mode():
                reference = prepared(calib).argmax(1)  # observers pass float32 through: these are the model's answers
            quantized = convert_fx(prepared).eval()
            with torch.inference_mode():
                agreement = float((quantized(calib).argmax(1) == reference).float().mean())
        except Exception as e:  # noqa: BLE001 - tracing or a missing kernel: say so instead of a torch traceback
            raise QuantizationError(f"cannot quantize {type(model).__name__} to int8 ({type(e).__name__}: {e})") from e
    if agreement < min_agreement:
        raise QuantizationError(f"int8 copy agrees with the float model on {agreement:.1%} of the calibration faces "
                                f"(at least {min_agreement:.0%} needed)")
    quantized.activation_bits = 7 if seven_bits else 8  # type: ignore[assignment]  # what this copy used, for reports
    return quantized
