"""Entry point of `streamlit run dashboard/Home.py`: the page router and the sidebar every page shares."""

from __future__ import annotations

import streamlit as st

import widgets
from fer_core.config import set_threads

# One intra-op thread for the server: a photo's faces are too small to gain from two, and with a training job on the same
# 2 cores two threads wait on each other (Grad-CAM of one face: ~10 ms with one thread, up to ~800 ms with two).
set_threads(1)
st.set_page_config(page_title="FER workbench", page_icon=":material/mood:", layout="wide")

PAGES = [
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/dataset.py", title="Dataset", icon=":material/grid_view:"),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/evaluate.py", title="Evaluate", icon=":material/analytics:"),
    st.Page("views/predict.py", title="Predict", icon=":material/add_a_photo:"),
]

page = st.navigation(PAGES)
widgets.sidebar()  # after navigation, so the page links sit above the settings
page.run()
