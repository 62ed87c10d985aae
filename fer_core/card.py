"""Render a model card (markdown) from a checkpoint, its evaluation reports and its run folder; CLI `python -m fer_core.card`."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .audit import seen_mask
from .checkpoint import load_model
from .config import EMOTIONS, TrainConfig, atomic_write_bytes, cli_main, cli_prog, output_file, read_json
from .distill import teacher_paths
from .evaluate import headline_order
from .metrics import time_to_accuracy, top_confusions
from .models import describe_model
from .quality import ISSUES
from .runfolder import RunFolder
from .transforms import DEGRADE_BLUR, DEGRADE_NOISE_GREY, DEGRADE_SIDES, JPEG_QUALITIES

LIMITS = """\
- **Label noise.** FER2013 labels are single-annotator web labels; the FER+ majority of ten annotators picks
  another class for 32% of the Training images it keeps, and the data holds duplicates (some across splits)
  and a few non-faces.
- **Input assumptions.** 48x48 greyscale, roughly frontal, face-centred crops. Strong pose (> ~30 degrees),
  occlusion (hands, masks, sunglasses), extreme lighting, and very low resolution degrade predictions; in
  photos the Haar detectors miss faces turned in the picture's plane by more than about 45 degrees (small
  ones past about 20), faces under about 6-10% of the photo's short side unless asked for small faces (from
  about 3-4%), and faces seen from the side next to frontal ones (side views are looked for where no
  frontal face is found, or always with small faces), before the classifier is even asked; less turned faces
  are cut upright, and side views are classified by a model that saw mostly frontal faces.
- **Dataset bias.** FER2013 was collected by web image search: posed and exaggerated expressions, uneven
  coverage of age, ethnicity and culture. Expression is not emotion: the model labels facial movements,
  not what anyone feels, and must not be used for decisions about people.
"""


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def results_table(reports: list[dict[str, Any]]) -> str:
    rows = ["| split | TTA | inference | n | accuracy | macro-F1 | weighted-F1 | ECE | faces Training lacks: accuracy / "
            "macro-F1 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        u = r.get("unseen") or {}
        unseen = f"{_pct(u['accuracy'])} / {u['macro_f1']:.4f}" if "accuracy" in u else "-"
        rows.append(f"| {r['split']} | {r['tta']} | {r.get('precision', 'fp32')} | {r['n']} | {_pct(r['accuracy'])} | "
                    f"{r['macro_f1']:.4f} | {r['weighted_f1']:.4f} | {r['ece']:.4f} | {unseen} |")
    return "\n".join(rows)


def copies_note(r: dict[str, Any]) -> str:
    """What the faces a test split shares with Training do to its accuracy (the report's `unseen` block), or ""."""
    u = r.get("unseen") or {}
    if "accuracy" not in u or not u.get("seen_n"):
        return ""
    return (f"Training holds {u['seen_n']:,} of these {r['n']:,} {r['split']} faces too, pixel for pixel or as near copies "
            f"(the same photo cropped a few pixels off, rescaled a little or re-encoded; `fer-audit` counts them). The model "
            f"scores {_pct(u['seen_accuracy'])} on them and **{_pct(u['accuracy'])}** (macro-F1 {u['macro_f1']:.4f}) on the "
            f"other {u['n']:,}: the better guess of its accuracy on faces it has never seen. FER2013's published figures include "
            f"such copies too (PrivateTest's report counts its own).{_copies_by_class(r)}")


def _copies_by_class(r: dict[str, Any]) -> str:
    pred = r.get("predictions") or {}
    if not {"y_true", "y_pred"} <= set(pred):
        return ""
    y, yhat = np.asarray(pred["y_true"]), np.asarray(pred["y_pred"])
    seen = seen_mask(r)
    if seen is None:
        return ""
    parts = []
    for k, name in enumerate(r["labels"]):
        rest, copies = (y == k) & ~seen, (y == k) & seen
        if rest.any() and copies.any():
            parts.append(f"{name} {copies.sum() / (y == k).sum():.0%} copies, recall {(yhat[rest] == k).mean():.1%} "
                         f"without them ({(yhat[copies] == k).mean():.1%} on them)")
    return " Per class: " + "; ".join(parts) + "." if parts else ""


def per_class_table(r: dict[str, Any]) -> str:
    rows = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name, m in r["per_class"].items():
        rows.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    return "\n".join(rows)


def confusion_table(r: dict[str, Any]) -> str:
    head = "| true \\ predicted | " + " | ".join(EMOTIONS) + " | recall |"
    rows = [head, "|---" * (len(EMOTIONS) + 2) + "|"]
    for name, row in zip(EMOTIONS, r["confusion_matrix"], strict=True):
        rows.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + f" | {r['per_class'][name]['recall']:.2f} |")
    return "\n".join(rows)


