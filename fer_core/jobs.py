"""Training and evaluation jobs as detached subprocesses: start, list, cancel, resume; one training job at a time."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .checks import check_config
from .config import TrainConfig, atomic_write_json, read_json
from .distill import teacher_paths
from .procs import exit_note, is_trainer, launch, log_tail, python_command, wait_for
from .train import init_recipe

RUNS_ENV = "FER_RUNS"  # where runs live when no folder is given
LOCK_NAME = ".train.lock"  # in the runs root: {"run", "pid", "started"} of the one training job allowed
JOB_FILE = "job.json"  # in a run folder: how the job was started (pid, command, train flags)
LOG_FILE = "train.log"
START_GRACE_S = 30.0  # a lock written by a starter that has no child pid yet counts as held this long
ACTIVE = ("starting", "running")  # states with a live process behind them
_START_LOCK = threading.Lock()  # dashboard sessions are threads of one process: serialise their starts


class JobError(RuntimeError):
    """A job cannot be started, resumed or found; the message says why."""


class JobRunningError(JobError):
    """Another training job holds the lock; its run is named in the message."""

    def __init__(self, run: str, pid: int) -> None:
        super().__init__(f"a training job is already running: {Path(run).name} (pid {pid}, {run}); "
                         "cancel it or wait for it to finish before starting another")
        self.run, self.pid = run, pid


@dataclass
class Job:
    """A started subprocess and the run folder it writes."""

    run_dir: Path
    pid: int
    command: list[str]
    log: Path

    @property
    def name(self) -> str:
        return self.run_dir.name


@dataclass
class RunInfo:
    """One run folder as the registry sees it: status.json plus liveness of its process."""

    name: str
    path: Path
    state: str  # starting, running, finished, stopped, failed, interrupted (status said running, process gone)
    epoch: int = 0  # completed epochs
    epochs: int = 0
    best_acc: float | None = None
    best_epoch: int | None = None
    pid: int | None = None
    started: float | None = None
    updated: float | None = None
    eta_s: float | None = None
    last: dict[str, Any] = field(default_factory=dict)  # last metrics row
    config: dict[str, Any] = field(default_factory=dict)
    message: str = ""  # reason for finishing, or the error

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def resumable(self) -> bool:
        return self.state in ("stopped", "interrupted", "failed") and (
            (self.path / "last.pt").exists() or (self.path / JOB_FILE).exists())


def resolve_runs_root(path: str | os.PathLike[str] | None = None) -> Path:
    """The runs folder: the argument, $FER_RUNS, or ~/fer_runs."""
    p = path if path not in (None, "") else os.environ.get(RUNS_ENV) or Path.home() / "fer_runs"
    return Path(p).expanduser().resolve()


def absolute(path: str) -> str:
    """`path` with ~ expanded, made absolute."""
    return str(Path(path).expanduser().resolve())


LRFIND_DIR = "lrfind"  # learning-rate range tests started from the Train page, beside the runs


def train_args(cfg: TrainConfig) -> list[str]:
    """CLI flags that make `python -m fer_core.train` train exactly cfg: the fields that differ from what the child
    starts from (the defaults, or with cfg.init that checkpoint's recipe), plus data and checkpoints made absolute."""
    default, args = (init_recipe(cfg.init) if cfg.init else TrainConfig()), []
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if f.name in ("data", "init") and value:
            value = absolute(value)  # the child runs in another folder
        elif f.name == "teacher" and value:
            value = ",".join(absolute(p) for p in teacher_paths(value))
        elif value == getattr(default, f.name):
            continue
        args += [f"--{f.name.replace('_', '-')}", str(value).lower() if isinstance(value, bool) else str(value)]
    return args


# ---------------------------------------------------------------------------------------------- lock


def _lock_holder(root: Path) -> tuple[str, int] | None:
    """(run, pid) of the live job holding the lock, or None (no lock, or a stale one)."""
    lock = read_json(root / LOCK_NAME)
    if lock is None:
        return None
    pid = lock.get("pid")
    if pid is None and time.time() - lock.get("started", 0) < START_GRACE_S:
        return lock.get("run", "?"), lock.get("owner", 0)  # its starter is between writing the lock and Popen
    return (lock.get("run", "?"), pid) if pid is not None and is_trainer(pid) else None


def _acquire(root: Path, run_dir: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    lock = root / LOCK_NAME
    tmp = root / f".lock.{os.getpid()}.{threading.get_ident()}.tmp"
    atomic_write_json(tmp, {"run": str(run_dir), "pid": None, "owner": os.getpid(), "started": time.time()})
    try:
        for _ in range(2):
            try:
                os.link(tmp, lock)  # atomic create-if-absent with complete content
                return
            except FileExistsError:
                holder = _lock_holder(root)
                if holder is not None:
                    raise JobRunningError(*holder) from None
                lock.unlink(missing_ok=True)  # stale: its job ended
        raise JobError(f"could not take the job lock {lock}")
    finally:
        tmp.unlink(missing_ok=True)


def current_job(root: str | os.PathLike[str] | None = None) -> RunInfo | None:
    """The live training job of this runs folder: the lock holder, or a run started without the lock (plain CLI)."""
    root = resolve_runs_root(root)
    holder = _lock_holder(root)
    if holder and Path(holder[0]).is_dir():
        return read_run(holder[0])
    return next((r for r in list_runs(root) if r.active), None)


# ---------------------------------------------------------------------------------------------- start / stop


def _start(root: Path, run_dir: Path, flags: list[str], resume: bool) -> Job:
    with _START_LOCK:
        _acquire(root, run_dir)
        try:
            # A run started from the command line holds no lock, but it uses the same cores.
            other = next((r for r in list_runs(root) if r.active and r.path.resolve() != run_dir.resolve()), None)
            if other is not None:
                raise JobRunningError(str(other.path), other.pid or 0)
            args = ["fer_core.train", "--run", str(run_dir), *flags, *(["--resume"] if resume else []), "--quiet"]
            proc = launch(run_dir, args, LOG_FILE)
        except BaseException:
            (root / LOCK_NAME).unlink(missing_ok=True)
            raise
        job = {"pid": proc.pid, "command": python_command(args), "flags": flags, "started": time.time()}
        atomic_write_json(run_dir / JOB_FILE, job)
        atomic_write_json(root / LOCK_NAME, {"run": str(run_dir), "pid": proc.pid, "started": job["started"]})
    return Job(run_dir=run_dir, pid=proc.pid, command=python_command(args), log=run_dir / LOG_FILE)


def start_job(cfg: TrainConfig, runs_root: str | os.PathLike[str] | None = None, name: str | None = None) -> Job:
    """Start `python -m fer_core.train` for cfg in a new run folder; raises JobRunningError if a job runs."""
    check_config(cfg)  # the settings the child would refuse, refused here with nothing started
    root = resolve_runs_root(runs_root)
    name = name or f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model}{cfg.width}"
    if not name or Path(name).name != name or name.startswith("."):
        raise JobError(f"run name {name!r} must be a plain folder name")
    run_dir = root / name
    if (run_dir / JOB_FILE).exists() or (run_dir / "status.json").exists():
        raise JobError(f"run {name!r} already exists in {root}; resume it or choose another name")
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _start(root, run_dir, train_args(cfg), resume=False)
    except BaseException:
        if not any(run_dir.iterdir()):
            run_dir.rmdir()  # leave no empty run behind a refused start
        raise


def resume_job(run_dir: str | os.PathLike[str], epochs: int | None = None) -> Job:
    """Continue a run from its last.pt (epochs = a new total, to train a finished run longer)."""
    run_dir = Path(run_dir).resolve()
    info = read_run(run_dir)
    if info.active:
        raise JobRunningError(str(run_dir), info.pid or 0)
    job = read_json(run_dir / JOB_FILE) or {}
    if not (run_dir / "last.pt").exists() and "flags" not in job:
        raise JobError(f"{run_dir}: nothing to resume (no last.pt and no job.json)")
    # The original flags rebuild the config when no epoch finished; with last.pt the trainer takes it from there.
    flags = list(job.get("flags", []))
    if epochs is not None:
        flags += ["--epochs", str(epochs)]
    return _start(run_dir.parent, run_dir, flags, resume=True)


def cancel_job(run_dir: str | os.PathLike[str]) -> bool:
    """Ask the run's trainer to stop (SIGTERM: it finishes the batch, saves and exits). False if none is alive."""
    info = read_run(run_dir)
    if info.pid is None or not info.active or not is_trainer(info.pid):
        return False
    os.kill(info.pid, signal.SIGTERM)
    return True


def start_lrfind(cfg: TrainConfig, runs_root: str | os.PathLike[str] | None = None, steps: int = 300) -> tuple[Job, Path]:
    """Run `python -m fer_core.lrfind` for cfg detached (about a minute for 300 steps); its JSON result appears at the
    returned path, in RUNS/lrfind/ (a folder the run list ignores)."""
    check_config(cfg)
    if steps < 10:
        raise JobError(f"the learning-rate finder needs at least 10 steps, not {steps}")
    folder = resolve_runs_root(runs_root) / LRFIND_DIR
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.model}{cfg.width}.json"
    args = ["fer_core.lrfind", *train_args(cfg), "--steps", str(steps), "--out", str(out)]
    log = out.with_suffix(".log").name
    proc = launch(folder, args, log_name=log)
    return Job(run_dir=folder, pid=proc.pid, command=python_command(args), log=folder / log), out


