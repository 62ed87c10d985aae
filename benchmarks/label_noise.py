"""How much of a model's error is FER2013 label noise? Its saved report's predictions against the FER+ majority of ten
annotators per image: accuracy on both label sets over the images FER+ keeps, how many of the model's "mistakes"
FER+ sides with, and the mean share of the ten votes that the model's answer and the original label each get.

    python benchmarks/label_noise.py [--report checkpoints/fer_resnet.report.json ...] [--votes fer2013new.csv]

The README's paragraph on label noise comes from it (fer_resnet.pt and fer_vgg.pt, centre crop, 2026-11-29).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fer_core import metrics
from fer_core.config import DEFAULT_CHECKPOINT
from fer_core.data import FERPlusVotes, find_ferplus, load_ferplus


def label_noise(report: dict[str, Any], votes: FERPlusVotes) -> dict[str, float]:
    """The figures above for one report (FER2013 labels, with per-image predictions) and the FER+ votes of its data."""
    rows = [i for i, usage in enumerate(votes.usage) if usage == report["split"]]
    if "predictions" not in report or len(rows) != report["n"]:
        raise ValueError(f"the report needs per-image predictions of all {len(rows)} {report['split']} images")
    return metrics.label_noise(report["predictions"]["y_true"], report["predictions"]["y_pred"], votes.labels[rows].numpy(),
                               votes.dist[rows].numpy())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", nargs="+", default=[str(DEFAULT_CHECKPOINT.with_suffix(".report.json"))])
    p.add_argument("--votes", default=None, help="fer2013new.csv (default: beside the report's data file)")
    args = p.parse_args(argv)
    for path in args.report:
        report = json.loads(Path(path).read_text())
        report = report[0] if isinstance(report, list) else report
        votes_path = Path(args.votes) if args.votes else find_ferplus(Path(str(report.get("data", ""))))
        if votes_path is None or not votes_path.exists():
            print(f"error: no FER+ votes for {path}: pass --votes fer2013new.csv", file=sys.stderr)
            return 2
        f = label_noise(report, load_ferplus(votes_path))
        print(f"{path} ({report['split']}, TTA {report['tta']}): {100 * f['acc_fer2013']:.2f}% against the FER2013 labels. "
              f"On the {f['kept']:,} of {f['n']:,} images FER+ keeps: {100 * f['acc_fer2013_kept']:.2f}% against FER2013, "
              f"{100 * f['acc_ferplus_kept']:.2f}% against the FER+ majority (the two label sets agree on "
              f"{100 * f['labels_agree_kept']:.1f}%). Of its {f['wrong_kept']:,} answers that differ from the FER2013 label "
              f"there, FER+ sides with the model on {f['wrong_ferplus_agrees_with_model']:,}. Mean share of the ten votes: "
              f"{100 * f['vote_share_model']:.1f}% for the model's answer, {100 * f['vote_share_label']:.1f}% for the "
              "FER2013 label.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
