"""Sections of the Evaluate page, each drawn from a saved report dict (no recomputation), plus the evaluate-a-checkpoint form."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import loaders
import plots
import widgets
from fer_core import jobs
from fer_core.audit import seen_mask
from fer_core.compare import ReportError, compare_reports, compare_unseen, robustness, robustness_set, verdict
from fer_core.config import SPLITS
from fer_core.evaluate import REFERENCE
from fer_core.metrics import label_noise, top_confusions
from fer_core.perturb import PERTURBATIONS
from fer_core.quantize import INFERENCE_PRECISIONS
from fer_core.transforms import TTA_MODES

NORMALISE = {"true": "by true class (recall)", "pred": "by predicted class (precision)", "all": "by all images",
             "counts": "counts"}
SUMMARY = {"accuracy": "accuracy", "macro_f1": "macro F1", "weighted_f1": "weighted F1", "ece": "ECE", "log_loss": "log loss"}
PER_PAGE = 32
FACES = ("all", "not in Training", "in Training too")


def label(report: dict[str, Any], path: str) -> str:
    p = Path(path)
    where = p.parent.name if p.parent.name != "reports" else "reports"
    name = p.name.removesuffix(".report.json")
    inference = f" · {report['precision']}" if report.get("precision", "fp32") != "fp32" else ""
    corrupted = f" · {report['corruption']}" if "corruption" in report else ""  # early: a set's 12 differ only there
    return f"{name} [{where}]{corrupted} · {report['split']} · TTA {report['tta']}{inference} · acc {report['accuracy']:.1%}"


def overview(r: dict[str, Any], fallback: Path | None = None) -> None:
    cols = st.columns(len(SUMMARY) + 1)
    for col, (k, name) in zip(cols, SUMMARY.items(), strict=False):
        col.metric(name, f"{r[k]:.1%}" if k in ("accuracy", "macro_f1", "weighted_f1") else f"{r[k]:.3f}")
    cols[-1].metric("images", f"{r['n']:,}")
    m = r.get("model", {})
    epoch = f", epoch {m['epoch'] + 1}" if isinstance(m.get("epoch"), int) else ""  # none for a soup of several epochs
    st.caption(f"{r.get('checkpoint', '?')}: {m.get('name', '?')} width {m.get('width', '?')}, "
               f"{m.get('params', 0):,} parameters{epoch}; {r['split']} of {r.get('data', '?')}, "
               f"created {r.get('created', '?')}")
    if "accuracy" in (u := r.get("unseen") or {}):
        seen = f": on them {u['seen_accuracy']:.1%}" if "seen_accuracy" in u else ""
        st.markdown(f"**Faces Training lacks:** {u['accuracy']:.1%} accuracy, macro F1 {u['macro_f1']:.1%} on the "
                    f"{u['n']:,} faces with no copy in Training, the fairer guess for new faces. Training holds the other "
                    f"{u['seen_n']:,} too (exact or near copies: Dataset page, `fer-audit`){seen}.")
    if "predictions" in r and (votes := loaders.report_votes(r, fallback)) is not None:
        f = label_noise(r["predictions"]["y_true"], r["predictions"]["y_pred"], *votes)
        st.caption(f"Label noise: on the {f['kept']:,} images FER+ keeps, this model scores {f['acc_ferplus_kept']:.1%} "
                   f"against the FER+ majority of ten annotators ({f['acc_fer2013_kept']:.1%} against FER2013 there; the "
                   f"two label sets agree on {f['labels_agree_kept']:.0%}). Of its {f['wrong_kept']:,} answers that differ "
                   f"from the FER2013 label, FER+ sides with the model on {f['wrong_ferplus_agrees_with_model']:,}; its "
                   f"answers get {f['vote_share_model']:.0%} of the votes on average, the labels {f['vote_share_label']:.0%}.")
    table = pd.DataFrame(r["per_class"]).T.rename_axis("emotion").reset_index()
    st.dataframe(table, hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.3f")
                                                        for c in ("precision", "recall", "f1")})


def confusion(r: dict[str, Any], key: str, default: str = "true") -> None:
    by = st.segmented_control("Normalise", list(NORMALISE), default=default, format_func=NORMALISE.__getitem__, key=f"{key}-norm")
    st.plotly_chart(plots.confusion(r["confusion_matrix"], r["labels"], by=by or default), key=f"{key}-cm")
    st.caption("Rows are the true class. Row normalisation shows recall, which accuracy hides for rare classes such as disgust; "
               "hover a cell for its count.")


def calibration(r: dict[str, Any]) -> None:
    st.plotly_chart(plots.reliability(r["reliability"], r["ece"]), key="reliability")
    st.caption("Bars below the diagonal: the model is more confident than it is right. ECE is the count-weighted mean gap.")


def gallery(r: dict[str, Any], fallback: Path | None) -> None:
    """Misclassified images of the report's split, most confident mistakes first, filterable by (true, predicted)."""
    if "predictions" not in r:
        st.info("This report has no per-image predictions; evaluate the checkpoint again for a gallery.")
        return
    images, why = loaders.split_images(r, fallback)
    if images is None:
        st.info(f"Gallery unavailable: {why}. Point the sidebar's data path at that file.")
        return
    y, yhat = np.asarray(r["predictions"]["y_true"]), np.asarray(r["predictions"]["y_pred"])
    conf, names = np.asarray(r["predictions"]["confidence"]), r["labels"]
    pairs = top_confusions(r["confusion_matrix"], 5)
    st.caption("Most confused (true → predicted): " + ", ".join(f"{names[i]} → {names[j]} ({n})" for n, i, j in pairs if n))
    seen = seen_mask(r)
    cols = st.columns(4 if seen is not None else 3)
    true = cols[0].selectbox("True class", ["any", *names], key="gal-true")
    pred = cols[1].selectbox("Predicted as", ["any", *names], key="gal-pred")
    keep = y != yhat
    keep &= (y == names.index(true)) if true != "any" else True
    keep &= (yhat == names.index(pred)) if pred != "any" else True
    if seen is not None:
        faces = cols[3].selectbox("Faces", FACES, key="gal-faces", help="Whether Training holds the face too (an exact or "
                                  "near copy: the Dataset page's Copies in Training)")
        keep &= {"all": True, "not in Training": ~seen, "in Training too": seen}[faces]
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-conf[idx], kind="stable")]
    wrong = int((y != yhat).sum())
    st.caption(f"{len(idx):,} of {wrong:,} misclassified images ({len(y):,} in {r['split']}); most confident first")
    shown = idx[widgets.pager(len(idx), PER_PAGE, "gal-page", cols[2])]
    caption = lambda i: f"{names[y[i]]} → {names[yhat[i]]} {conf[i]:.0%}"
    widgets.image_grid(images[shown], [caption(i) for i in shown])
    if len(shown):
        up_close(r, images, [int(i) for i in shown], caption)


