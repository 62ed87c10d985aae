"""Time to accuracy of finished or running training runs: the first epoch at each PublicTest target and the minutes
of SGD steps it took (from each run folder's metrics.jsonl; evaluation between epochs not counted).

    python benchmarks/time_to_accuracy.py RUN [RUN ...] [--targets 0.60 0.65 0.68]

The README's time-to-accuracy figures come from it. To measure the one-hour recipe on this machine (the same as
`--model vgg --width 32 --epochs 20 --warmup-epochs 1 --soft-labels 0.3 --patience 0`):

    python -m fer_core.train --run runs/hour --recipe hour --threads 2
    python benchmarks/time_to_accuracy.py runs/hour
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fer_core.config import read_json
from fer_core.metrics import time_to_accuracy
from fer_core.runfolder import RunFolder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (with metrics.jsonl)")
    p.add_argument("--targets", nargs="+", type=float, default=[0.60, 0.65, 0.68])
    args = p.parse_args(argv)
    for run in args.runs:
        rows = RunFolder(run).read_metrics() if (run / "metrics.jsonl").exists() else []
        if not rows:
            print(f"{run}: no finished epoch")
            continue
        cfg = read_json(run / "config.json") or {}
        ips = sum(r["images_per_s"] for r in rows) / len(rows)
        best = max(r["val_acc"] for r in rows)
        print(f"{run}: {cfg.get('model', '?')} width {cfg.get('width', '?')}, {len(rows)} epochs "
              f"of {cfg.get('epochs', '?')}, {ips:.0f} images/s, best PublicTest {100 * best:.2f}%"
              + (" (started from trained weights)" if cfg.get("init") else ""))
        for target in args.targets:
            hit = time_to_accuracy(rows, target)
            print(f"  {100 * target:.0f}%: " + (f"epoch {hit[0]}, {hit[1] / 60:.1f} min of SGD steps" if hit else "not reached"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
