"""The Dataset page's copies: test faces that Training holds too (fer_core.audit), counted per emotion and shown in pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import loaders
import plots
import widgets
from fer_core.audit import NEAR
from fer_core.config import EMOTIONS
from fer_core.data import FERData
from fer_core.evaluate import headline_order

PER_PAGE = 24


def show(data: FERData, s: widgets.Settings) -> None:
    found = loaders.copies(str(s.data_path), loaders.mtime(s.data_path))
    if not found:
        st.info("This data has no Training split (or nothing beside it), so no face can have a copy there.")
        return
    lines, rows = [], []
    for split, c in found.items():
        seen, exact, labels = c["seen"], c["exact"], data.labels[split].numpy()
        lines.append(f"- **{split}**: {int(seen.sum()):,} of {len(seen):,} faces ({seen.mean():.1%}): {int(exact.sum()):,} "
                     f"pixel for pixel, {int((seen & ~exact).sum()):,} as near copies; "
                     f"{int((seen & ~c['same_label']).sum()):,} of them carry another label in Training")
        rows += [{"split": split, "emotion": e, "faces": int((labels == k).sum()), "copies": int((seen & (labels == k)).sum())}
                 for k, e in enumerate(EMOTIONS)]
    st.markdown("Faces that Training holds too:\n" + "\n".join(lines))
    st.plotly_chart(plots.copies_by_class(pd.DataFrame(rows)), key="copies-chart")
    scored = next((r for r in headline_order(loaders.model_reports(s.checkpoint, s.runs_root))
                   if "accuracy" in r.get("unseen", {}) and "seen_accuracy" in r["unseen"] and "corruption" not in r), None)
    example = (f" ({s.checkpoint.name}, the sidebar's model: {scored['unseen']['seen_accuracy']:.1%} on {scored['split']}'s "
               f"copies against {scored['unseen']['accuracy']:.1%} on its other faces)") if scored else ""
    st.caption(f"A model trained on Training has seen these faces and scores them far higher than the rest{example}, so "
               "every evaluation report also gives the accuracy without them. A near copy is the same photo cropped a few "
               "pixels off, rescaled a little or re-encoded: 12 x 12 thumbnails of the faces' centres, one moved up to 3 px "
               f"and rescaled up to 8%, with a cosine similarity of at least {NEAR}. `fer-audit` counts them.")
    cols = st.columns(4, vertical_alignment="bottom")
    split = cols[0].selectbox("Split", list(found), key="copies-split")
    emotion = cols[1].selectbox("Emotion", ["any", *EMOTIONS], key="copies-emotion")
    other = cols[3].toggle("Labelled otherwise", key="copies-other",
                           help="Only the copies whose Training face carries another label: label noise, made visible")
    c, (x, y), (tx, ty) = found[split], data.split(split), data.split("Training")
    keep = c["seen"] & ((y.numpy() == EMOTIONS.index(emotion)) if emotion != "any" else True)
    keep &= ~c["same_label"] if other else True
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(c["similarity"][idx], kind="stable")]  # the least similar first: judge the threshold there
    st.caption(f"{len(idx):,} pairs, each {split} face beside its Training copy; the least similar first")
    shown = idx[widgets.pager(len(idx), PER_PAGE, "copies-page", cols[2])]
    gap = np.full((x.shape[1], 4), 255, np.uint8)
    pairs = [np.concatenate([x[i].numpy(), gap, tx[c["index"][i]].numpy()], 1) for i in shown]

    def caption(i: int) -> str:
        j, a, b = int(c["index"][i]), EMOTIONS[int(y[i])], EMOTIONS[int(ty[c["index"][i]])]
        how = "exact" if c["exact"][i] else f"{c['similarity'][i]:.3f}"
        return f"#{i} · Training #{j} · {how} · {a}" + (f" / {b}" if a != b else "")

    widgets.image_grid(pairs, [caption(int(i)) for i in shown], columns=4, width="stretch")
