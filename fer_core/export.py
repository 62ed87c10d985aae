"""Standalone ONNX files of a checkpoint: uint8 48x48 faces in, calibrated probabilities out, no PyTorch needed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointError, LoadedModel, load_model
from .config import (
    DEFAULT_CHECKPOINT,
    EMOTIONS,
    IMAGE_SIZE,
    SAMPLE_DATA,
    atomic_write_bytes,
    cli_main,
    cli_prog,
    output_file,
    output_problem,
    read_json,
    set_threads,
    thread_count,
)
from .crops import MARGIN
from .evaluate import predict_probs, probs_at
from .quantize import CALIBRATION_FACES, MIN_AGREEMENT, QuantizationError
from .transforms import TTA_MODES, TTA_VIEWS, eval_views, resize_matrix, to_float

FORMAT = "fer_core.onnx/1"
INPUT, OUTPUT = "faces", "probs"
MAX_DIFF = 1e-4  # largest |probability difference| allowed between a float32 export and fer_core's own predictions


class FaceClassifier(nn.Module):
    """uint8 faces (B, 48, 48) -> probabilities (B, 7): normalisation, TTA views, network and temperature in one module,
    computing exactly what `predict_probs(loaded, faces, tta)` does, with operators ONNX has."""

    resize: torch.Tensor  # (crop, 48), a buffer: see _resize

    def __init__(self, loaded: LoadedModel, tta: str = "none") -> None:
        super().__init__()
        if tta not in TTA_MODES:
            raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
        self.net, self.norm, self.tta = loaded.model.eval(), loaded.norm, tta
        self.crop, self.temperature = loaded.config.crop_size, loaded.temperature_for(tta)
        self.register_buffer("resize", resize_matrix(IMAGE_SIZE, self.crop), persistent=False)
        self.views = len(eval_views(torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE), self.crop, tta))  # constants, not
        # traced sizes, so the file's output shape reads (batch, 7)

    def _resize(self, x: torch.Tensor) -> torch.Tensor:  # antialiased bilinear as two matrix products (ONNX has no
        return self.resize @ x @ self.resize.T  # antialiased Resize in the opsets torch's exporter writes)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        views = eval_views(to_float(faces, self.norm), self.crop, self.tta, resize=self._resize)  # (V, B, 1, c, c)
        logits = self.net(views.reshape(-1, 1, self.crop, self.crop))
        return probs_at(logits.reshape(self.views, -1, len(EMOTIONS)), self.temperature)


def weights_problem(model: nn.Module) -> str | None:
    """Why a model cannot be exported soundly, found without running it (non-finite weights), or None."""
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    return f"{len(bad)} weight tensor(s) hold NaN or infinite values ({bad[0]}...): a diverged run" if bad else None


def _sample_faces() -> tuple[torch.Tensor, torch.Tensor]:
    """Real faces from the sample in tests/data: the first Training ones calibrate int8, all of them check the export."""
    from .data import DataError, load_csv

    try:
        images = load_csv(SAMPLE_DATA, cache=False).images
    except (DataError, OSError) as e:
        raise QuantizationError(f"exports are checked on the sample faces at {SAMPLE_DATA}, which could not be read: {e}") from e
    return images["Training"][:CALIBRATION_FACES], torch.cat(list(images.values()))


def metadata(loaded: LoadedModel, tta: str, int8: bool) -> dict[str, str]:
    """What a user of the file needs besides the graph, stored as ONNX metadata (string values, JSON where structured)."""
    report = read_json(Path(loaded.path).with_suffix(".report.json")) or {}  # missing or unreadable: no figure
    accuracy = report.get("accuracy") if isinstance(report.get("accuracy"), float) else None
    return {"format": FORMAT, "emotions": json.dumps(list(EMOTIONS)), "tta": tta, "tta_views": TTA_VIEWS[tta],
            "temperature": f"{loaded.temperature_for(tta):.6g}", "precision": "int8" if int8 else "fp32",
            "checkpoint": Path(loaded.path).name, "model": f"{loaded.config.model} width {loaded.config.width}",
            "publictest_accuracy_centre_crop": "" if accuracy is None else f"{accuracy:.4f}",
            "input": f"{INPUT}: uint8 (batch, {IMAGE_SIZE}, {IMAGE_SIZE}) greyscale faces, upright: the square on a "
                     f"Haar face box (its long side{f' plus {MARGIN:g} of it each side' if MARGIN else ''}, same "
                     f"centre) shrunk with area averaging, as FER2013's faces were cut",
            "output": f"{OUTPUT}: float32 (batch, {len(EMOTIONS)}) probabilities in the order of 'emotions'"}


def export_onnx(checkpoint: str | Path | None, out: str | Path, tta: str = "none", int8: bool = False,
                min_agreement: float = MIN_AGREEMENT) -> dict[str, Any]:
    """Write `out`, an ONNX file predicting like `predict_probs(load_model(checkpoint), faces, tta)`, and check it.

    Every face of the repo's sample (560) goes through both: a float32 file must match fer_core's probabilities within
    MAX_DIFF; an int8 file (static quantization calibrated on 256 of them) must agree on the top class for at least
    min_agreement of them. The file is written only when it passes (whole, through a rename). Returns what was checked.
    """
    import onnx

    from .onnxrt import onnx_bytes, ort_session

    loaded = load_model(checkpoint)
    if problem := weights_problem(loaded.model):
        raise QuantizationError(f"{loaded.path}: {problem}; there is nothing sound to export")
    module = FaceClassifier(loaded, tta).eval()
    calib, faces = _sample_faces()
    try:
        data = onnx_bytes(module, faces[:1], input_name=INPUT, output_name=OUTPUT, int8=int8,
                          calib=[calib[i:i + 1] for i in range(len(calib))])
        got = ort_session(data).run(None, {INPUT: faces.numpy()})[0]
    except Exception as e:  # noqa: BLE001 - an export or quantizer failure is one clear error
        raise QuantizationError(f"ONNX export of {loaded.path} failed: {type(e).__name__}: {e}") from e
    ref = predict_probs(loaded, faces, tta)
    if not np.isfinite(ref).all():  # overflowing activations would pass the comparison below
        raise QuantizationError(f"{loaded.path} gives non-finite probabilities on the sample faces; there is nothing "
                                f"sound to export")
    diff, agreement = float(np.abs(got - ref).max()), float((got.argmax(1) == ref.argmax(1)).mean())
    if not int8 and diff > MAX_DIFF:
        raise QuantizationError(f"the ONNX file's probabilities differ from fer_core's by up to {diff:.2g} (> {MAX_DIFF:g})")
    if agreement < min_agreement:
        raise QuantizationError(f"the int8 ONNX file agrees with the float model on {agreement:.1%} of {len(faces)} "
                                f"faces (at least {min_agreement:.0%} needed)")
    proto = onnx.load_from_string(data)
    for key, value in metadata(loaded, tta, int8).items():
        proto.metadata_props.add(key=key, value=value)
    proto.doc_string = f"fer_core facial expression classifier exported from {Path(loaded.path).name}"
    atomic_write_bytes(out, proto.SerializeToString())
    return {"path": str(out), "bytes": Path(out).stat().st_size, "checkpoint": loaded.path, "tta": tta,
            "precision": "int8" if int8 else "fp32", "faces_checked": len(faces), "max_prob_diff": diff,
            "top1_agreement": agreement}


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=cli_prog("fer_core.export"), description=
                                "Export a checkpoint as one ONNX file (uint8 48x48 faces in, probabilities out) that "
                                "runs in ONNX Runtime without PyTorch or fer_core; checked on the repo's sample faces.")
    p.add_argument("--checkpoint", default=None, help="checkpoint to export (default: the shipped model)")
    p.add_argument("--out", default=None, type=output_file, help="the .onnx file to write (default: the checkpoint's "
                   "name with .onnx, .int8.onnx or .TTA.onnx, in the current folder)")
    p.add_argument("--tta", default="none", choices=TTA_MODES, help="test-time views computed inside the file: "
                   + "; ".join(f"{k}: {v}" for k, v in TTA_VIEWS.items()))
    p.add_argument("--int8", action="store_true", help="statically quantized weights and activations: about a quarter "
                   "of the size and 2-3x faster on CPUs, ~99%% the same answers")
    p.add_argument("--threads", type=thread_count, default=0, help="CPU threads (0 = all cores)")
    args = p.parse_args(argv)
    set_threads(args.threads)
    if args.out is None:  # named after the checkpoint, and checked as a given --out is, before the export
        stem = Path(args.checkpoint).stem if args.checkpoint else DEFAULT_CHECKPOINT.stem
        name = f"{stem}{'.int8' if args.int8 else ''}{'' if args.tta == 'none' else '.' + args.tta}.onnx"
        if problem := output_problem(name):
            p.error(f"argument --out: {problem}")
        args.out = name
    try:
        result = export_onnx(args.checkpoint, args.out, args.tta, args.int8)
    except (CheckpointError, QuantizationError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {result['path']} ({result['bytes'] / 1e6:.1f} MB, {result['precision']}, TTA {result['tta']}); "
          f"on {result['faces_checked']} sample faces: max |probability difference| {result['max_prob_diff']:.1e}, "
          f"top class the same for {result['top1_agreement']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
