"""How the shipped models hold up when the faces are corrupted: PublicTest accuracy and macro-F1 under each named
corruption of `fer_core.perturb` (blur, noise, light, low resolution, JPEG, occluded eyes or lower face), the drop from
the clean faces, and McNemar's p for it (`fer_core.compare`).

    python benchmarks/robustness.py [--checkpoint A.pt B.pt] [--tta none] [--precision onnx] [--data CSV] [--threads 2]

The README's robustness table comes from it. `fer-evaluate --corruption all --out FILE` saves the same reports, which the
dashboard's Evaluate page plots (Robustness tab).
"""

from __future__ import annotations

import argparse
import sys

from fer_core.compare import robustness
from fer_core.config import DEFAULT_CHECKPOINT, DataNotFoundError, set_threads
from fer_core.evaluate import robustness_reports
from fer_core.perturb import PERTURBATIONS


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", nargs="+", default=[str(DEFAULT_CHECKPOINT), str(DEFAULT_CHECKPOINT.parent / "fer_fast.pt")])
    p.add_argument("--tta", default="none")
    p.add_argument("--split", default="PublicTest")
    p.add_argument("--data", default=None)
    p.add_argument("--precision", default="fp32", help="onnx: the same float32 answers about 3x faster on this CPU")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    set_threads(args.threads)
    for ckpt in args.checkpoint:
        seen: list[dict] = []

        def show(report: dict, ckpt: str = ckpt, seen: list[dict] = seen) -> None:  # a row per corruption as scored
            seen.append(report)
            row = robustness(seen)[-1]
            if len(seen) == 1:
                print(f"\n{ckpt} on {args.split} ({report['n']:,} images), TTA {args.tta}, {args.precision}")
                print("| corruption | accuracy | drop (points) | macro-F1 | McNemar p |\n|---|---|---|---|---|")
                print(f"| none | {row['accuracy']:.2%} | | {row['macro_f1']:.3f} | |", flush=True)
            else:
                print(f"| {row['corruption']}: {PERTURBATIONS[row['corruption']]} | {row['accuracy']:.2%} | "
                      f"{row['drop']:+.1f} | {row['macro_f1']:.3f} | {row['p_value']:.2g} |", flush=True)

        try:
            robustness_reports(ckpt, args.data, args.split, args.tta, precision=args.precision, on_report=show)
        except DataNotFoundError as e:
            print(e, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
