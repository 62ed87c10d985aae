"""Dataset: class balance per split, FER2013 against FER+ labels, test faces Training holds too, faces per emotion."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import copies_view
import loaders
import plots
import widgets
from fer_core.config import EMOTIONS

s = widgets.settings()
data = widgets.data_or_stop(s)
stamp = loaders.mtime(s.data_path)
st.title("Dataset")
st.caption(f"`{data.source}`: " + ", ".join(f"{split} {len(data.labels[split]):,}" for split in data.splits) + " images")

st.subheader("Class balance")
table = loaders.class_table(str(s.data_path), stamp)
chart, numbers = st.columns([3, 2])
value = chart.segmented_control("Show", ["share", "count"], default="share", key="balance-value") or "share"
chart.plotly_chart(plots.class_balance(table, value), key="balance")
# The table shows what the chart shows, one column per split, so it fits beside it.
wide = {f"{split} {value}": table[table.split == split].set_index("emotion")[value] for split in data.splits}
numbers.dataframe(pd.DataFrame(wide).reindex(EMOTIONS), column_config={
    c: st.column_config.NumberColumn(format="percent" if value == "share" else "%d") for c in wide})
train = table[table.split == "Training"].set_index("emotion")
if len(train):
    full = "" if train["count"].sum() == 28_709 else " In the full FER2013 Training split disgust is 1.5% (436 of 28,709)."
    st.info(f"**Imbalance.** Disgust is {train.loc['disgust', 'share']:.1%} of Training here ({train.loc['disgust', 'count']:,} "
            f"images), happy {train.loc['happy', 'share']:.1%}.{full} Accuracy hides rare classes: read per-class recall and "
            "macro F1 on the Evaluate page, or train with class weights.")

st.subheader("FER2013 against FER+ labels")
agreement = loaders.ferplus_agreement(str(s.data_path), stamp)
if agreement is None:
    st.info("FER+ votes not found: put `fer2013new.csv` (github.com/microsoft/FERPlus) beside the data file to compare labels.")
else:
    kept = agreement[list(EMOTIONS)].to_numpy()
    same = kept.trace() / max(kept.sum(), 1)
    st.markdown(f"FER+ (10 annotators per image, majority vote) agrees with the original label on **{same:.1%}** of the images "
                f"it keeps, and drops {agreement['dropped'].sum():,} of {agreement.to_numpy().sum():,} (no majority, not a face, "
                "contempt).")
    st.plotly_chart(plots.confusion(agreement.to_numpy(), EMOTIONS, x_title="FER+ majority", y_title="FER2013 label",
                                    columns=list(agreement.columns)), key="ferplus")

st.subheader("Copies in Training")
copies_view.show(data, s)

st.subheader("Samples")
votes = loaders.ferplus_votes(str(s.data_path), stamp)
cols = st.columns(4 if votes else 3, vertical_alignment="bottom")
split = cols[0].selectbox("Split", data.splits, key="grid-split")
emotion = cols[1].selectbox("Emotion", EMOTIONS, index=3, key="grid-emotion")
x, y = data.split(split)
keep = (y == EMOTIONS.index(emotion)).numpy()
if votes:  # FER+ majority (and its share of the votes) under each face; optionally only where it overrules FER2013
    plus, shares = votes[split]
    if cols[3].toggle("FER+ disagrees", key="grid-disagree", help="Only faces whose FER+ majority differs from this "
                      "label, or that FER+ dropped (no majority, not a face): the label noise of FER2013"):
        total = int(keep.sum())
        keep &= plus != EMOTIONS.index(emotion)
        st.caption(f"FER+ relabels or drops {int(keep.sum()):,} of the {total:,} {split} faces labelled {emotion} "
                   f"({keep.sum() / max(total, 1):.0%}).")
    note = lambda i: f" · FER+ {EMOTIONS[plus[i]]} {shares[i, plus[i]]:.0%}" if plus[i] >= 0 else " · FER+ dropped"
else:
    note = lambda i: ""
idx = keep.nonzero()[0]
shown = idx[widgets.pager(len(idx), 32, "grid-page", cols[2])]
widgets.image_grid(x[shown].numpy(), [f"#{i}{note(i)}" for i in shown])
