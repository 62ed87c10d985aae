"""Predict: faces boxed on your photos, probabilities per face, saliency maps, and downloads of the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

import loaders
import widgets
from fer_core.config import EMOTIONS
from fer_core.transforms import TTA_MODES

s = widgets.settings()
st.title("Predict")
model = widgets.model_or_stop(s.checkpoint)
try:
    import fer_core.explain  # noqa: F401 - the explanation stack (captum, OpenCV) is installed
except ImportError as e:  # the explanation stack (captum, OpenCV) is missing: say what to install
    st.error(f"Prediction needs fer_core.predict / fer_core.explain and their dependencies: {e}. "
             "Run `pip install -r requirements.txt -e .`.")
    st.stop()

import photo_view  # noqa: E402 - after the check above: they need the same stack
import video_view  # noqa: E402
from fer_core.video import DEFAULT_EVERY_S, VIDEO_SUFFIXES, is_video  # noqa: E402

files = st.file_uploader("Photos or videos (several at once)", accept_multiple_files=True, key="uploads",
                         type=["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff", *(v[1:] for v in VIDEO_SUFFIXES)])
toggles = st.columns([1, 1.1, 1.1, 1.6])
others = [str(p) for p in loaders.find_checkpoints(s.runs_root) if p != s.checkpoint]
compare = toggles[3].selectbox("Compare with", [None, *others], key="compare",
                               format_func=lambda p: "(no second model)" if p is None else widgets.checkpoint_label(p),
                               help="A second model's probabilities beside the sidebar model's, on the same face crops")
if compare is not None and widgets.model_or_error(Path(compare)) is None:  # said why; carry on with one model
    compare = None
use_camera = toggles[0].toggle("Use the camera", key="use-camera")
want_example = toggles[1].toggle("Example photo", key="use-example",
                                 help="A portrait to try the page on: scikit-image's astronaut (Eileen Collins, NASA)")
want_clip = toggles[2].toggle("Example video", key="use-example-video",
                             help="A 4 s clip made from scikit-image's photos: the astronaut's head gliding over a cup")
example = loaders.example_photo() if want_example else None
clip = loaders.example_video() if want_clip else None
if (want_example and example is None) or (want_clip and clip is None):
    st.warning("The examples come with scikit-image, which is not installed: `pip install -r requirements.txt -e .`.")
shot = st.camera_input("Take a photo", key="camera") if use_camera else None
c = st.columns(5)
detect = c[0].toggle("Find faces", value=True, key="detect", help="Off: the whole image is one face (for ready-made crops)")
small_faces = c[0].toggle("Small faces", key="small-faces", disabled=not detect,
                          help="Also look for faces from about 3% of the photo's short side, not only from about 6-10% "
                               "(group photos, people far away), and faces seen from the side even where frontal ones are "
                               "found: several times slower, more false faces on textured surfaces"
                          ) and detect
tta = c[1].selectbox("Test-time augmentation", TTA_MODES, key="tta", help=widgets.TTA_HELP)
method = widgets.method_select(c[2], key="method")
target = c[3].selectbox("Explain class", ["predicted", *EMOTIONS], key="target", help="Which class the map explains")
alpha = c[4].slider("Map opacity", 0.0, 1.0, 0.5, 0.05, key="alpha")
every = DEFAULT_EVERY_S
if any(is_video(f.name) for f in files or []) or clip:
    every = st.columns([2, 3])[0].select_slider(
        "Videos: one frame every", video_view.EVERY_CHOICES, value=DEFAULT_EVERY_S, key="every", format_func=lambda v: f"{v:g} s",
        help="Shorter: a finer timeline, slower to compute (a long video is sampled more sparsely: at most 600 frames)")

sources = [(f.name, f.getvalue()) for f in files or []] + ([("camera.jpg", shot.getvalue())] if shot is not None else [])
sources += [example] if example else []
sources += [clip] if clip else []
if not sources:
    st.info("Upload photos or videos (or take a photo with the camera, or turn on an example) to see the faces, their "
            "expressions and why. "
            f"Model: {widgets.checkpoint_label(str(s.checkpoint))}, {model.num_params:,} parameters.")
    st.stop()
target_index = None if target == "predicted" else EMOTIONS.index(target)
if len(photos := [(n, d) for n, d in sources if not is_video(n)]) > 1:
    with st.expander("All photos at a glance", expanded=True, icon=":material/table:"):
        photo_view.photos_summary(photos, s.checkpoint, detect=detect, small_faces=small_faces, tta=tta)
shown: dict[str, Any] = dict(detect=detect, small_faces=small_faces, tta=tta, method=method, target=target_index,
                             alpha=alpha, compare=Path(compare) if compare else None)
for i, (name, data) in enumerate(sources):
    with st.container(border=True):
        if is_video(name):
            video_view.video_result(name, data, s.checkpoint, every_s=every, key=f"video{i}", **shown)
        else:
            photo_view.photo_result(name, data, s.checkpoint, key=f"photo{i}", **shown)
