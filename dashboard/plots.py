"""Plotly figures built from plain data (tables, lists, report dicts); no Streamlit, no model code."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from fer_core.config import EMOTIONS
from fer_core.metrics import normalize_confusion

COLOURS = {"angry": "#e63946", "disgust": "#6a994e", "fear": "#9d4edd", "happy": "#ffbe0b", "sad": "#3a86ff",
           "surprise": "#ff70a6", "neutral": "#8d99ae"}
SPLIT_COLOURS = {"Training": "#1d3557", "PublicTest": "#457b9d", "PrivateTest": "#a8dadc"}


def _tidy(fig: go.Figure, height: int = 360, title: str | None = None) -> go.Figure:
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10}, title=title,
                      legend={"orientation": "h", "y": -0.2})
    return fig


def class_balance(table: pd.DataFrame, value: str = "share") -> go.Figure:
    """Grouped bars per emotion, one colour per split; hover shows count and share either way."""
    fig = go.Figure()
    for split, rows in table.groupby("split", sort=False):
        fig.add_bar(x=rows["emotion"], y=rows[value], name=split, marker_color=SPLIT_COLOURS.get(split),
                    customdata=np.stack([rows["count"], rows["share"]], axis=1),
                    hovertemplate="%{x}: %{customdata[0]:,} images (%{customdata[1]:.1%})<extra>" + split + "</extra>")
    fig.update_layout(barmode="group", yaxis={"tickformat": ".0%" if value == "share" else ",", "title": value})
    return _tidy(fig)


def copies_by_class(table: pd.DataFrame) -> go.Figure:
    """Per emotion, the share of a split's faces that Training holds too (columns split, emotion, faces, copies)."""
    fig = go.Figure()
    for split, rows in table.groupby("split", sort=False):
        share = rows["copies"] / rows["faces"].clip(lower=1)
        fig.add_bar(x=rows["emotion"], y=share, name=split, marker_color=SPLIT_COLOURS.get(split),
                    customdata=np.stack([rows["copies"], rows["faces"]], axis=1),
                    hovertemplate="%{x}: %{customdata[0]:,} of %{customdata[1]:,} faces (%{y:.1%})<extra>" + split
                                  + "</extra>")
    fig.update_layout(barmode="group", yaxis={"tickformat": ".0%", "title": "in Training too"})
    return _tidy(fig, height=300)


def confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], by: str = "true", x_title: str = "predicted",
              y_title: str = "true", columns: Sequence[str] | None = None) -> go.Figure:
    """Heat map normalised by row ('true' = recall), column ('pred') or 'all', or raw 'counts'; numbers in the cells."""
    counts = np.asarray(cm, dtype=np.int64)
    values = counts.astype(float) if by == "counts" else np.asarray(normalize_confusion(counts, by=by))
    text = [[f"{v:,}" if by == "counts" else f"{v:.0%}" for v in row] for row in values]
    fig = go.Figure(go.Heatmap(
        z=values, x=list(columns or labels), y=list(labels), text=text, texttemplate="%{text}", customdata=counts,
        colorscale="Blues", showscale=False,
        hovertemplate=f"{y_title} %{{y}}, {x_title} %{{x}}<br>%{{customdata:,}} images (%{{z:.1%}})<extra></extra>"
        if by != "counts" else f"{y_title} %{{y}}, {x_title} %{{x}}: %{{customdata:,}} images<extra></extra>"))
    fig.update_yaxes(autorange="reversed", title=y_title)
    fig.update_xaxes(title=x_title, side="bottom")
    return _tidy(fig, height=420)


def reliability(bins: Sequence[dict[str, float]], ece: float) -> go.Figure:
    """Accuracy per confidence bin against the diagonal of perfect calibration; bar hover gives the bin's count."""
    used = [b for b in bins if b["count"] > 0]
    fig = go.Figure()
    fig.add_bar(x=[(b["lo"] + b["hi"]) / 2 for b in used], y=[b["accuracy"] for b in used],
                width=[b["hi"] - b["lo"] for b in used], name="accuracy", marker_color="#457b9d",
                customdata=[[b["count"], b["confidence"]] for b in used],
                hovertemplate="confidence %{customdata[1]:.2f}: accuracy %{y:.2f} over %{customdata[0]:,} images<extra></extra>")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"dash": "dash", "color": "#e63946"})
    fig.update_layout(xaxis={"title": "confidence", "range": [0, 1]}, yaxis={"title": "accuracy", "range": [0, 1]})
    return _tidy(fig, title=f"Reliability (ECE {ece:.3f})")


