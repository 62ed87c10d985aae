"""The model card shows the report's numbers and the recipe."""

from __future__ import annotations

import json
import subprocess
import sys

from fer_core.card import render, targets_note, training_summary
from fer_core.config import REPO_ROOT, TrainConfig
from fer_core.evaluate import evaluate_checkpoint
from fer_core.metrics import time_to_accuracy
from fer_core.train import RunFolder, fit


def test_card_contains_the_reports_numbers(sample_path, fast_checkpoint):
    plain = evaluate_checkpoint(fast_checkpoint, sample_path, "PublicTest")
    tta = evaluate_checkpoint(fast_checkpoint, sample_path, "PublicTest", tta="tencrop")
    text = render(fast_checkpoint, [plain, tta], [], "python -m fer_core.train --epochs 1", "test machine")
    assert f"{100 * plain['accuracy']:.2f}%" in text and f"{100 * tta['accuracy']:.2f}%" in text
    assert "python -m fer_core.train --epochs 1" in text and "## Known limits" in text
    for name, m in plain["per_class"].items():
        assert f"| {name} | {m['precision']:.3f} | {m['recall']:.3f}" in text
    assert "VGG variant (Khaireddin & Chen 2021)" in text
    u = plain["unseen"]  # the sample's PublicTest holds 4 faces of its Training split
    assert f"| {100 * u['accuracy']:.2f}% / {u['macro_f1']:.4f} |" in text
    assert "Training holds 4 of these 140 PublicTest faces too" in text and f"**{100 * u['accuracy']:.2f}%**" in text


def test_card_summarises_a_chain_of_runs(sample_data, tmp_path):
    cfg = TrainConfig(model="small", width=8, batch_size=32, epochs=2, warmup_epochs=1, threads=1, patience=0)
    fit(cfg, tmp_path / "first", data=sample_data)
    fit(cfg.replace(epochs=3, init=str(tmp_path / "first" / "best.pt")), tmp_path / "second", data=sample_data)
    secs = sum(r["train_seconds"] for run in ("first", "second") for r in RunFolder(tmp_path / run).read_metrics())
    text = training_summary([tmp_path / "first", tmp_path / "second"])
    assert "Run 1, `first`" in text and "Run 2, `second` (started from trained weights" in text
    assert "epochs run: 2;" in text and "epochs run: 3;" in text
    assert text.count("time to 65% PublicTest") == 1  # not for the run that started from trained weights
    assert f"In all: 5 epochs, {secs / 3600:.2f} h" in text
    assert training_summary([tmp_path / "first"]).startswith("- epochs run: 2;")
    # A chain whose first run started from trained weights (a pruned or fine-tuned start) has no from-scratch time either
    assert "time to 65%" not in training_summary([tmp_path / "second"])
    chain = training_summary([tmp_path / "second", tmp_path / "first"])
    assert "Run 1, `second` (started from trained weights" in chain and chain.count("time to 65% PublicTest") == 0
    assert "not available" in training_summary([tmp_path / "missing"])
    # The time-to-accuracy benchmark reads the same folders
    r = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "time_to_accuracy.py"), str(tmp_path / "first"),
                        str(tmp_path / "second"), "--targets", "0.01", "0.99"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "first: small width 8, 2 epochs of 2" in r.stdout and "(started from trained weights)" in r.stdout
    assert r.stdout.count("1%: epoch 1, ") == 2 and r.stdout.count("99%: not reached") == 2


def test_time_to_accuracy_counts_sgd_seconds_up_to_the_first_epoch_at_the_target():
    rows = [{"epoch": e, "val_acc": a, "train_seconds": 100.0 + e} for e, a in enumerate([0.40, 0.62, 0.66, 0.64, 0.70])]
    assert time_to_accuracy(rows, 0.65) == (3, 303.0)  # epochs 1-3: 100 + 101 + 102 s
    assert time_to_accuracy(rows, 0.40) == (1, 100.0)
    assert time_to_accuracy(rows, 0.71) is None and time_to_accuracy([], 0.5) is None


def test_eta_is_the_median_wall_time_of_recent_epochs_times_the_epochs_left():
    from fer_core.metrics import eta_seconds

    # epochs end 60 s apart (50 s of SGD plus evaluation), with a one-hour stop and resume after the third
    ends = [1000.0, 1060.0, 1120.0, 4720.0, 4780.0, 4840.0]
    rows = [{"epoch": e, "train_seconds": 50.0, "time": t} for e, t in enumerate(ends)]
    assert eta_seconds(rows, 10) == 600.0  # the evaluation counts; the resume gap does not
    assert eta_seconds(rows[:1], 4) == 200.0  # one epoch: its SGD time is all there is
    assert eta_seconds(rows, 0) == 0.0


