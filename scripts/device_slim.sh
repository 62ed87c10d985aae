#!/usr/bin/env bash
# Take what a GPU call does not need out of the work tree, so that the tree plus the packed data (.devdata/fer.npz,
# 48 MB) fit the 64 MiB the device tool copies; put it all back afterwards with `git checkout -- .`.
#   bash scripts/device_slim.sh [KEEP.pt ...]    # the checkpoints the call needs (teachers, starts); default: all
# Removed: the other checkpoints/*.pt, every evaluation report, the tests (but for the sample CSV, cut to the
# CALIBRATION_FACES (256) Training faces that fer_core.prune and fer_core.quantize calibrate on), the dashboard, the
# benchmarks, the docs and the README.
# Prints the bytes that will travel (tracked and untracked-not-ignored files, plus .devdata) against the limit.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then
    for ckpt in checkpoints/*.pt; do
        keep=0
        for k in "$@"; do [ "$(basename "$k")" = "$(basename "$ckpt")" ] && keep=1; done
        [ $keep = 1 ] || rm -f "$ckpt"
    done
fi
rm -f checkpoints/*.report.json README.md
git ls-files -z tests dashboard benchmarks docs | grep -zv '^tests/data/fer2013.csv.gz$' | xargs -0 rm -f
python - <<'PY'
import csv, gzip, io
from fer_core.quantize import CALIBRATION_FACES
path = "tests/data/fer2013.csv.gz"
rows = list(csv.reader(io.TextIOWrapper(gzip.open(path), newline="")))
train = [r for r in rows[1:] if r[2] == "Training"][:CALIBRATION_FACES]
with gzip.open(path, "wt", newline="") as f:
    csv.writer(f).writerows([rows[0], *train])
PY
size=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | python -c "
import os, sys
print(sum(os.path.getsize(p) for p in sys.stdin.read().split(chr(0)) if p and os.path.isfile(p)))")
extra=$( [ -d .devdata ] && du -cb .devdata | tail -1 | cut -f1 || echo 0)
limit=$((64 * 1024 * 1024))
echo "travels: $((size + extra)) bytes (tree $size + .devdata $extra) of $limit; restore with: git checkout -- ."
[ $((size + extra)) -le $limit ] || { echo "still over the limit: keep fewer checkpoints" >&2; exit 1; }