def curves(rows: Sequence[dict[str, Any]]) -> go.Figure:
    """Loss and accuracy per epoch, train against validation (and its faces Training lacks, where logged), side by side."""
    epochs = [r["epoch"] + 1 for r in rows]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("loss", "accuracy"))
    for col, key in ((1, "loss"), (2, "acc")):
        for part, colour in (("train", "#1d3557"), ("val", "#e63946")):
            fig.add_scatter(x=epochs, y=[r.get(f"{part}_{key}") for r in rows], mode="lines+markers", name=part,
                            line={"color": colour}, showlegend=col == 1, row=1, col=col)
    if any("val_acc_unseen" in r for r in rows):  # the validation faces with no copy in Training (fer_core.audit)
        fig.add_scatter(x=epochs, y=[r.get("val_acc_unseen") for r in rows], mode="lines+markers", row=1, col=2,
                        name="val, faces Training lacks", line={"color": "#e63946", "dash": "dot"})
    fig.update_xaxes(title="epoch", dtick=1 if len(rows) <= 12 else None)  # no "epoch 1.5" on a short run
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    return _tidy(fig, height=320).update_layout(margin_t=30)  # room for the subplot titles


def lr_curve(result: Mapping[str, Any]) -> go.Figure:
    """A learning-rate range test: each step's loss (faint) and the smoothed loss against the lr on a log axis, with
    the suggested peak lr marked."""
    fig = go.Figure()
    fig.add_scatter(x=result["lr"], y=result["loss"], mode="lines", name="loss per step", line={"color": "#a8dadc"},
                    hovertemplate="lr %{x:.2g}: %{y:.3f}<extra></extra>")
    fig.add_scatter(x=result["lr"], y=result["smoothed"], mode="lines", name="smoothed", line={"color": "#1d3557"},
                    hovertemplate="lr %{x:.2g}: %{y:.3f}<extra>smoothed</extra>")
    fig.add_vline(x=result["suggested"], line_dash="dash", line_color="#e63946")
    # On a log axis an annotation's x is the exponent (add_vline's own annotation lands at the wrong place)
    fig.add_annotation(x=math.log10(result["suggested"]), y=1, yref="paper", text=f"suggested {result['suggested']:.2g}",
                       showarrow=False, xanchor="left", font={"color": "#e63946"})
    fig.update_xaxes(type="log", title="learning rate")
    fig.update_yaxes(title="training loss", range=[min(result["smoothed"]) * 0.9, max(result["smoothed"][:3]) * 1.15])
    return _tidy(fig, height=320)


def compare_runs(series: Mapping[str, Sequence[dict[str, Any]]], by: str = "epoch") -> go.Figure:
    """Validation accuracy of several runs on one chart, against epochs or minutes of SGD (evaluations not counted, as in
    the time-to-accuracy figures)."""
    fig = go.Figure()
    for name, rows in series.items():
        if by == "epoch":
            x, at = [r["epoch"] + 1 for r in rows], "epoch %{x}"
        else:
            x, at = list(np.cumsum([r["train_seconds"] for r in rows]) / 60), "%{x:.1f} min"
        fig.add_scatter(x=x, y=[r["val_acc"] for r in rows], mode="lines+markers", name=name,
                        hovertemplate=f"{name}, {at}: %{{y:.2%}}<extra></extra>")
    fig.update_layout(xaxis_title="epoch" if by == "epoch" else "minutes of SGD", yaxis_title="validation accuracy",
                      yaxis_tickformat=".0%")
    return _tidy(fig)


def probabilities(probs: dict[str, float]) -> go.Figure:
    """Horizontal bars of one face's class probabilities, in EMOTIONS order."""
    names = list(probs)
    fig = go.Figure(go.Bar(x=[probs[n] for n in names], y=names, orientation="h", marker_color=[COLOURS.get(n) for n in names],
                           text=[f"{probs[n]:.0%}" for n in names], textposition="auto",
                           hovertemplate="%{y}: %{x:.1%}<extra></extra>"))
    fig.update_layout(xaxis={"range": [0, 1], "tickformat": ".0%"}, yaxis={"autorange": "reversed"})
    return _tidy(fig, height=230)