def delete_run(run_dir: str | os.PathLike[str], runs_root: str | os.PathLike[str] | None = None) -> None:
    """Delete a run folder of the runs root, checkpoints and all; JobError for a live run or anything not a run there."""
    root, run_dir = resolve_runs_root(runs_root), Path(run_dir).resolve()
    if run_dir.parent != root or run_dir.name.startswith(".") or not run_dir.is_dir():
        raise JobError(f"{run_dir} is not a run folder of {root}")
    with _START_LOCK:  # no resume of it can start in between
        info = read_run(run_dir)
        if info.active:
            raise JobError(f"run {info.name} is {info.state} (pid {info.pid}): cancel it before deleting it")
        if info.state == "empty":
            raise JobError(f"{run_dir} holds no training run (no status.json or job.json); left as it is")
        shutil.rmtree(run_dir)


def start_evaluation(checkpoint: str | os.PathLike[str], data: str | os.PathLike[str], split: str, out: str | os.PathLike[str],
                     tta: str = "none", labels: str = "fer2013", precision: str = "fp32", corruption: str = "none") -> Job:
    """Run `python -m fer_core.evaluate ... --out` detached; the report appears at `out` when it is done."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    args = ["fer_core.evaluate", "--checkpoint", str(Path(checkpoint).resolve()), "--data", str(Path(data).resolve()),
            "--split", split, "--tta", tta, "--labels", labels, "--precision", precision, "--corruption", corruption,
            "--out", str(out)]
    log = evaluation_log(out)
    proc = launch(out.parent, args, log_name=log.name)
    return Job(run_dir=out.parent, pid=proc.pid, command=python_command(args), log=log)


def evaluation_log(out: Path) -> Path:
    """The log start_evaluation writes beside its report `out` (X.report.json -> X.report.log)."""
    return out.with_name(out.name.removesuffix(".json") + ".log")


# ---------------------------------------------------------------------------------------------- registry


def read_run(run_dir: str | os.PathLike[str]) -> RunInfo:
    """RunInfo from status.json, job.json and config.json, with the process checked for liveness."""
    run_dir = Path(run_dir)
    job = read_json(run_dir / JOB_FILE) or {}
    status = read_json(run_dir / "status.json") or {}
    pid = job.get("pid") or status.get("pid")
    if not (alive := is_trainer(pid)):  # read again: a run that wrote its last status and ended meanwhile is not interrupted
        status = read_json(run_dir / "status.json") or {}
    damaged = not status and (run_dir / "status.json").exists()  # unreadable: show the run as failed, never hide it
    saved = status.get("state")
    if alive:  # a resumed job runs before it rewrites status.json (loading data takes seconds)
        state = "running" if saved == "running" and status.get("pid") == pid else "starting"
    elif saved == "running" or (saved is None and not job and not damaged):
        state = "interrupted" if saved else "empty"
    else:
        state = saved or "failed"  # job.json but no status: the trainer died before its first write
    message = status.get("error") or status.get("reason") or ""
    if damaged:
        message = "status.json is not readable (damaged or edited by hand); resuming from last.pt rewrites it"
    if state in ("failed", "interrupted") and not message:
        message = "\n".join([*log_tail(run_dir / LOG_FILE), *([note] if (note := exit_note(pid)) else [])])
    whole = lambda key: v if isinstance(v := status.get(key), int) and v >= 0 else 0  # a hand edit may leave anything
    return RunInfo(name=run_dir.name, path=run_dir, state=str(state), epoch=whole("epoch"), epochs=whole("epochs"),
                   best_acc=status.get("best_acc"), best_epoch=status.get("best_epoch"), pid=pid,
                   started=job.get("started") or status.get("started"), updated=status.get("updated"),
                   eta_s=status.get("eta_s"), last=status.get("last") or {},
                   config=read_json(run_dir / "config.json") or {}, message=message)


def list_runs(root: str | os.PathLike[str] | None = None) -> list[RunInfo]:
    """Every run folder under the runs root, newest first."""
    root = resolve_runs_root(root)
    if not root.is_dir():
        return []
    runs = [read_run(p) for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    runs = [r for r in runs if r.state != "empty"]
    return sorted(runs, key=lambda r: r.started or r.updated or 0.0, reverse=True)


def wait_job(run_dir: str | os.PathLike[str], timeout: float = 120.0, poll: float = 0.2) -> RunInfo:
    """Block until the run is no longer starting/running, or raise TimeoutError."""
    return wait_for(read_run, run_dir, timeout, poll)
