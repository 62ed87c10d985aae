"""Face-quality flags (`fer_core.quality`) on FER2013: the Training percentiles its limits come from, how often each
corruption of `fer_core.perturb` is flagged, and the shipped models' PublicTest accuracy on flagged and unflagged faces
(from their committed reports' per-image answers).

    python benchmarks/quality.py [--data CSV]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

import numpy as np

from fer_core import quality
from fer_core.config import DEFAULT_CHECKPOINT, DataNotFoundError
from fer_core.data import load_dataset
from fer_core.perturb import PERTURBATIONS, perturb


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None)
    args = p.parse_args()
    try:
        data = load_dataset(args.data)
    except DataNotFoundError as e:
        print(e, file=sys.stderr)
        return 2
    train, _ = data.split("Training")
    m = quality.measure(train)
    print(f"Training ({len(train):,} faces): sharpness p2 {np.percentile(m['sharpness'], 2):.3f} "
          f"(limit {quality.SHARPNESS_MIN}), noise p98 {np.percentile(m['noise'], 98):.2f} (limit {quality.NOISE_MAX}), "
          f"brightness p1 {np.percentile(m['brightness'], 1):.1f} (limit {quality.BRIGHTNESS_MIN}), "
          f"contrast p1 {np.percentile(m['contrast'], 1):.1f} (limit {quality.CONTRAST_MIN})")
    x, y = data.split("PublicTest")
    print(f"\nPublicTest ({len(x):,} faces): share flagged under each corruption\n"
          "| corruption | any flag | blurry | noisy | dark | low contrast |\n|---|---|---|---|---|---|")
    for name in PERTURBATIONS:
        q = quality.assess(x if name == "none" else perturb(x, name))
        c = Counter(i for r in q for i in r.issues)
        print(f"| {name} | {np.mean([bool(r.issues) for r in q]):.1%} | "
              + " | ".join(f"{c[k] / len(q):.1%}" for k in ("blurry", "noisy", "dark", "low contrast")) + " |")
    issues = [r.issues for r in quality.assess(x)]
    print("\nClean PublicTest, the shipped models' centre-crop answers (committed reports): accuracy on flagged / other faces")
    for ckpt in sorted(DEFAULT_CHECKPOINT.parent.glob("*.pt")):
        report = json.loads(ckpt.with_suffix(".report.json").read_text())
        right = np.array(report["predictions"]["y_pred"]) == y.numpy()
        parts = []
        for flag in ("any", "blurry", "noisy", "dark", "low contrast"):
            hit = np.array([bool(i) if flag == "any" else flag in i for i in issues])
            parts.append(f"{flag} {right[hit].mean():.1%} (n={hit.sum()}) / {right[~hit].mean():.1%}")
        print(f"{ckpt.name}: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
