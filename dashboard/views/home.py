"""Home: what the workbench does, the loaded model and its measured accuracy, where the data is, links to every page."""

from __future__ import annotations

import streamlit as st

import loaders
import widgets
from fer_core.compare import robustness, robustness_sets
from fer_core.data import find_ferplus
from fer_core.evaluate import headline_order

s = widgets.settings()
st.title("Facial expression recognition workbench")
st.markdown("Seven expressions (angry, disgust, fear, happy, sad, surprise, neutral) from 48x48 greyscale faces, "
            "trained from scratch on FER2013 (on a plain CPU, or a GPU where there is one). Explore the data, train and "
            "compare models, evaluate them against published results, and try them on your own photos and videos with "
            "saliency maps.")

model_col, data_col = st.columns(2)
with model_col:
    st.subheader(f"Model: {widgets.checkpoint_label(str(s.checkpoint))}")
    model = widgets.model_or_error(s.checkpoint)
    if model is not None:
        reports = headline_order(loaders.model_reports(s.checkpoint, s.runs_root))  # headline (as the card's) first
        n = model.num_params
        cols = st.columns(4)
        cols[0].metric("architecture", model.config.model, help=f"width {model.config.width} (channels of the first stage)")
        cols[1].metric("parameters", f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.0f} k", help=f"{n:,}")
        if soup := model.meta.get("soup"):
            cols[2].metric("weights", "soup", help=f"a model soup: the weights of {len(soup)} checkpoints averaged "
                           f"({len({i.get('path') for i in soup})} distinct files; the model card says which)")
        else:
            cols[2].metric("epochs trained", (model.meta.get("epoch") or 0) + 1)
        cols[3].metric("accuracy", f"{reports[0]['accuracy']:.1%}" if reports else "-",
                       help=f"{reports[0]['split']}, TTA {reports[0]['tta']}" if reports else "no evaluation report yet")
        for r in reports:
            if "corruption" not in r:  # the corrupted ones, a dozen to a set, in one line each below
                inference = f", {r['precision']} inference" if r.get("precision", "fp32") != "fp32" else ""
                unseen = r.get("unseen") or {}
                lacks = (f"; {unseen['accuracy']:.1%} on the {unseen['n']:,} faces Training lacks"
                         if "accuracy" in unseen and unseen.get("seen_n") else "")
                st.markdown(f"- **{r['accuracy']:.1%}** accuracy on {r['split']} ({r['n']:,} images, TTA {r['tta']}"
                            f"{inference}), macro F1 {r['macro_f1']:.3f}{lacks}")
        for family in robustness_sets(reports):
            rows = robustness(family)[1:]
            low, high = min(rows, key=lambda x: x["accuracy"]), max(rows, key=lambda x: x["accuracy"])
            st.markdown(f"- under {len(rows)} corruptions of the same {family[0]['split']} faces (TTA "
                        f"{family[0]['tta']}, {family[0].get('precision', 'fp32')} inference): from **{low['accuracy']:.1%}** "
                        f"({low['corruption']}) to **{high['accuracy']:.1%}** ({high['corruption']}); every drop in "
                        "Evaluate's Robustness tab")
        if not reports:
            best = model.meta.get("best_acc")
            st.info("No evaluation report for this checkpoint yet" + (f"; validation accuracy while training: {best:.1%}."
                                                                     if best else ".") + " Evaluate it on the Evaluate page.")
        if (card := s.checkpoint.with_suffix(".md")).exists():
            with st.expander("Model card"):
                st.markdown(card.read_text())
        st.caption(f"`{s.checkpoint}`")
        widgets.onnx_downloads(s.checkpoint)

with data_col:
    st.subheader("Data")
    if s.data_path is None:
        st.error("The dataset was not found. Put it in one of these places:")
        st.code(s.data_note, language=None)
    else:
        size = s.data_path.stat().st_size / 1e6 if s.data_path.is_file() else 0
        st.markdown(f"`{s.data_path}`" + (f" ({size:.0f} MB)" if size >= 1 else ""))
        votes = find_ferplus(s.data_path)
        st.markdown(f"FER+ votes: `{votes}`" if votes else "FER+ votes: not found (put `fer2013new.csv` beside the data).")
        if s.data_note:
            st.warning("This is the 560-image sample bundled for tests; the full FER2013 was not found.")
            st.code(s.data_note, language=None)
    st.caption(f"Training runs are kept in `{s.runs_root}`.")

st.subheader("Pages")
LINKS = [("views/dataset.py", "Dataset", ":material/grid_view:", "Class balance, FER+ agreement, faces and label noise."),
         ("views/train.py", "Train", ":material/model_training:", "Start a job, follow it live, resume it, compare runs."),
         ("views/evaluate.py", "Evaluate", ":material/analytics:", "Metrics, confusion, calibration, mistakes explained."),
         ("views/predict.py", "Predict", ":material/add_a_photo:", "Photos and videos: emotions, saliency, timelines.")]
for col, (page, title, icon, text) in zip(st.columns(len(LINKS), border=True), LINKS, strict=True):
    col.page_link(page, label=title, icon=icon)
    col.caption(text)
