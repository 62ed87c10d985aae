"""The shipped models as standalone ONNX files (`fer_core.export`): size, latency per face at batch 1 in a process
without PyTorch, and PublicTest accuracy of each file when the full data is there.

    python benchmarks/export.py [--checkpoints fer_fast fer_vgg fer_resnet] [--threads 2] [--repeats 500] [--data CSV]

Each file is timed by a fresh interpreter in which `import torch` fails, so nothing but ONNX Runtime and NumPy shares
the cores, as in an application that ships only the file. The figure includes everything the file computes
(uint8 to float, normalisation, the centre crop or TTA views, the network, the temperature and the softmax).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from fer_core.config import REPO_ROOT, DataNotFoundError
from fer_core.export import export_onnx

TIMER = """
import sys, json, statistics, time
sys.modules["torch"] = None
import numpy as np, onnxruntime as ort
path, threads, repeats, data = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
o = ort.SessionOptions(); o.intra_op_num_threads, o.inter_op_num_threads = threads, 1
o.add_session_config_entry("session.intra_op.allow_spinning", "0")
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
face = np.random.default_rng(0).integers(0, 256, (1, 48, 48), dtype=np.uint8)
for _ in range(30): s.run(None, {"faces": face})
times = []
for _ in range(repeats):
    t0 = time.perf_counter(); s.run(None, {"faces": face}); times.append(time.perf_counter() - t0)
out = {"ms": statistics.median(times) * 1e3}
if data:
    d = np.load(data)
    out["accuracy"] = float((s.run(None, {"faces": d["x"]})[0].argmax(1) == d["y"]).mean())
print(json.dumps(out))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoints", nargs="+", default=["fer_fast", "fer_vgg", "fer_resnet"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=500)
    p.add_argument("--tta", default="none")
    p.add_argument("--data", default=None, help="FER2013 CSV for PublicTest accuracy (default: as the CLIs find it)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = ""
        try:
            import numpy as np

            from fer_core.data import load_dataset

            x, y = load_dataset(args.data).split("PublicTest")
            data = str(Path(tmp) / "publictest.npz")
            np.savez(data, x=x.numpy(), y=y.numpy())
        except DataNotFoundError as e:
            print(f"# no PublicTest accuracy: {str(e).splitlines()[0]}")
        print(f"{'checkpoint':<12}{'precision':<11}{'MB':>6}{'batch 1 ms/face':>17}{'PublicTest':>12}{'same top class':>16}")
        for name in args.checkpoints:
            for int8 in (False, True):
                path = Path(tmp) / f"{name}{'.int8' if int8 else ''}.onnx"
                r = export_onnx(REPO_ROOT / "checkpoints" / f"{name}.pt", path, args.tta, int8=int8)
                done = subprocess.run([sys.executable, "-c", TIMER, str(path), str(args.threads), str(args.repeats), data],
                                      capture_output=True, text=True, check=True)
                t = json.loads(done.stdout)
                acc = f"{t['accuracy']:.2%}" if "accuracy" in t else "-"
                print(f"{name:<12}{r['precision']:<11}{r['bytes'] / 1e6:>6.1f}{t['ms']:>17.2f}{acc:>12}"
                      f"{r['top1_agreement']:>16.1%}", flush=True)


if __name__ == "__main__":
    main()
