"""Probe: would ONNX Runtime run the shipped models faster on this CPU than PyTorch? Latency per face at batch 1.

onnxruntime and onnx are not dependencies of the project; this script measures whether they should become one
(install them anywhere on the path, e.g. `pip install --target /tmp/ort onnxruntime onnx` and `--extra-path /tmp/ort`).
For each checkpoint it exports the eval model to ONNX (TorchScript exporter), runs it in ONNX Runtime in fp32 and as a
static int8 copy calibrated on 128 real training faces, and prints the batch-1 latency next to eager PyTorch's, with
top-1 agreement with the PyTorch fp32 model on the PublicTest faces of --data (the committed sample by default).

    python benchmarks/onnxruntime_probe.py [--data CSV] [--threads 2] [--repeats 300] [--extra-path DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from timing import time_ms

from fer_core.checkpoint import load_model
from fer_core.config import REPO_ROOT, SAMPLE_DATA, set_threads
from fer_core.data import load_dataset
from fer_core.transforms import preprocess


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SAMPLE_DATA))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument("--extra-path", default=None, help="a folder holding onnxruntime and onnx (appended to sys.path)")
    args = p.parse_args()
    if args.extra_path:
        sys.path.append(args.extra_path)
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        print(f"onnxruntime (with onnx) is not installed: {e}. See this script's docstring.", file=sys.stderr)
        return 2
    threads = set_threads(args.threads)
    data = load_dataset(args.data)
    test, train = data.images["PublicTest"], data.images["Training"][:128]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1

    class Faces(CalibrationDataReader):
        def __init__(self, x: np.ndarray) -> None:
            self.batches = iter([{"x": x[i:i + 1]} for i in range(len(x))])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    print(f"{threads} threads, ONNX Runtime {ort.__version__}, torch {torch.__version__}; agreement on "
          f"{len(test)} PublicTest faces of {args.data}")
    print("| checkpoint | PyTorch fp32 | ORT fp32 (agreement) | ORT int8 (agreement) |\n|---|---|---|---|")
    for name in ("fer_vgg", "fer_resnet"):
        loaded = load_model(REPO_ROOT / "checkpoints" / f"{name}.pt")
        net, crop = loaded.model.eval(), loaded.config.crop_size
        x, calib = preprocess(test, loaded.norm, crop), preprocess(train, loaded.norm, crop).numpy()
        one = x[:1].contiguous()
        with torch.inference_mode():
            torch_ms, _ = time_ms(lambda n=net, a=one: n(a), args.repeats, warmup=30)
            ref = torch.cat([net(b) for b in x.split(256)]).argmax(1).numpy()
        with tempfile.TemporaryDirectory() as tmp:
            fp32, pre, int8 = (str(Path(tmp) / f"{name}.{kind}.onnx") for kind in ("fp32", "pre", "int8"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
                torch.onnx.export(net, (one,), fp32, input_names=["x"], output_names=["logits"],
                                  dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
            quant_pre_process(fp32, pre)
            quantize_static(pre, int8, Faces(calib), quant_format=QuantFormat.QOperator, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True)
            cells = []
            for path in (fp32, int8):
                sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
                feed = {"x": one.numpy()}
                ms, _ = time_ms(lambda s=sess, f=feed: s.run(None, f), args.repeats, warmup=30)
                got = np.concatenate([sess.run(None, {"x": b.numpy()})[0] for b in x.split(256)]).argmax(1)
                cells.append(f"{ms:.2f} ms ({(got == ref).mean():.2%})")
        print(f"| {name}.pt | {torch_ms:.2f} ms | {cells[0]} | {cells[1]} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