def up_close(r: dict[str, Any], images: np.ndarray, shown: list[int], caption: Callable[[int], str]) -> None:
    """One of the shown mistakes, explained for the class the model chose and for the true one, with all its probabilities."""
    from fer_core.explain import CAVEATS, overlay

    st.subheader("A mistake up close")
    checkpoint = loaders.report_checkpoint(r)
    if checkpoint is None:
        st.info(f"The checkpoint this report was made with ({r.get('checkpoint') or 'not recorded'}) is not here, so its "
                "mistakes cannot be explained.")
        return
    cols = st.columns([2, 1])
    number = {i: n for n, i in enumerate(shown, 1)}
    i = cols[0].selectbox("Face", shown, format_func=lambda i: f"{number[i]}. {caption(i)}", key="gal-pick",
                          help="Faces of this page, in the grid's order (left to right, top to bottom)")
    method = widgets.method_select(cols[1], key="gal-method")
    y, yhat = r["predictions"]["y_true"][i], r["predictions"]["y_pred"][i]
    face, stamp, names = images[i], loaders.mtime(checkpoint), r["labels"]
    left, middle, right = st.columns([1, 1, 2], vertical_alignment="center")
    for col, target, role in ((left, yhat, "chosen"), (middle, y, "true")):
        heat = loaders.explain_crop(face, str(checkpoint), stamp, method, int(target))
        col.image(overlay(face, heat), caption=f"evidence for {names[target]} ({role})", width="stretch")
        if not heat.any():  # Grad-CAM keeps only positive evidence: often none for a class the model did not choose
            col.caption("No positive evidence for this class with this method.")
    probs = loaders.face_probs(face, str(checkpoint), stamp, r["tta"])
    right.plotly_chart(plots.probabilities(probs), key="gal-probs")
    st.caption(f"{r['split']} image {i}. Maps and probabilities come from {checkpoint.name} as it is now, in float32 with "
               f"TTA {r['tta']}." + (f" {CAVEATS[method]}" if method in CAVEATS else ""))


