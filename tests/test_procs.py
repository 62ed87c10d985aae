"""Detached subprocesses: how one ended is told (signal, exit code, a crash's traceback), and a job that ends while its
status is read is seen as ended the way it said, never as interrupted."""

from __future__ import annotations

import json
import os
import signal
import time

from fer_core import jobs, video_job
from fer_core.config import atomic_write_json
from fer_core.procs import exit_note, is_trainer, launch, log_tail, pid_alive


def ended(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} still runs"
        time.sleep(0.05)


def test_a_crash_leaves_its_traceback_and_signal(tmp_path):
    (tmp_path / "crash.py").write_text("import ctypes\n\ndef deep():\n    ctypes.string_at(0)\n\ndeep()\n")
    proc = launch(tmp_path, ["crash"], "crash.log")  # `python -m crash`, run in tmp_path
    ended(proc.pid)
    assert exit_note(proc.pid) == "killed by SIGSEGV"
    log = (tmp_path / "crash.log").read_text()
    assert "Segmentation fault" in log and "in deep" in log  # PYTHONFAULTHANDLER: the Python stack at the crash


def test_exit_codes_and_kills_are_named(tmp_path):
    (tmp_path / "fails.py").write_text("import sys\nprint('no data here')\nsys.exit(3)\n")
    (tmp_path / "sleeps.py").write_text("import time\ntime.sleep(60)\n")
    fails, sleeps = launch(tmp_path, ["fails"], "a.log"), launch(tmp_path, ["sleeps"], "b.log")
    assert exit_note(sleeps.pid) == "" and pid_alive(sleeps.pid) and not is_trainer(sleeps.pid)  # not fer_core.*
    os.kill(sleeps.pid, signal.SIGKILL)
    ended(fails.pid), ended(sleeps.pid)
    assert exit_note(fails.pid) == "exit code 3" and exit_note(sleeps.pid) == "killed by SIGKILL"
    assert log_tail(tmp_path / "a.log", 1) == ["no data here"]
    assert exit_note(1) == "" and exit_note(None) == ""  # not started here: unknown


def test_a_video_job_killed_says_by_what(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"")
    status = video_job.start_video_job(tmp_path / "v.mp4", tmp_path / "job")
    os.kill(status.pid, signal.SIGKILL)
    ended(status.pid)
    status = video_job.read_video_job(tmp_path / "job")
    assert status.state == "interrupted" and "(killed by SIGKILL)" in status.message, status


def test_a_video_job_that_ends_between_two_reads_is_finished(tmp_path, monkeypatch):
    folder = tmp_path / "job"
    folder.mkdir()
    atomic_write_json(folder / video_job.JOB, {"pid": os.getpid(), "args": [], "started": time.time()})
    atomic_write_json(folder / video_job.STATUS, {"state": "running", "done": 0.9, "pid": os.getpid()})

    def finishes_now(pid):  # the job writes its last status and ends after its status was read, before the pid is
        atomic_write_json(folder / video_job.STATUS, {"state": "finished", "done": 1.0, "pid": pid})
        (folder / video_job.ANNOTATED).write_bytes(b"webm")
        return False

    monkeypatch.setattr(video_job, "is_trainer", finishes_now)
    assert video_job.read_video_job(folder).state == "finished"


def test_a_training_run_that_ends_between_two_reads_is_finished(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    atomic_write_json(run / jobs.JOB_FILE, {"pid": os.getpid(), "started": time.time()})
    atomic_write_json(run / "status.json", {"state": "running", "epoch": 4, "epochs": 5, "pid": os.getpid()})

    def finishes_now(pid):
        atomic_write_json(run / "status.json", {"state": "finished", "epoch": 5, "epochs": 5, "pid": pid})
        return False

    monkeypatch.setattr(jobs, "is_trainer", finishes_now)
    info = jobs.read_run(run)
    assert (info.state, info.epoch) == ("finished", 5), info
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
