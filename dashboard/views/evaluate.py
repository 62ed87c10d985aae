"""Evaluate: browse saved reports (metrics, confusion, calibration, mistakes), compare two, or evaluate a checkpoint."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import loaders
import report_view as rv
import widgets

s = widgets.settings()
st.title("Evaluate")
paths = loaders.find_reports(s.runs_root, first=s.checkpoint)  # the sidebar model's reports first
with st.expander("Evaluate a checkpoint", expanded=not paths or "eval_job" in st.session_state, icon=":material/play_arrow:"):
    st.caption("Runs `python -m fer_core.evaluate ... --out` in a separate process; the report is saved beside the run's "
               "checkpoint (or in the runs folder's reports/) and appears below.")
    rv.evaluate_form(s)
# One option per report; a file may hold several (a list), addressed as path#index.
reports = {f"{p}#{i}": r for p in paths for i, r in enumerate(loaders.get_reports(p))}
for problem in filter(None, map(loaders.report_problem, paths)):
    st.warning(f"Skipped: {problem}")
if not reports:
    st.info("No saved reports yet. Evaluate a checkpoint above, or run `python -m fer_core.evaluate --checkpoint CKPT --split "
            "PublicTest --out RUN/best.PublicTest.none.report.json`.")
    st.stop()

names = {k: rv.label(r, k.rsplit("#", 1)[0]) for k, r in reports.items()}
for key in ("report_a", "report_b"):  # a report deleted since the last run: fall back to the defaults
    if st.session_state.get(key) not in reports:
        st.session_state.pop(key, None)
if st.session_state.get("report_a_model") != str(s.checkpoint):  # another model in the sidebar: open on its report
    st.session_state.pop("report_a", None)
    st.session_state["report_a_model"] = str(s.checkpoint)
left, right = st.columns(2)
key_a = left.selectbox("Report", list(reports), format_func=lambda k: names[k], key="report_a")
key_b = right.selectbox("Compare with", [None, *reports], format_func=lambda k: names.get(k, "(none)"), key="report_b")
if key_a is None:  # (never: the box has no empty choice)
    st.stop()
report = reports[key_a]
rv.delete_control(Path(key_a.rsplit("#", 1)[0]), s.runs_root)

tabs = st.tabs(["Overview", "Confusion matrix", "Calibration", "Misclassified", "Compare", "Robustness", "Published results"])
with tabs[0]:
    rv.overview(report, s.data_path)
with tabs[1]:
    rv.confusion(report, key="main")
with tabs[2]:
    rv.calibration(report)
with tabs[3]:
    rv.gallery(report, s.data_path)
with tabs[4]:
    if key_b is None:
        st.info("Pick a second report in **Compare with** to see the two side by side.")
    else:
        short = lambda key: names[key].rsplit(" · ", 1)[0]  # without the accuracy: the table shows it
        rv.compare(report, reports[key_b], (f"A: {short(key_a)}", f"B: {short(key_b)}"))
with tabs[5]:
    rv.robust([report] + ([reports[key_b]] if key_b is not None else []), list(reports.values()), s)
with tabs[6]:
    rv.published(report)