def compare(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> None:
    rows = [{"metric": name, names[0]: a[k], names[1]: b[k], "difference": b[k] - a[k]} for k, name in SUMMARY.items()]
    config = {c: st.column_config.NumberColumn(format="%.4f") for c in names}
    config["difference"] = st.column_config.NumberColumn(
        "B − A", format="%+.4f", help="Positive: B is higher (better for accuracy and F1, worse for ECE and log loss)")
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config=config)
    try:
        pair = compare_reports(a, b)
    except ReportError as e:
        st.caption(f"No image-by-image test: {e}.")
    else:
        st.markdown(f"**Image by image:** {verdict(pair)}")
        if (unseen := compare_unseen(a, b)) is not None:
            st.markdown(f"**Without the faces Training holds too:** {verdict(unseen)}")
        table = {"B right": [pair["both_right"], pair["only_b"]], "B wrong": [pair["only_a"], pair["both_wrong"]]}
        st.dataframe(pd.DataFrame(table, index=["A right", "A wrong"]), width="content")
    st.plotly_chart(plots.per_class({names[0]: a, names[1]: b}), key="cmp-f1")
    left, right = st.columns(2)
    for col, r, name, k in ((left, a, names[0], "cmp-a"), (right, b, names[1], "cmp-b")):
        col.markdown(f"**{name}**")
        col.plotly_chart(plots.confusion(r["confusion_matrix"], r["labels"]), key=k)


def robust(chosen: list[dict[str, Any]], everything: list[dict[str, Any]], s: widgets.Settings) -> None:
    """How the chosen reports' models hold up under the corruptions they were evaluated with (among all saved reports);
    where a model was scored on clean faces only, a button that evaluates it under every corruption."""
    series: dict[str, list[dict[str, Any]]] = {}
    missing = []
    for r in chosen:
        family = robustness_set(r, everything)  # another precision's set where this one has none
        asked = r.get("precision", "fp32")
        shown = family[0].get("precision", "fp32") if len(family) > 1 else asked
        name = f"{Path(str(r.get('checkpoint', '?'))).name} ({r['split']}, TTA {r.get('tta', 'none')}, {shown})"
        if name in series:  # A and B: two reports of one model's set
            continue
        try:
            series[name] = robustness(family)
        except ReportError:  # no clean report among them
            pass
        if len(series.get(name, [])) < 2:  # the clean faces alone, or not even those
            series.pop(name, None)
            missing.append(name)
            _evaluate_every_corruption(r, s, key=f"robust-{len(missing)}")
        elif shown != asked:
            st.caption(f"{Path(str(r.get('checkpoint', '?'))).name} was scored under corruptions with {shown} inference "
                       "only: those figures are shown.")
    if series and missing:
        st.caption(f"No corrupted evaluations yet of {' or '.join(missing)}.")
    if not series:
        st.info("No corrupted evaluations of this model yet: the button above scores the same faces under every "
                "corruption (or, in **Evaluate a checkpoint**, pick Corruption **all**).")
        return
    st.plotly_chart(plots.robustness(series), key="robustness")
    rows = [{"model": name, "corruption": row["corruption"], "what": PERTURBATIONS.get(row["corruption"], ""),
             "accuracy": row["accuracy"], "drop (points)": row["drop"], "McNemar p": row["p_value"]}
            for name, table in series.items() for row in table]
    frame = pd.DataFrame(rows).drop(columns=["model"] if len(series) == 1 else [])
    if len(series) == 1:
        st.caption(f"**{next(iter(series))}**")
    st.dataframe(frame, hide_index=True, height="content" if len(frame) <= 24 else "auto", column_config={
        "accuracy": st.column_config.NumberColumn(format="percent"),
        "drop (points)": st.column_config.NumberColumn(format="%+.1f", help="From the same model on the clean faces"),
        "McNemar p": st.column_config.NumberColumn(format="%.2g", help="Is the drop more than chance? Under 0.05: yes")})


