"""Training jobs as real subprocesses on the sample data: one at a time, cancel, resume, a killed job shows as interrupted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from fer_core import jobs
from fer_core.checkpoint import CheckpointError, read_checkpoint
from fer_core.config import DEFAULT_CHECKPOINT, SAMPLE_DATA, TrainConfig
from fer_core.train import RunFolder, config_from_args, get_args_parser, init_recipe

TINY = TrainConfig(data=str(SAMPLE_DATA), model="small", width=8, epochs=1, batch_size=32, warmup_epochs=0, threads=1,
                   patience=0, augment="none")
LONG = TINY.replace(epochs=200)  # runs long enough to be caught running (each sample epoch takes well under a second)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def wait_for(run_dir, cond, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not cond(info := jobs.read_run(run_dir)):
        assert time.monotonic() < deadline, f"timed out; run is {info.state}: {info.message}"
        time.sleep(0.1)
    return info


def test_train_args_round_trip_through_the_cli():
    cfg = TINY.replace(lr=0.01, class_weights=True, label_smoothing=0.0, augment="strong")
    args = get_args_parser().parse_args(["--run", "x", *jobs.train_args(cfg)])
    assert config_from_args(args) == cfg
    assert "--lr" in jobs.train_args(cfg) and "--momentum" not in jobs.train_args(cfg)  # defaults stay implicit


def test_a_fine_tune_job_trains_exactly_the_config_it_was_given(fast_checkpoint):
    # The child starts from the checkpoint's recipe, not the defaults: a value equal to the default (fp32, seed 0,
    # weight decay) must still be passed on, or the checkpoint's (bf16, seed 4, ...) would silently replace it.
    shipped = read_checkpoint(fast_checkpoint)["config"]
    cfg = TINY.replace(init=str(fast_checkpoint), model=shipped["model"], width=shipped["width"])
    assert (shipped["precision"], shipped["seed"]) != (cfg.precision, cfg.seed)
    assert config_from_args(get_args_parser().parse_args(["--run", "x", *jobs.train_args(cfg)])) == cfg
    recipe = init_recipe(fast_checkpoint).replace(data=cfg.data, epochs=3)  # the checkpoint's own recipe: one flag
    assert jobs.train_args(recipe) == ["--data", cfg.data, "--epochs", "3", "--init", str(fast_checkpoint)]


def test_checkpoint_paths_are_made_absolute_and_bad_distillation_starts_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = TINY.replace(teacher="b/teacher.pt", distill=0.7, distill_t=3.0)
    args = jobs.train_args(cfg)
    assert args[args.index("--teacher") + 1] == str(tmp_path / "b" / "teacher.pt")  # the child runs elsewhere
    assert config_from_args(get_args_parser().parse_args(["--run", "x", *args])) == cfg.replace(
        teacher=str(tmp_path / "b" / "teacher.pt"))
    args = jobs.train_args(cfg.replace(teacher="b/t1.pt,c/t2.pt"))  # an ensemble: each path made absolute
    assert args[args.index("--teacher") + 1] == f"{tmp_path / 'b' / 't1.pt'},{tmp_path / 'c' / 't2.pt'}"
    (tmp_path / "a").mkdir()
    shutil.copy(DEFAULT_CHECKPOINT, tmp_path / "a" / "start.pt")
    args = jobs.train_args(cfg.replace(init="a/start.pt"))
    assert args[args.index("--init") + 1] == str(tmp_path / "a" / "start.pt")
    with pytest.raises(CheckpointError, match="missing.pt"):  # a fine-tune from a file that is not there
        jobs.start_job(TINY.replace(init="a/missing.pt"), tmp_path / "runs", name="ft")
    assert not (tmp_path / "runs" / "ft").exists()
    with pytest.raises(ValueError, match="needs a teacher"):
        jobs.start_job(TINY.replace(distill=0.5), tmp_path / "runs", name="kd")
    assert not (tmp_path / "runs" / "kd").exists()
    with pytest.raises(ValueError, match="batch_size"):  # every setting the child would refuse, with nothing started
        jobs.start_job(TINY.replace(batch_size=1), tmp_path / "runs", name="bs")
    assert not (tmp_path / "runs" / "bs").exists()


def test_runs_root_from_argument_env_or_home(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_RUNS", str(tmp_path / "env"))
    assert jobs.resolve_runs_root() == tmp_path / "env"
    assert jobs.resolve_runs_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("FER_RUNS")
    assert jobs.resolve_runs_root().name == "fer_runs"


def test_registry_reads_states_without_processes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "status.json").write_text(json.dumps({"state": "running", "pid": dead_pid(), "epoch": 3, "epochs": 9,
                                                            "updated": 2.0}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "status.json").write_text(json.dumps({"state": "finished", "pid": dead_pid(), "started": 5.0,
                                                            "best_acc": 0.5}))
    (tmp_path / "not-a-run").mkdir()
    runs = jobs.list_runs(tmp_path)
    assert [(r.name, r.state) for r in runs] == [("b", "finished"), ("a", "interrupted")]
    assert runs[1].epoch == 3 and not runs[1].active
    assert jobs.list_runs(tmp_path / "missing") == []


def test_stale_lock_is_ignored(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / ".train.lock").write_text(json.dumps({"run": "old", "pid": dead_pid(), "started": 0}))
    assert jobs.current_job(tmp_path) is None
    # An unrelated live process (this one) with a recorded pid is not a trainer either.
    (tmp_path / ".train.lock").write_text(json.dumps({"run": "old", "pid": os.getpid(), "started": 0}))
    assert jobs.current_job(tmp_path) is None


def test_a_run_started_without_the_lock_still_blocks_a_new_job(tmp_path):
    # A stand-in for `python -m fer_core.train` started by hand: alive, with "fer_core." on its command line.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "fer_core.train"])
    try:
        (tmp_path / "by-hand").mkdir()
        (tmp_path / "by-hand" / "status.json").write_text(json.dumps({"state": "running", "pid": proc.pid, "epoch": 1}))
        assert jobs.current_job(tmp_path).name == "by-hand"
        with pytest.raises(jobs.JobRunningError, match="by-hand"):
            jobs.start_job(TINY, tmp_path, name="new")
        assert not (tmp_path / "new").exists() and not (tmp_path / ".train.lock").exists()
    finally:
        proc.kill()
        proc.wait()
    assert jobs.read_run(tmp_path / "by-hand").state == "interrupted"


def test_delete_run_removes_a_stopped_run_and_refuses_live_runs_and_other_folders(tmp_path, sample_data):
    from fer_core.train import fit

    root = tmp_path / "runs"
    fit(TINY, root / "done", data=sample_data)
    assert {"best.pt", "last.pt", "status.json"} <= {p.name for p in (root / "done").iterdir()}
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "fer_core.train"])  # a live trainer
    try:
        (root / "live").mkdir()
        (root / "live" / "status.json").write_text(json.dumps({"state": "running", "pid": proc.pid, "epoch": 1}))
        with pytest.raises(jobs.JobError, match="live is running .* cancel it before deleting it"):
            jobs.delete_run(root / "live", root)
    finally:
        proc.kill()
        proc.wait()
    (root / "reports").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "status.json").write_text(json.dumps({"state": "finished"}))
    with pytest.raises(jobs.JobError, match="holds no training run"):
        jobs.delete_run(root / "reports", root)
    with pytest.raises(jobs.JobError, match="is not a run folder of"):
        jobs.delete_run(tmp_path / "elsewhere", root)
    with pytest.raises(jobs.JobError, match="is not a run folder of"):
        jobs.delete_run(root / "done" / ".." / ".." / "elsewhere", root)
    assert (root / "live").is_dir() and (root / "reports").is_dir() and (tmp_path / "elsewhere" / "status.json").exists()
    jobs.delete_run(root / "done", root)
    assert not (root / "done").exists() and [r.name for r in jobs.list_runs(root)] == ["live"]  # now interrupted


@pytest.mark.slow
def test_tiny_job_runs_to_finished(tmp_path):
    job = jobs.start_job(TINY, tmp_path, name="tiny")
    assert job.run_dir == tmp_path / "tiny" and job.pid > 0
    with pytest.raises(jobs.JobError, match="already exists"):
        jobs.start_job(TINY, tmp_path, name="tiny")
    info = jobs.wait_job(job.run_dir, timeout=120)
    assert info.state == "finished", (info.message, job.log.read_text())
    assert (info.epoch, info.epochs) == (1, 1) and 0.0 <= info.best_acc <= 1.0
    for name in ("config.json", "metrics.jsonl", "status.json", "last.pt", "best.pt", "job.json", "train.log"):
        assert (job.run_dir / name).exists(), name
    assert "epoch 1/1" in job.log.read_text()
    assert [r.name for r in jobs.list_runs(tmp_path)] == ["tiny"] and jobs.current_job(tmp_path) is None


@pytest.mark.slow
def test_bad_data_path_ends_as_failed_with_the_reason(tmp_path):
    job = jobs.start_job(TINY.replace(data=str(tmp_path / "nowhere.csv")), tmp_path / "runs", name="bad")
    info = jobs.wait_job(job.run_dir, timeout=120)
    assert info.state == "failed" and "not found" in info.message and info.resumable
    assert jobs.current_job(tmp_path / "runs") is None


@pytest.mark.slow
def test_one_job_at_a_time_cancel_then_resume(tmp_path):
    job = jobs.start_job(LONG, tmp_path, name="long")
    try:
        with pytest.raises(jobs.JobRunningError, match="long"):
            jobs.start_job(TINY, tmp_path, name="other")
        assert not (tmp_path / "other").exists()
        info = wait_for(job.run_dir, lambda i: i.state == "running" and i.epoch >= 1)
        assert jobs.current_job(tmp_path).name == "long"
        assert jobs.cancel_job(job.run_dir)
        info = jobs.wait_job(job.run_dir, timeout=60)
    finally:
        if jobs.read_run(job.run_dir).active:
            os.kill(job.pid, signal.SIGKILL)
    assert info.state == "stopped" and info.resumable and not jobs.cancel_job(job.run_dir)
    done = info.epoch
    again = jobs.resume_job(job.run_dir, epochs=done + 1)
    info = jobs.wait_job(again.run_dir, timeout=120)
    assert info.state == "finished" and info.epoch == done + 1
    assert [r["epoch"] for r in RunFolder(job.run_dir).read_metrics()] == list(range(done + 1))


@pytest.mark.slow
def test_killed_job_shows_interrupted_and_resumes(tmp_path):
    job = jobs.start_job(LONG, tmp_path, name="killed")
    try:
        wait_for(job.run_dir, lambda i: i.state == "running" and i.epoch >= 1)
    finally:
        os.kill(job.pid, signal.SIGKILL)  # no chance to write "stopped": the status still says running
    info = wait_for(job.run_dir, lambda i: not i.active, timeout=30)
    assert info.state == "interrupted" and info.resumable
    assert json.loads((job.run_dir / "status.json").read_text())["state"] == "running"
    assert jobs.current_job(tmp_path) is None
    again = jobs.resume_job(job.run_dir, epochs=info.epoch + 1)
    assert jobs.wait_job(again.run_dir, timeout=120).state == "finished"


def test_a_run_with_damaged_files_is_listed_and_resumes(tmp_path, sample_data, run_main):
    from fer_core.train import fit, main

    run = tmp_path / "runs" / "r"
    fit(TINY, run, data=sample_data)
    (run / "status.json").write_text('{"state": "fini')  # cut short by hand or by a full disk
    info = jobs.read_run(run)
    assert [r.name for r in jobs.list_runs(tmp_path / "runs")] == ["r"]  # not hidden as an empty folder
    assert info.state == "failed" and "status.json is not readable" in info.message and info.resumable
    (run / "status.json").write_text('{"state": "stopped", "epoch": "one", "epochs": null}')  # wrong types
    assert (jobs.read_run(run).epoch, jobs.read_run(run).epochs) == (0, 0)
    assert run_main(main, "--run", run, "--resume", "--epochs", 2).returncode == 0
    info = jobs.read_run(run)
    assert info.state == "finished" and info.epoch == 2 and info.message == "all epochs done"

    rows = RunFolder(run).read_metrics()
    del rows[0]["val_acc"]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 1: no number for val_acc"):
        RunFolder(run).read_metrics()