def test_card_names_the_targets_beyond_the_labels():

    assert targets_note(TrainConfig()) == ""
    note = targets_note(TrainConfig(teacher="/x/checkpoints/fer_resnet.pt", distill=0.8, distill_t=2.0, soft_labels=0.3))
    assert "`fer_resnet.pt`" in note and "0.2 x the label loss + 0.8 x T^2 KL" in note and "T = 2" in note
    assert "FER+" in note
    note = targets_note(TrainConfig(teacher="/x/a.pt,/y/b.pt", distill=0.7))
    assert "the mean probabilities of `a.pt` + `b.pt`" in note and "0.3 x the label loss" in note
    note = targets_note(TrainConfig(teacher="/x/c2+kd.pt", distill=0.7))  # one teacher, a "+" in its name
    assert "from `c2+kd.pt` (`--teacher`)" in note and "mean probabilities" not in note


def test_card_names_the_weakest_classes_from_the_report():
    import json

    from fer_core.card import imbalance_note
    from fer_core.checkpoint import DEFAULT_CHECKPOINT

    report = json.loads(DEFAULT_CHECKPOINT.with_suffix(".report.json").read_text())
    recall = {name: m["recall"] for name, m in report["per_class"].items()}
    weakest, easiest = min(recall, key=recall.get), max(recall, key=recall.get)
    note = imbalance_note(report)
    assert f"The lowest recall here is {weakest}'s ({recall[weakest]:.2f})" in note
    assert f"{easiest} ({recall[easiest]:.2f})" in note and f"({recall['disgust']:.2f} here)" in note
    cm, names = report["confusion_matrix"], list(recall)
    n, t, p = max((cm[i][j], names[i], names[j]) for i in range(7) for j in range(7) if i != j)
    assert f"largest confusions are {t} as {p} ({n})," in note


def test_a_fine_tuned_models_card_keeps_the_shipped_cards_history(sample_path, fast_checkpoint, tmp_path):
    """A run that continued a shipped model (--init) gets a card with that model's recipe and runs, however many times
    over, without the shipped card's config table (those settings are replaced by the new run's)."""
    from fer_core.card import degrade_note, earlier_cycles, main

    shipped = (REPO_ROOT / "checkpoints" / "fer_fast.md").read_text()
    report = evaluate_checkpoint(fast_checkpoint, sample_path, "PublicTest")
    text = render(fast_checkpoint, [report], [], "python -m fer_core.train --init checkpoints/fer_fast.pt", "test machine",
                  previous_card=shipped)
    history = text[text.index("### Earlier cycles"):text.index("## Results")]
    old_recipe = shipped[shipped.index("## Training recipe"):shipped.index("## Results")]
    runs = [line for line in old_recipe.splitlines() if line.startswith(("Run ", "python -m", "In all:", "- hardware:"))]
    assert runs and all(line in history for line in runs)
    assert "| field | value |" not in history and text.count("| field | value |") == 1
    assert text.index("python -m fer_core.train --init checkpoints/fer_fast.pt") < text.index("### Earlier cycles")
    # Once more: the second card keeps both cycles, in order
    (tmp_path / "report.json").write_text(json.dumps(report))
    (tmp_path / "previous.md").write_text(text)
    assert main(["--checkpoint", str(fast_checkpoint), "--reports", str(tmp_path / "report.json"), "--command",
                 "python -m fer_core.train --run third", "--previous-card", str(tmp_path / "previous.md"),
                 "--out", str(tmp_path / "card.md")]) == 0
    again = (tmp_path / "card.md").read_text()
    nested = shipped.count("### Earlier cycles")  # the shipped card may itself continue an earlier one
    assert text.count("### Earlier cycles") == nested + 1 and again.count("### Earlier cycles") == nested + 2
    assert all(line in again for line in runs)
    assert again.index("--run third") < again.index("--init checkpoints/fer_fast.pt") < again.index(runs[0])
    # A card without the section is refused with a message, not rendered half
    (tmp_path / "bad.md").write_text("# Model card: x\n\nno sections\n")
    assert main(["--checkpoint", str(fast_checkpoint), "--reports", str(tmp_path / "report.json"), "--previous-card",
                 str(tmp_path / "bad.md"), "--out", str(tmp_path / "bad_card.md")]) == 2
    assert not (tmp_path / "bad_card.md").exists()
    try:
        earlier_cycles("# Model card: x\n## Results\n## Training recipe\n")
    except ValueError as e:
        assert "Training recipe" in str(e)
    else:
        raise AssertionError("a card with its sections out of order was accepted")
    assert degrade_note(TrainConfig()) == "" and "with probability 0.5" in degrade_note(TrainConfig(degrade=0.5))
    from fer_core.card import image_quality_note

    assert "Trained with photo degradation" in image_quality_note(TrainConfig(degrade=0.5))
    assert "Not trained with photo degradation" in image_quality_note(TrainConfig())
    assert "- **Image quality.** Trained with photo degradation" in text  # fer_fast.pt, as shipped since 2026-12-06
    assert "before it is degraded" in targets_note(TrainConfig(teacher="/x/a.pt", degrade=0.5))