def imbalance_note(r: dict[str, Any]) -> str:
    """The class-imbalance limit, from the report's own per-class recalls and largest confusions."""
    recall = {name: m["recall"] for name, m in r["per_class"].items()}
    order = sorted(recall, key=lambda name: recall[name])
    confusions = ", ".join(f"{EMOTIONS[t]} as {EMOTIONS[p]} ({n})" for n, t, p in top_confusions(r["confusion_matrix"]))
    return (f"- **Class imbalance.** Disgust is 1.5% of Training (436 images; {r['per_class']['disgust']['support']} "
            f"{r['split']} faces), so its recall ({recall['disgust']:.2f} here) moves most from run to run. The lowest "
            f"recall here is {order[0]}'s ({recall[order[0]]:.2f}), then {order[1]}'s ({recall[order[1]]:.2f}); the "
            f"largest confusions are {confusions}; {order[-1]} ({recall[order[-1]]:.2f}) and {order[-2]} "
            f"({recall[order[-2]]:.2f}) are the easiest classes.")


def image_quality_note(cfg: TrainConfig) -> str:
    """The limit on blurred, noisy, small and compressed faces, which depends on whether the model saw them (`--degrade`,
    `--jpeg`)."""
    if cfg.degrade > 0 and cfg.jpeg > 0:
        trained = ("Trained with photo degradation and JPEG compression, so a mild blur, noise or a low resolution costs "
                   "it a few points, but a 2 px blur, noise of 25 grey levels, a face of 12 px or JPEG at quality 10 still "
                   "cost 10-30 (the robustness table above, where there is one)")
    elif cfg.degrade > 0:
        trained = ("Trained with photo degradation, so a mild blur, noise or a low resolution costs it a few points, but "
                   "a 2 px blur, noise of 25 grey levels, a face of 12 px or heavy JPEG still cost 17-31")
    else:
        trained = ("Not trained with photo degradation: a 1 px blur, noise of 10 grey levels or a face of 24 px cost "
                   "models like it 11-26 points (README, Robustness)")
    return (f"- **Image quality.** {trained}; `fer-evaluate --corruption all` measures it on any split, and predictions "
            f"flag faces few training faces resemble (`fer_core.quality`: {', '.join(ISSUES)}).")


def reference_table(r: dict[str, Any], ours: list[dict[str, Any]]) -> str:
    rows = ["| model | accuracy | split | protocol |", "|---|---|---|---|"]
    for ref in r["reference"]:
        rows.append(f"| {ref['name']} | {_pct(ref['accuracy'])} | {ref['split']} | {ref['protocol']} |")
    for o in ours:
        int8 = ", int8" if o.get("precision") == "int8" else ""
        rows.append(f"| **this model** ({o['tta']} TTA{int8}) | **{_pct(o['accuracy'])}** | {o['split']} | "
                    "selected on PublicTest |")
    return "\n".join(rows)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def started_from_weights(run: Path) -> bool:
    """Whether a run folder's config.json names an `--init` checkpoint (a fine-tune or a pruned start)."""
    return bool((read_json(run / "config.json") or {}).get("init"))


