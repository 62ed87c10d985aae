"""Cut the small real test sample (tests/data/) from the full FER2013 CSV and FER+ votes.

The real PrivateTest rows are withheld from this copy, so the sample's PrivateTest rows are other
PublicTest images relabelled PrivateTest: they exist to exercise three-split handling, not to score.
Usage: python benchmarks/make_sample.py [--data ../shared/data/fer2013.csv.gz]
"""

from __future__ import annotations

import argparse
import csv
import gzip
from pathlib import Path

import numpy as np

PER_CLASS = {"Training": 50, "PublicTest": 20, "PrivateTest": 10}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013.csv.gz"))
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "data"))
    args = p.parse_args()
    src = Path(args.data)
    with gzip.open(src, "rt", newline="") as f:
        rows = list(csv.reader(f))
    with open(src.parent / "fer2013new.csv", newline="") as f:
        votes = list(csv.reader(f))
    header, rows, vheader, votes = rows[0], rows[1:], votes[0], votes[1:]
    rng = np.random.default_rng(0)
    picked: list[tuple[int, str]] = []
    for usage, source in (("Training", "Training"), ("PublicTest", "PublicTest"), ("PrivateTest", "PublicTest")):
        for label in range(7):
            idx = [i for i, r in enumerate(rows) if r[2] == source and int(r[0]) == label and i not in {j for j, _ in picked}]
            picked += [(int(i), usage) for i in rng.choice(idx, PER_CLASS[usage], replace=False)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with gzip.open(out / "fer2013.csv.gz", "wt", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows([rows[i][0], rows[i][1], usage] for i, usage in picked)
    with open(out / "fer2013new.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(vheader)
        w.writerows([usage, *votes[i][1:]] for i, usage in picked)
    print(f"wrote {len(picked)} rows to {out}")


if __name__ == "__main__":
    main()
