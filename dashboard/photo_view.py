"""One photo on the Predict page: its faces boxed and numbered, each face's saliency map and probabilities (a table and
one face up close when there are many), downloads; and the table of several photos' faces."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
from PIL import Image

import loaders
import plots
import widgets


def _face_name(numbers: list[str] | None, j: int) -> str:
    return f"face {numbers[j] if numbers and j < len(numbers) else j + 1}"


def photo_result(name: str, data: bytes, checkpoint: Path, *, detect: bool, small_faces: bool, tta: str, method: str,
                 target: int | None, alpha: float, key: str, compare: Path | None = None, title: str | None = None,
                 face_numbers: list[str] | None = None) -> None:
    """One uploaded photo: annotated picture with downloads, and per face an attribution overlay and probability bars
    (beside those of a second model, `compare`, on the same face crops). `name` names the downloads; `title`, where
    given, is shown instead of it; `face_numbers` number the faces in detection order (default 1, 2...). With
    more than MANY_FACES faces, a table of them all and one face up close, chosen there."""
    from fer_core.explain import CAVEATS, overlay
    from fer_core.faces import RELIABLE_FROM, has_small_faces
    from fer_core.images import ImageError
    from fer_core.predict import csv_rows
    from fer_core.quality import describe

    st.markdown(f"**{title or name}**")
    stamp = loaders.mtime(checkpoint)
    drawn = tuple(face_numbers) if face_numbers else None  # the numbers on the picture (default: 1, 2... where several)
    try:
        faces, picture_png = loaders.analyse_photo(data, str(checkpoint), stamp, detect, small_faces, tta, drawn)
    except ImageError as e:
        st.error(f"Cannot use this file: {e}")
        return
    if not faces:
        st.warning("No face found. Faces should be roughly frontal or seen from the side (tilted up to about 45° is fine); "
                   + ("" if small_faces else "for small faces (a group photo), turn on **Small faces**; ")
                   + "for a photo that is already a face crop, turn off **Find faces**.")
        st.image(picture_png, width=480)
        return
    picture, details = st.columns([3, 2])
    picture.image(picture_png, width="stretch")
    if detect and not small_faces and has_small_faces([f.box for f in faces], Image.open(io.BytesIO(data)).size):
        picture.caption(f"Faces this small (under {RELIABLE_FROM:.0%} of the photo's short side) are often missed by the "
                        "default search: **Small faces** also looks for faces from about 3%.")
    stem = Path(name).stem
    result = {"file": name, "checkpoint": str(checkpoint), "tta": tta, "detect": detect, "small_faces": small_faces,
              "faces": [f.to_dict() for f in faces]}
    left, middle, right = picture.columns(3)
    left.download_button("Image (PNG)", picture_png, f"{stem}.annotated.png", "image/png", key=f"{key}-png",
                         icon=":material/download:", help="The photo with each face boxed and labelled, as shown")
    if face_numbers is None:  # a photo's faces, numbered as on the picture (a video frame's are numbered by person)
        rows = faces_frame(csv_rows(name, faces)).drop(columns=["frame", "time_s"])
        middle.download_button("Faces (CSV)", rows.to_csv(index=False), f"{stem}.faces.csv", "text/csv", key=f"{key}-csv",
                               icon=":material/table:",
                               help="A row per face: box, tilt, side view, emotion, probabilities (All faces (CSV)'s columns)")
    right.download_button("Result (JSON)", json.dumps(result, indent=2), f"{stem}.json", "application/json", key=f"{key}-json",
                          icon=":material/data_object:")
    with details:
        shown = list(range(len(faces)))
        if len(faces) > MANY_FACES:  # every face's map and chart would be a long scroll (and Occlusion a long wait)
            shown = [many_faces(faces, face_numbers, key)]
        for j in shown:
            face = faces[j]
            heat = loaders.explain_crop(face.crop, str(checkpoint), stamp, method, target)
            crop_col, bars_col = st.columns([2, 3], vertical_alignment="center")
            turned = (f" (turned {face.angle:+.0f}°, shown upright)" if face.angle else
                      " (seen from the side: less reliable)" if face.side else "")
            caption = f"{_face_name(face_numbers, j)}: {face.label} {face.confidence:.0%}{turned}"
            crop_col.image(overlay(face.crop, heat, alpha=alpha), caption=caption, width="stretch")
            if face.issues:  # quality.assess: a face like few of the training faces
                crop_col.caption(f":material/warning: Trust this one less: {', '.join(face.issues)}",
                                 help=describe(face.issues)[:1].upper() + describe(face.issues)[1:] + ".")
            if not heat.any():  # Grad-CAM keeps only positive evidence; a weak or unsure model may have none to show
                crop_col.caption("This method found no positive evidence for the class here; try another method.")
            if compare is None:
                bars_col.plotly_chart(plots.probabilities(face.probs), key=f"{key}-probs{j}")
                continue
            other = loaders.face_probs(face.crop, str(compare), loaders.mtime(compare), tta)
            names = (widgets.short_name(checkpoint), widgets.short_name(compare))
            bars_col.plotly_chart(plots.probabilities_pair(face.probs, other, names), key=f"{key}-probs{j}")
            best = max(other, key=lambda e: other[e])
            bars_col.caption(f"{'Agree' if best == face.label else 'Disagree'}: {names[1]} says {best} {other[best]:.0%}")
        if caveat := CAVEATS.get(method):
            st.caption(caveat)


MANY_FACES = 6  # a photo with more faces shows a table of them and one face up close


def many_faces(faces: Sequence[Any], numbers: list[str] | None, key: str) -> int:
    """The faces of a crowded photo as a table (name, emotion, confidence, and the tilt where a face is turned, side
    views where there are any) and counts per emotion; the index of the face chosen to be shown up close (the first,
    largest, until another is chosen). Boxes and probabilities are in the JSON download."""
    from fer_core.predict import counted, tally

    labels = [_face_name(numbers, j) for j in range(len(faces))]
    st.markdown(f"**{counted(len(faces), 'face')}**: {tally(faces)}")
    table = pd.DataFrame({"face": labels, "emotion": [f.label for f in faces], "confidence": [f.confidence for f in faces],
                          "tilt": [f.angle for f in faces], "side view": [f.side for f in faces],
                          "trust less": [", ".join(f.issues) for f in faces]})
    table = table.drop(columns=[c for c in ("tilt", "side view", "trust less") if not table[c].any()])
    st.dataframe(table, hide_index=True, height=248, key=f"{key}-faces", column_config={
        "confidence": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1),
        "tilt": st.column_config.NumberColumn(format="%+.0f°", help="Turned in the picture's plane (counter-clockwise)"),
        "side view": st.column_config.CheckboxColumn(help="Seen from the side: the model saw few such faces, trust it less"),
        "trust less": st.column_config.TextColumn(help="Blurry, noisy, dark, low contrast, small or compressed: few "
                                                       "training faces were like it (fer_core.quality)")})
    return st.selectbox("Face up close", range(len(faces)), key=f"{key}-face",
                        format_func=lambda j: f"{labels[j]}: {faces[j].label} {faces[j].confidence:.0%}",
                        help="Its saliency map and probabilities below; the numbers are those drawn on the picture")


def faces_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """fer_core.predict.csv_rows() as a table with its CSV_COLUMNS (the CLI's --csv layout); whole numbers stay whole
    where some rows have none (a photo without a face, an error)."""
    from fer_core.predict import CSV_COLUMNS

    table = pd.DataFrame(rows, columns=CSV_COLUMNS)
    whole = {c: "Int64" for c in ("frame", "face", "x", "y", "w", "h")}
    return table.astype({**whole, "label": object, "error": object}).fillna({"label": "", "error": ""})


def photos_summary(photos: Sequence[tuple[str, bytes]], checkpoint: Path, *, detect: bool, small_faces: bool,
                   tta: str) -> None:
    """Several photos at once: one table row per face (or per photo without one, or that cannot be read), the counts
    per emotion, and the whole table as CSV (as `fer-predict --csv` writes it); each photo's own view follows below."""
    from fer_core.images import ImageError
    from fer_core.predict import counted, csv_rows, tally

    rows: list[dict[str, Any]] = []
    found: list[Any] = []  # every photo's faces
    for name, data in photos:
        try:
            faces, _ = loaders.analyse_photo(data, str(checkpoint), loaders.mtime(checkpoint), detect, small_faces, tta)
        except ImageError as e:
            rows += csv_rows(name, f"cannot use this file: {e}")
            continue
        rows += csv_rows(name, faces)
        found += faces
    table = faces_frame(rows).drop(columns=["frame", "time_s"])
    st.markdown(f"**{counted(len(photos), 'photo')}, {counted(len(found), 'face')}**: {tally(found) or 'no face found'}")
    shown = table.assign(note=table["error"].mask((table["error"] == "") & table["face"].isna(), "no face found"))
    shown = shown.rename(columns={"path": "file", "label": "emotion"})
    st.dataframe(shown[["file", "face", "emotion", "confidence", "x", "y", "w", "h", "note"]], hide_index=True,
                 column_config={"confidence": st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)})
    st.download_button("All faces (CSV)", table.to_csv(index=False), "faces.csv", "text/csv", key="photos-csv",
                       icon=":material/download:")
