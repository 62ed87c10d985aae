"""Train: a form that starts a training job (a separate process) or a learning-rate finder, live progress, past runs."""

from __future__ import annotations

import streamlit as st

import lrfind_view
import train_form
import widgets
from fer_core import jobs

s = widgets.settings()
st.title("Train")
st.caption(f"Each job runs `python -m fer_core.train` in its own process and writes a run folder under `{s.runs_root}`: "
           "reloading the page or closing the browser does not stop it. One job runs at a time.")
current = jobs.current_job(s.runs_root)
if current is not None:
    st.info(f"Job **{current.name}** is running; start another when it ends or after cancelling it.",
            icon=":material/directions_run:")

train_form.new_run(s, expanded=current is None)
lrfind_view.show()

runs = jobs.list_runs(s.runs_root)
if not runs:
    st.info(f"No runs in `{s.runs_root}` yet: fill in the form above, or point the sidebar's runs folder elsewhere.")
    st.stop()
names = [r.name for r in runs]
if st.session_state.get("train-run") not in names:
    st.session_state["train-run"] = current.name if current is not None and current.name in names else names[0]
chosen = st.selectbox("Run", names, key="train-run")
widgets.runs_view(s.runs_root, chosen)
