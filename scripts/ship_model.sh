#!/usr/bin/env bash
# Ship a run's best checkpoint: fp16 export, PublicTest reports (centre crop, multiscale and ten-crop TTA, int8 inference),
# model card.
#   bash scripts/ship_model.sh RUN_DIR "TRAINING COMMANDS" [NAME]
# FER_PARENT_RUNS="RUN1 RUN2": earlier runs of a chain (RUN_DIR started from them with --init), for the card.
# FER_WEIGHTS=PATH: ship this checkpoint (e.g. a `python -m fer_core.soup` of several runs) instead of RUN_DIR/best.pt.
# FER_HARDWARE="...": where it trained (default: this machine's CPU). FER_CARD_NOTES: free text for the card.
# FER_PREVIOUS_CARD=PATH: the card of the weights the first run started from, whose history the new card keeps; by default
# the committed checkpoints/NAME.md when that run's --init was checkpoints/NAME.pt (a fine-tune of the shipped model).
# The exported checkpoint gets a softmax temperature fitted on PublicTest (fer_core.calibrate) before the reports.
# Evaluates on PublicTest only (the selection split); PrivateTest is left for independent evaluation. Ends with
# fer-compare of the committed report against the new one.
set -euo pipefail
cd "$(dirname "$0")/.."
run=${1:?usage: ship_model.sh RUN_DIR "TRAINING COMMANDS" [NAME]}
command=${2:?the training command lines, for the model card}
name=${3:-fer_resnet}
out=checkpoints
previous_card=$(mktemp)
first_run=$(set -- ${FER_PARENT_RUNS:-} "$run"; echo "$1")
if [ -n "${FER_PREVIOUS_CARD:-}" ]; then
    cp "$FER_PREVIOUS_CARD" "$previous_card"
elif python -c "import json, sys; sys.exit(not json.load(open('$first_run/config.json')).get('init', '').endswith('$out/$name.pt'))" \
        && git show "HEAD:$out/$name.md" > "$previous_card" 2>/dev/null; then
    echo "the run continued the shipped $name.pt: its card keeps the committed card's history"
else
    : > "$previous_card"
fi
card_args=()
if [ -s "$previous_card" ]; then card_args=(--previous-card "$previous_card"); fi
python -c "from fer_core.checkpoint import export_checkpoint as e; e('${FER_WEIGHTS:-$run/best.pt}', '$out/$name.pt')"
python -m fer_core.calibrate --checkpoint "$out/$name.pt" --split PublicTest --threads 2
python -m fer_core.evaluate --checkpoint "$out/$name.pt" --split PublicTest --threads 2 --out "$out/$name.report.json"
python -m fer_core.evaluate --checkpoint "$out/$name.pt" --split PublicTest --threads 2 --tta multiscale --out "$out/$name.multiscale.report.json"
python -m fer_core.evaluate --checkpoint "$out/$name.pt" --split PublicTest --threads 2 --tta tencrop --out "$out/$name.tencrop.report.json"
python -m fer_core.evaluate --checkpoint "$out/$name.pt" --split PublicTest --threads 2 --precision int8 --out "$out/$name.int8.report.json"
# the clean faces and all eleven corruptions in one file (onnx: float32 answers as PyTorch's, 3x faster), so that the
# Evaluate page's Robustness tab and Home show the shipped model's robustness right after install
python -m fer_core.evaluate --checkpoint "$out/$name.pt" --split PublicTest --threads 2 --precision onnx --corruption all --out "$out/$name.robustness.report.json"
python -m fer_core.card --checkpoint "$out/$name.pt" --reports "$out/$name.report.json" "$out/$name.multiscale.report.json" "$out/$name.tencrop.report.json" \
    "$out/$name.int8.report.json" \
    --run ${FER_PARENT_RUNS:-} "$run" --command "$command" --hardware "${FER_HARDWARE:-$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, CPU only}" \
    --notes "${FER_CARD_NOTES:-}" "${card_args[@]}" --out "$out/$name.md"
ls -la "$out"
# The model it replaces, image by image on PublicTest (the rule so far: ship a McNemar-significant gain, or a significant
# robustness gain (benchmarks/robustness.py) with no significant loss on clean faces).
previous=$(mktemp)
if git show "HEAD:$out/$name.report.json" > "$previous" 2>/dev/null; then
    python -m fer_core.compare "$previous" "$out/$name.report.json" || true
fi
rm -f "$previous" "$previous_card"