def run_summary(run: Path, from_scratch: bool = True) -> tuple[str, int, float]:
    """Markdown lines about one run folder, its number of epochs and its seconds of SGD steps.

    Time to 65% is left out of a run that started from trained weights (it would only measure the start)."""
    if not (run / "metrics.jsonl").exists():
        return f"- {run}: run folder not available", 0, 0.0
    rows = RunFolder(run).read_metrics()
    if not rows:
        return f"- {run}: no finished epoch", 0, 0.0
    secs = sum(r["train_seconds"] for r in rows)
    ips = sum(r["images_per_s"] for r in rows) / len(rows)
    best = max(rows, key=lambda r: r["val_acc"])
    curve = ", ".join(f"{r['epoch'] + 1}: {100 * r['val_acc']:.1f}" for r in rows[:: max(1, len(rows) // 8)])
    reached = time_to_accuracy(rows, 0.65)
    text = (f"- epochs run: {len(rows)}; best PublicTest accuracy (centre crop) {_pct(best['val_acc'])} "
            f"at epoch {best['epoch'] + 1}\n"
            f"- training wall-clock: {secs / 3600:.2f} h of SGD steps ({ips:.0f} images/s on average)\n"
            + (f"- time to 65% PublicTest: {f'{_minutes(reached[1])} (epoch {reached[0]})' if reached else 'not reached'}\n"
               if from_scratch else "")
            + f"- PublicTest accuracy by epoch (%): {curve}")
    return text, len(rows), secs


def training_summary(runs: Sequence[Path]) -> str:
    """One run's summary, or for a chain of runs (each started with --init from the one before) one per run and a total."""
    if not runs:
        return "(run folder not available)"
    if len(runs) == 1:
        return run_summary(runs[0], from_scratch=not started_from_weights(runs[0]))[0]
    parts, epochs, secs = [], 0, 0.0
    for i, run in enumerate(runs):
        warm = bool(i) or started_from_weights(run)
        text, n, s = run_summary(run, from_scratch=not warm)
        start = " (started from trained weights with `--init`, see the recipe)" if warm else ""
        parts.append(f"Run {i + 1}, `{run.name}`{start}:\n{text}")
        epochs, secs = epochs + n, secs + s
    parts.append(f"In all: {epochs} epochs, {secs / 3600:.2f} h of SGD steps.")
    return "\n\n".join(parts)


def temperature_note(meta: dict[str, Any]) -> str:
    """What the stored softmax temperatures are and how they were fitted (empty without any)."""
    fit = meta.get("temperature_fit")
    if not fit or "by_tta" not in fit:
        return ""
    parts = [f"TTA {tta}: T = {f['temperature']:.3f}, NLL {f['before']['nll']:.4f} -> {f['after']['nll']:.4f}, "
             f"ECE {f['before']['ece']:.4f} -> {f['after']['ece']:.4f}" for tta, f in fit["by_tta"].items()]
    return (f"Probabilities divide the logits by a temperature (`python -m fer_core.calibrate`), one per TTA mode, fitted "
            f"on {fit['split']} (n={fit['n']}): {'; '.join(parts)}. Those after-figures, and the ECE in the tables, are "
            "in-sample for these parameters. They change no centre-crop answer; a TTA average can rarely flip one.")


def earlier_cycles(previous_card: str) -> str:
    """The training history of the card a run continued from: its section from `## Training recipe` to `## Results`,
    its config table left out (the weights it describes were replaced), under an `### Earlier cycles` heading.

    Nested histories come along, so a card keeps every cycle however many times its model was fine-tuned."""
    start, end = previous_card.find("## Training recipe"), previous_card.find("## Results")
    if start < 0 or end < start:
        raise ValueError("the previous model card has no '## Training recipe' ... '## Results' section")
    lines = previous_card[start:end].strip().splitlines()[1:]
    if "| field | value |" in lines:
        first = lines.index("| field | value |")
        last = next((i for i in range(first, len(lines)) if not lines[i].startswith("|")), len(lines))
        lines = lines[:first] + lines[last:]
    name = previous_card.splitlines()[0].removeprefix("# Model card: ").strip() or "the model"
    return (f"### Earlier cycles\nThe weights this run started from ({name} as shipped before), as their model card "
            "described them:\n\n" + "\n".join(lines).strip() + "\n")


def targets_note(cfg: TrainConfig) -> str:
    """The training targets beyond the FER2013 labels: FER+ soft labels and a distillation teacher (empty without)."""
    parts = []
    if cfg.soft_labels > 0:
        parts.append(f"each target moved {cfg.soft_labels:g} of the way from the FER2013 label towards the image's FER+ "
                     "vote shares (`--soft-labels`)")
    if cfg.teacher:
        paths = teacher_paths(cfg.teacher)
        names = " + ".join(f"`{Path(t).name}`" for t in paths)
        source = f"the mean probabilities of {names}" if len(paths) > 1 else names
        parts.append(f"knowledge distillation from {source} (`--teacher`): the loss is "
                     f"{1 - cfg.distill:g} x the label loss + {cfg.distill:g} x T^2 KL(teacher || student) at temperature "
                     f"T = {cfg.distill_t:g}, the teacher scoring each augmented batch"
                     f"{' before it is degraded' if cfg.degrade > 0 or cfg.jpeg > 0 else ''} (the teacher, too, was selected on "
                     "PublicTest only)")
    return ("Targets: " + "; ".join(parts) + ".") if parts else ""


def degrade_note(cfg: TrainConfig) -> str:
    """The photo degradations the model was trained with (`--degrade`, `--jpeg`; empty without)."""
    parts = []
    if cfg.degrade > 0:
        parts.append(f"Photo degradation (`--degrade {cfg.degrade:g}`): with probability {cfg.degrade:g}, each training face, "
                     f"after augmentation, got one of a Gaussian blur (sigma {min(DEGRADE_BLUR):g}-{max(DEGRADE_BLUR):g} "
                     f"px), a lower resolution ({min(DEGRADE_SIDES)}-{max(DEGRADE_SIDES)} px, scaled back) or Gaussian "
                     f"noise (up to {DEGRADE_NOISE_GREY:g} grey levels).")
    if cfg.jpeg > 0:
        parts.append(f"JPEG compression (`--jpeg {cfg.jpeg:g}`): with probability {cfg.jpeg:g}, each training face"
                     f"{', after that,' if cfg.degrade > 0 else ''} went through JPEG at quality {min(JPEG_QUALITIES)}-"
                     f"{max(JPEG_QUALITIES)} (libjpeg's quantisation of 8 x 8 DCT blocks, done on the batch).")
    return " ".join(parts)


def render(checkpoint: str | Path, reports: list[dict[str, Any]], runs: Sequence[Path], command: str, hardware: str,
           notes: str = "", previous_card: str = "") -> str:
    loaded = load_model(checkpoint)
    cfg = loaded.config
    main = headline_order(reports)[0]
    cfg_rows = "\n".join(f"| `{k}` | `{v}` |" for k, v in cfg.to_dict().items() if k != "data")
    return f"""# Model card: `{Path(checkpoint).name}`

FER2013 facial-expression classifier (7 classes: {", ".join(EMOTIONS)}),
trained on FER2013 alone, with no pretrained weights (hardware: see Training recipe).

## Model
- Architecture: `{cfg.model}`: {describe_model(cfg.model)} Dropout {cfg.drop_rate}, width {cfg.width},
  **{loaded.num_params:,} parameters**; input: 48x48 greyscale, normalised with the Training mean/std
  ({loaded.norm.mean:.2f} / {loaded.norm.std:.2f}), centre crop {cfg.crop_size}x{cfg.crop_size}.
- Weights stored as fp16 (loaded as fp32), loadable with `torch.load(..., weights_only=True)`.

## Data and splits
- Trained on FER2013 `Training` (28,709 images), original labels. Model selection and early stopping on
  `PublicTest` (3,589) only. `PrivateTest` was never seen: it is withheld for independent evaluation.

## Training recipe
```
{command}
```
| field | value |
|---|---|
{cfg_rows}

SGD with Nesterov momentum, cosine schedule with linear warmup, label smoothing, random erasing, per-image
random crop/flip/rotation/zoom/brightness-contrast applied to whole batches as tensors.
{targets_note(cfg)}
{degrade_note(cfg)}

{training_summary(runs)}
- hardware: {hardware}
{notes and chr(10) + notes + chr(10)}
{previous_card and earlier_cycles(previous_card) + chr(10)}
## Results
{results_table(reports)}

Per class (PublicTest, {main['tta']} TTA):

{per_class_table(main)}

Confusion matrix (PublicTest, counts, rows = true class):

{confusion_table(main)}

{copies_note(main)}

Calibration: expected calibration error {main['ece']:.4f} (15 bins, top-1 confidence); log loss {main['log_loss']:.4f}.
{temperature_note(loaded.meta)}

## Comparison with published FER2013 results
Published figures are PrivateTest accuracies; ours above are PublicTest (the split we selected on, so
slightly optimistic). Evaluate on the withheld split with:
```
python -m fer_core.evaluate --checkpoint checkpoints/{Path(checkpoint).name} --data <full fer2013.csv> --split PrivateTest [--tta]
```

{reference_table(main, reports)}

## Known limits
{imbalance_note(main)}
{image_quality_note(cfg)}
{LIMITS}"""


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=cli_prog("fer_core.card"), description="Render a model card from reports.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--reports", nargs="+", required=True, help="evaluate CLI reports (JSON)")
    p.add_argument("--run", nargs="*", default=[], help="the run folder(s) the checkpoint came from, first to last")
    p.add_argument("--command", default="(not recorded)", help="the training command line")
    p.add_argument("--hardware", default=f"{platform.processor() or platform.machine()}, CPU only")
    p.add_argument("--notes", default="", help="free text (markdown) added under the training summary")
    p.add_argument("--previous-card", default="", help="the card of the weights the first run started from (--init), "
                   "whose training history the new card keeps")
    p.add_argument("--out", required=True, type=output_file)
    args = p.parse_args(argv)
    try:
        reports = [json.loads(Path(r).read_text()) for r in args.reports]
        previous = Path(args.previous_card).read_text() if args.previous_card else ""
        text = render(args.checkpoint, reports, [Path(r) for r in args.run], args.command, args.hardware, args.notes,
                      previous)
        atomic_write_bytes(args.out, text.encode())
    except (OSError, ValueError) as e:  # a missing or malformed report, an unwritable --out
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"model card written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
