"""How the shipped models hold up when the faces are corrupted: PublicTest accuracy and macro-F1 under each named
corruption of `fer_core.perturb` (blur, noise, light, low resolution, JPEG, occluded eyes or lower face), the drop from
the clean faces, and McNemar's p for it (`fer_core.compare`).

    python benchmarks/robustness.py [--checkpoint A.pt B.pt] [--tta none] [--precision onnx] [--data CSV] [--threads 2]

The README's robustness table comes from it.
"""

from __future__ import annotations

import argparse
import sys

from fer_core.compare import compare_reports
from fer_core.config import DEFAULT_CHECKPOINT, DataNotFoundError, set_threads
from fer_core.evaluate import evaluate_checkpoint
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
        try:
            clean = evaluate_checkpoint(ckpt, args.data, args.split, args.tta, precision=args.precision)
        except DataNotFoundError as e:
            print(e, file=sys.stderr)
            return 2
        print(f"\n{ckpt} on {args.split} ({clean['n']:,} images), TTA {args.tta}, {args.precision}")
        print(f"| corruption | accuracy | drop (points) | macro-F1 | McNemar p |\n|---|---|---|---|---|\n"
              f"| none | {clean['accuracy']:.2%} | | {clean['macro_f1']:.3f} | |", flush=True)
        for name, what in PERTURBATIONS.items():
            if name == "none":
                continue
            r = evaluate_checkpoint(ckpt, args.data, args.split, args.tta, precision=args.precision, corruption=name)
            pair = compare_reports(clean, r)
            print(f"| {name}: {what} | {r['accuracy']:.2%} | {pair['difference'] * 100:+.1f} | {r['macro_f1']:.3f} | "
                  f"{pair['p_value']:.2g} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