def _evaluate_every_corruption(r: dict[str, Any], s: widgets.Settings, key: str) -> None:
    """A button that starts `fer-evaluate --corruption all` for a report's checkpoint, split, TTA, precision and labels,
    as the form does (the form's poll shows it running and opens the result)."""
    ckpt = loaders.report_checkpoint(r)
    _, labels, candidates = loaders.report_data(r, s.data_path)
    if ckpt is None or not candidates or "eval_job" in st.session_state:
        return
    tta, precision = r.get("tta", "none"), r.get("precision", "fp32")
    if st.button(f"Evaluate {ckpt.name} under every corruption", key=key, icon=":material/play_arrow:",
                 help=f"{r['split']}, TTA {tta}, {precision}: the clean faces and each of {len(PERTURBATIONS) - 1} "
                      "corruptions, in a separate process (onnx precision is about 3x faster on this kind of CPU)"):
        if _start_evaluation(ckpt, candidates[0], r["split"], s.runs_root, tta, labels, precision, "all"):
            st.rerun()


def _start_evaluation(ckpt: Path, data: Path, split: str, runs_root: Path, tta: str, labels: str, precision: str,
                      corruption: str) -> bool:
    """Start `fer-evaluate` as a job writing where the dashboard keeps its reports (its name tells the settings apart)
    and note it for the form's poll; an error under the caller where it cannot start."""
    tag = tta + (".ferplus" if labels == "ferplus" else "") + ("" if precision == "fp32" else f".{precision}") + (
        "" if corruption == "none" else f".{corruption}")
    out = loaders.report_out(ckpt, runs_root, split, tag)
    try:
        job = jobs.start_evaluation(str(ckpt), data, split, out, tta=tta, labels=labels, precision=precision,
                                    corruption=corruption)
    except OSError as e:
        st.error(f"Cannot start the evaluation: {e}")
        return False
    st.session_state["eval_job"] = {"pid": job.pid, "out": str(out), "log": str(job.log), "started": time.time()}
    return True


def published(r: dict[str, Any]) -> None:
    ref = r.get("reference") or REFERENCE
    st.plotly_chart(plots.reference(ref, {f"this model ({r['split']}, TTA {r['tta']})": r["accuracy"]}), key="ref")
    if r["split"] != "PrivateTest":
        st.warning(f"Published figures are PrivateTest accuracies; this report is on {r['split']}, so compare with care.")
    if "accuracy" in (u := r.get("unseen") or {}) and u.get("seen_n"):
        st.caption(f"The published figures count the test faces that Training holds too, as this report's "
                   f"{r['accuracy']:.1%} does ({u['seen_n']:,} of its {r['n']:,} faces); on the other {u['n']:,} this model "
                   f"scores {u['accuracy']:.1%}.")
    st.dataframe(pd.DataFrame(ref)[["name", "accuracy", "split", "protocol", "source"]], hide_index=True,
                 column_config={"accuracy": st.column_config.NumberColumn(format="percent")})


