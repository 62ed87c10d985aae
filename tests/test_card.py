"""The model card shows the report's numbers and the recipe."""

from __future__ import annotations

from fer_core.card import render
from fer_core.config import DEFAULT_CHECKPOINT
from fer_core.evaluate import evaluate_checkpoint


def test_card_contains_the_reports_numbers(sample_path):
    plain = evaluate_checkpoint(None, sample_path, "PublicTest")
    tta = evaluate_checkpoint(None, sample_path, "PublicTest", tta="tencrop")
    text = render(DEFAULT_CHECKPOINT, [plain, tta], None, "python -m fer_core.train --epochs 1", "test machine")
    assert f"{100 * plain['accuracy']:.2f}%" in text and f"{100 * tta['accuracy']:.2f}%" in text
    assert "python -m fer_core.train --epochs 1" in text and "## Known limits" in text
    for name, m in plain["per_class"].items():
        assert f"| {name} | {m['precision']:.3f} | {m['recall']:.3f}" in text
    assert "VGG variant (Khaireddin & Chen 2021)" in text
