"""Classification metrics as thin wrappers over scikit-learn (and SciPy for the paired test), and time to accuracy of a run,
returning plain Python data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest
from sklearn import metrics as skm

from .config import EMOTIONS


def accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    return float(skm.accuracy_score(y_true, y_pred))


def per_class(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, *,
              labels: Sequence[str] = EMOTIONS) -> dict[str, dict[str, float]]:
    """{emotion: {precision, recall, f1, support}} over every class, zero where undefined."""
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=list(range(len(labels))), zero_division=0)
    return {name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(labels)}


def f1_scores(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, *,
              num_classes: int = len(EMOTIONS)) -> dict[str, float]:
    labels = list(range(num_classes))
    return {"macro_f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "weighted_f1": float(skm.f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0))}


def confusion(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, *,
              num_classes: int = len(EMOTIONS)) -> list[list[int]]:
    """Counts; rows are the true class, columns the predicted class."""
    return skm.confusion_matrix(y_true, y_pred, labels=list(range(num_classes))).tolist()


def top_confusions(cm: Sequence[Sequence[int]], k: int = 3) -> list[tuple[int, int, int]]:
    """The k largest off-diagonal cells of a confusion matrix as (count, true class, predicted class), largest first."""
    n = len(cm)
    return sorted(((int(cm[i][j]), i, j) for i in range(n) for j in range(n) if i != j), reverse=True)[:k]


def normalize_confusion(cm: Sequence[Sequence[int]] | np.ndarray, by: str = "true") -> list[list[float]]:
    """Row- ('true', = recall), column- ('pred', = precision) or 'all'-normalised matrix; empty rows stay 0."""
    m = np.asarray(cm, dtype=np.float64)
    axis = {"true": 1, "pred": 0, "all": None}[by]
    total = m.sum() if axis is None else m.sum(axis=axis, keepdims=True)
    return np.divide(m, total, out=np.zeros_like(m), where=np.asarray(total) > 0).tolist()


def reliability(probs: np.ndarray, y_true: Sequence[int] | np.ndarray, n_bins: int = 15) -> dict[str, Any]:
    """Expected calibration error of the top-1 confidence, with the per-bin table for a reliability diagram."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true)
    conf = probs.max(1)
    correct = (probs.argmax(1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)  # bins are (lo, hi]
    bins, ece = [], 0.0
    for b in range(n_bins):
        m = which == b
        n = int(m.sum())
        acc = float(correct[m].mean()) if n else 0.0
        c = float(conf[m].mean()) if n else 0.0
        ece += n / max(len(y), 1) * abs(acc - c)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": n, "accuracy": acc, "confidence": c})
    return {"ece": float(ece), "bins": bins}


def log_loss(probs: np.ndarray, y_true: Sequence[int] | np.ndarray) -> float:
    return float(skm.log_loss(y_true, probs, labels=list(range(np.asarray(probs).shape[1]))))


def summarize(probs: np.ndarray, y_true: Sequence[int] | np.ndarray, *, labels: Sequence[str] = EMOTIONS) -> dict[str, object]:
    """Everything the report needs from probabilities (N, C) and true labels (N,)."""
    y_pred = np.asarray(probs).argmax(1)
    cal = reliability(probs, y_true)
    return {"accuracy": accuracy(y_true, y_pred), **f1_scores(y_true, y_pred, num_classes=len(labels)),
            "per_class": per_class(y_true, y_pred, labels=labels),
            "confusion_matrix": confusion(y_true, y_pred, num_classes=len(labels)),
            "ece": cal["ece"], "reliability": cal["bins"], "log_loss": log_loss(probs, y_true)}


def paired(y_true: Sequence[int] | np.ndarray, pred_a: Sequence[int] | np.ndarray,
           pred_b: Sequence[int] | np.ndarray) -> dict[str, Any]:
    """Two models' answers on the same images: how many each gets right where the other is wrong, the accuracy
    difference B - A with its 95% confidence interval (paired, normal approximation), and McNemar's exact p-value
    (a two-sided binomial test on the images exactly one model gets right: how often a difference at least this large
    would arise if the two were equally accurate)."""
    y, a, b = np.asarray(y_true), np.asarray(pred_a), np.asarray(pred_b)
    if not len(y) == len(a) == len(b) or len(y) == 0:
        raise ValueError(f"paired comparison needs answers for the same images: {len(y)} labels, {len(a)} and {len(b)} answers")
    a_right, b_right = a == y, b == y
    only_a, only_b, n = int((a_right & ~b_right).sum()), int((~a_right & b_right).sum()), len(y)
    diff = (only_b - only_a) / n
    half = 1.96 * float(np.sqrt(max(only_a + only_b - (only_b - only_a) ** 2 / n, 0.0))) / n
    p = float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
    return {"n": n, "both_right": int((a_right & b_right).sum()), "both_wrong": int((~a_right & ~b_right).sum()),
            "only_a": only_a, "only_b": only_b, "accuracy_a": float(a_right.mean()), "accuracy_b": float(b_right.mean()),
            "difference": diff, "ci95": (diff - half, diff + half), "p_value": p}


def time_to_accuracy(rows: Sequence[dict[str, Any]], target: float) -> tuple[int, float] | None:
    """(first epoch, 1-based, whose PublicTest accuracy reaches `target`; seconds of SGD steps up to its end) from a
    run's metrics.jsonl rows, or None if no epoch does. The PublicTest evaluations between epochs are not counted."""
    first = next((i for i, r in enumerate(rows) if r["val_acc"] >= target), None)
    if first is None:
        return None
    return rows[first]["epoch"] + 1, float(sum(r["train_seconds"] for r in rows[: first + 1]))


def eta_seconds(rows: Sequence[dict[str, Any]], epochs_left: int, window: int = 5) -> float:
    """Seconds a run still needs: the median wall time of its last `window` epochs (SGD steps, evaluation and saving, from
    the rows' end times) times `epochs_left`; the median ignores a gap such as a stop and resume. One row: its SGD time."""
    times = [r["time"] for r in rows[-(window + 1):]]
    per_epoch = [b - a for a, b in zip(times, times[1:], strict=False)] or [rows[-1]["train_seconds"]]
    return float(np.median(per_epoch)) * epochs_left


def label_noise(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, ferplus: Sequence[int] | np.ndarray,
                shares: np.ndarray) -> dict[str, float]:
    """Predictions against FER2013 labels and the FER+ majority (-1: FER+ dropped the image) with its (N, 7) vote shares:
    accuracies on the images FER+ keeps, how many of the model's disagreements with FER2013 FER+ sides with, and the
    mean share of the ten votes that the model's answer and the FER2013 label each get."""
    y, pred, plus, shares = np.asarray(y_true), np.asarray(y_pred), np.asarray(ferplus), np.asarray(shares)
    kept = plus >= 0
    if not kept.any():
        raise ValueError("FER+ keeps none of these images")
    wrong = kept & (pred != y)
    return {"n": len(y), "kept": int(kept.sum()), "acc_fer2013": float((pred == y).mean()),
            "acc_fer2013_kept": float((pred == y)[kept].mean()), "acc_ferplus_kept": float((pred == plus)[kept].mean()),
            "labels_agree_kept": float((y == plus)[kept].mean()), "wrong_kept": int(wrong.sum()),
            "wrong_ferplus_agrees_with_model": int((pred == plus)[wrong].sum()),
            "vote_share_model": float(shares[kept, pred[kept]].mean()), "vote_share_label": float(shares[kept, y[kept]].mean())}
