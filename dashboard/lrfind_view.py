"""The Train page's learning-rate finder: a `fer_core.lrfind` job started from the form, polled, then its curve."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import streamlit as st

import plots
import widgets
from fer_core import jobs, procs
from fer_core.config import TrainConfig
from fer_core.lrfind import caveat

JOB, RESULT, ERROR, ROOT = "lrfind_job", "lrfind_result", "lrfind_error", "lrfind_root"
LONG = 1000  # steps for a curve that 300 left flat (a ResNet-48: about 11 minutes on 2 cores)


def start(cfg: TrainConfig, runs_root: Path, steps: int = 300) -> None:
    """Start the range test for the form's settings; the page shows its progress, then its curve."""
    if (running := jobs.current_job(runs_root)) is not None:
        st.toast(f"{running.name} is training: the finder shares the cores with it, and both run slower")
    job, out = jobs.start_lrfind(cfg, runs_root, steps)
    st.session_state[JOB] = {"pid": job.pid, "out": str(out), "log": str(job.log), "started": time.time(),
                             "root": str(runs_root)}
    st.session_state.pop(RESULT, None)


def show() -> None:
    """The running test's progress, or the last finished one's curve and suggestion."""
    if error := st.session_state.pop(ERROR, None):
        st.error(error)
    if JOB in st.session_state:
        _wait()
    elif RESULT in st.session_state:
        _result(Path(st.session_state[RESULT]), st.session_state.get(ROOT))


@st.fragment(run_every="1s")
def _wait() -> None:
    job = st.session_state.get(JOB)
    if job is None:
        return
    state, text = widgets.job_outcome(job)
    if state == "done":
        st.session_state[ROOT] = job["root"]
        st.session_state[RESULT] = st.session_state.pop(JOB)["out"]
        st.rerun()
    elif state == "failed":
        del st.session_state[JOB]
        st.session_state[ERROR] = "The learning-rate finder failed:\n\n" + text
        st.rerun()
    else:
        # the last step line, not the log's last line: a warning printed mid-run is not progress
        step = next((ln for ln in reversed(procs.log_tail(Path(job["log"]), 20)) if ln.startswith("step")),
                    "loading the data")
        st.info(f"Finding a learning rate... {time.time() - job['started']:.0f} s: {step}", icon=":material/hourglass_top:")


def _result(path: Path, runs_root: str | None) -> None:
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        st.warning(f"The learning-rate finder's result cannot be read: {e}")
        return
    cfg = TrainConfig.from_dict(result.get("config", {}))
    st.markdown(f"**Learning-rate finder** ({cfg.model} width {cfg.width}, {len(result['lr'])} steps): suggested peak "
                f"learning rate **{result['suggested']:.2g}**, a tenth of {result['lowest']:.2g} where the smoothed loss "
                "was lowest. Put it in the form's Learning rate.")
    if note := caveat(result, cfg):
        st.warning(note[:1].upper() + note[1:] + ".")
        if not cfg.init and len(result["lr"]) < LONG:  # the form runs 300 steps; the same settings with more
            if runs_root and st.button(f"Run {LONG} steps", icon=":material/replay:",
                                       help="The same range test, longer: a few minutes for a small model, about 11 for "
                                            "the ResNet-48 on 2 cores"):
                try:
                    start(cfg, Path(runs_root), LONG)
                except (jobs.JobError, ValueError, OSError) as e:
                    st.session_state[ERROR] = f"The learning-rate finder did not start: {e}"
                st.rerun()
            st.caption("or from a terminal:")
            st.code(" ".join(["python -m fer_core.lrfind", *map(shlex.quote, jobs.train_args(cfg)), f"--steps {LONG}"]),
                    language="bash")
    st.plotly_chart(plots.lr_curve(result), key="lrfind-curve")