def delete_control(path: Path, runs_root: Path) -> None:
    """A Delete popover for a report file in the runs folder (the dashboard's own; the shipped reports have none)."""
    if runs_root.resolve() not in path.resolve().parents:
        return
    with st.popover("Delete report", icon=":material/delete:"):
        st.markdown(f"Delete `{path.name}` from `{path.parent}`? This cannot be undone.")
        if st.button("Delete", key="report-delete", type="primary"):
            try:
                path.unlink(missing_ok=True)
                jobs.evaluation_log(path).unlink(missing_ok=True)
            except OSError as e:
                st.error(f"Cannot delete {path}: {e}")
                return
            st.rerun()


def evaluate_form(s: widgets.Settings) -> None:
    """Start `python -m fer_core.evaluate` for a checkpoint and split; a fragment waits for its report."""
    with st.form("evaluate"):
        cols = st.columns(6)
        ckpt = cols[0].selectbox("Checkpoint", [str(p) for p in loaders.find_checkpoints(s.runs_root)],
                                 format_func=widgets.checkpoint_label)
        splits = _splits(s.data_path)
        split = cols[1].selectbox("Split", splits, index=min(1, len(splits) - 1))
        tta = cols[2].selectbox("Test-time augmentation", TTA_MODES, help=widgets.TTA_HELP)
        labels = cols[3].selectbox("Labels", ["fer2013", "ferplus"], help="ferplus needs fer2013new.csv beside the data")
        precision = cols[4].selectbox("Inference", INFERENCE_PRECISIONS,
                                      help="int8: the quantized copy that `predict --precision int8` uses (about 3x faster); "
                                           "onnx / onnx-int8: the same model in ONNX Runtime (2-3x faster again on AVX2)")
        corruption = cols[5].selectbox("Corruption", [*PERTURBATIONS, "all"], help="Alter every face first, to see how "
                                       "the model holds up; compare the report with the clean one. all: the clean faces "
                                       "and every corruption (12 reports in one file, 12x the time; the Robustness tab "
                                       "plots them). " + "; ".join(f"{k}: {v}" for k, v in PERTURBATIONS.items() if k != "none"))
        if st.form_submit_button("Evaluate", icon=":material/play_arrow:", disabled=s.data_path is None) and s.data_path:
            _start_evaluation(Path(ckpt), s.data_path, split, s.runs_root, tta, labels, precision, corruption)
    if error := st.session_state.pop("eval_error", None):
        st.error(error)
    if "eval_job" in st.session_state:
        _wait_for_report()


def _splits(data_path: Path | None) -> list[str]:
    """The splits the data has (the shared copy withholds PrivateTest), or all three if it cannot be read."""
    try:
        return loaders.get_data(data_path).splits if data_path is not None else list(SPLITS)
    except (OSError, ValueError):
        return list(SPLITS)


@st.fragment(run_every="1s")
def _wait_for_report() -> None:
    job = st.session_state.get("eval_job")
    if job is None:
        return
    state, text = widgets.job_outcome(job)
    if state == "done":
        del st.session_state["eval_job"]
        st.session_state["report_a"] = f"{job['out']}#0"  # show the new report
        st.rerun()
    elif state == "failed":
        del st.session_state["eval_job"]
        st.session_state["eval_error"] = "Evaluation failed:\n\n" + text
        st.rerun()  # outside the fragment, so the message stays after polling ends
    else:
        st.info(f"Evaluating... {time.time() - job['started']:.0f} s (the report goes to {job['out']})",
                icon=":material/hourglass_top:")