def probabilities_pair(a: dict[str, float], b: dict[str, float], names: tuple[str, str]) -> go.Figure:
    """One face's class probabilities from two models, as pairs of horizontal bars in EMOTIONS order."""
    fig = go.Figure()
    for probs, name, colour in ((a, names[0], "#1d3557"), (b, names[1], "#e63946")):
        fig.add_bar(x=list(probs.values()), y=list(probs), orientation="h", name=name, marker_color=colour,
                    text=[f"{v:.0%}" for v in probs.values()], textposition="auto",
                    hovertemplate=f"{name}<br>%{{y}}: %{{x:.1%}}<extra></extra>")
    fig.update_layout(barmode="group", xaxis={"range": [0, 1], "tickformat": ".0%"}, yaxis={"autorange": "reversed"})
    return _tidy(fig, height=330)


def emotion_timeline(times: Sequence[float] | np.ndarray, probs: np.ndarray, mark: float | None = None) -> go.Figure:
    """One line per emotion: the tracked face's probability at each sampled time (gaps where no face was found), and a
    dotted vertical line at `mark` seconds."""
    fig = go.Figure()
    for k, emotion in enumerate(EMOTIONS):
        y = [None if np.isnan(v) else float(v) for v in probs[:, k]]  # None: a gap in the line
        fig.add_scatter(x=[float(t) for t in times], y=y, name=emotion, mode="lines+markers", line={"color": COLOURS[emotion]},
                        marker={"size": 4}, connectgaps=False, hovertemplate=f"{emotion}: %{{y:.0%}}<extra></extra>")
    fig.update_layout(xaxis_title="time (s)", yaxis={"range": [0, 1], "tickformat": ".0%", "title": "probability"},
                      hovermode="x unified")
    if mark is not None:
        fig.add_vline(x=mark, line={"color": "#1d3557", "dash": "dot", "width": 1})
    return _tidy(fig, height=320)


def per_class(reports: dict[str, dict[str, Any]], metric: str = "f1") -> go.Figure:
    """Grouped bars of one per-class metric for several reports (name -> report)."""
    fig = go.Figure()
    for name, r in reports.items():
        fig.add_bar(x=list(r["per_class"]), y=[m[metric] for m in r["per_class"].values()], name=name,
                    hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>")
    fig.update_layout(barmode="group", yaxis={"title": metric, "range": [0, 1]})
    return _tidy(fig)


def robustness(series: Mapping[str, Sequence[dict[str, Any]]]) -> go.Figure:
    """Accuracy under each corruption (compare.robustness rows), grouped bars per model (name -> rows); the hover has
    the drop from the model's clean accuracy."""
    fig = go.Figure()
    for name, rows in series.items():
        fig.add_bar(x=[r["corruption"] for r in rows], y=[r["accuracy"] for r in rows], name=name,
                    customdata=[r["drop"] for r in rows],
                    hovertemplate="%{x}: %{y:.1%} (%{customdata:+.1f} points)<extra>" + name + "</extra>")
    fig.update_layout(barmode="group", yaxis={"title": "accuracy", "range": [0, 1], "tickformat": ".0%"},
                      xaxis={"title": "corruption"})
    return _tidy(fig)


def reference(published: Sequence[dict[str, Any]], ours: dict[str, float]) -> go.Figure:
    """Published accuracies and ours (name -> accuracy, highlighted), sorted."""
    items = [(r["name"], r["accuracy"], "#a8dadc") for r in published] + [(n, a, "#e63946") for n, a in ours.items()]
    items.sort(key=lambda t: t[1])
    fig = go.Figure(go.Bar(x=[a for _, a, _ in items], y=[n for n, _, _ in items], orientation="h",
                           marker_color=[c for _, _, c in items], text=[f"{a:.1%}" for _, a, _ in items], textposition="auto",
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    lo = min(0.5, items[0][1] - 0.05)  # zoomed on the published range, unless our model is far below it
    fig.update_layout(xaxis={"range": [max(lo, 0.0), max(0.8, items[-1][1] + 0.02)], "tickformat": ".0%", "title": "accuracy"})
    return _tidy(fig, height=60 + 34 * len(items))
