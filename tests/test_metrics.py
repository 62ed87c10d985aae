"""Metric wrappers against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from fer_core.metrics import confusion, f1_scores, normalize_confusion, per_class, reliability, summarize, top_confusions

Y_TRUE = [0, 0, 1, 2, 3, 3, 3, 4, 5, 6, 6, 2]
Y_PRED = [0, 1, 1, 2, 3, 3, 0, 4, 6, 6, 6, 3]


def test_per_class_matches_sklearn_and_hand_values():
    pc = per_class(Y_TRUE, Y_PRED)
    p, r, f, s = skm.precision_recall_fscore_support(Y_TRUE, Y_PRED, labels=range(7), zero_division=0)
    for i, name in enumerate(pc):
        assert pc[name] == pytest.approx({"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]})
    # happy (3): 2 of 3 found, 2 of 3 predicted-happy correct.
    assert pc["happy"]["recall"] == pytest.approx(2 / 3) and pc["happy"]["precision"] == pytest.approx(2 / 3)
    assert pc["surprise"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}


def test_f1_and_confusion():
    f = f1_scores(Y_TRUE, Y_PRED)
    assert f["macro_f1"] == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, average="macro"))
    assert f["weighted_f1"] == pytest.approx(skm.f1_score(Y_TRUE, Y_PRED, average="weighted"))
    cm = confusion(Y_TRUE, Y_PRED)
    assert cm[3] == [1, 0, 0, 2, 0, 0, 0] and sum(map(sum, cm)) == len(Y_TRUE)
    rows = normalize_confusion(cm, "true")
    assert rows[3][3] == pytest.approx(2 / 3) and all(sum(r) == pytest.approx(1) for r in rows)
    cols = normalize_confusion(cm, "pred")
    assert cols[3][3] == pytest.approx(2 / 3)
    assert normalize_confusion([[0, 0], [1, 1]], "true")[0] == [0.0, 0.0]


def test_ece_hand_computed():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    # bin (0.8, 0.867]: conf 0.9 twice, accuracy 0.5 -> gap 0.4 * 2/4; 0.6 correct -> 0.4 * 1/4; 0.7 correct -> 0.3 * 1/4
    out = reliability(probs, y, n_bins=15)
    assert out["ece"] == pytest.approx(0.4 * 0.5 + 0.4 * 0.25 + 0.3 * 0.25)
    assert sum(b["count"] for b in out["bins"]) == 4
    perfect = reliability(np.eye(7)[[0, 1, 2]], [0, 1, 2])
    assert perfect["ece"] == pytest.approx(0.0)


def test_summarize_keys_and_consistency():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(7), size=50)
    y = rng.integers(0, 7, 50)
    s = summarize(probs, y)
    assert s["accuracy"] == pytest.approx(float((probs.argmax(1) == y).mean()))
    assert s["log_loss"] == pytest.approx(skm.log_loss(y, probs, labels=range(7)))
    assert set(s) >= {"per_class", "confusion_matrix", "ece", "reliability", "macro_f1", "weighted_f1"}


def test_top_confusions_are_the_largest_off_diagonal_cells():
    cm = [[9, 1, 4], [0, 8, 2], [7, 3, 50]]  # the diagonal, however large, is never a confusion
    assert top_confusions(cm) == [(7, 2, 0), (4, 0, 2), (3, 2, 1)]
    assert top_confusions(cm, k=1) == [(7, 2, 0)] and len(top_confusions(cm, k=10)) == 6
