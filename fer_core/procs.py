"""Detached `python -m fer_core...` subprocesses: launch, liveness, how one ended, its log, waiting for it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

_CHILDREN: dict[int, subprocess.Popen] = {}  # processes this interpreter started: polling them reaps zombies


def python_command(args: list[str]) -> list[str]:
    """`python -m ARGS` with this interpreter."""
    return [sys.executable, "-m", *args]


def launch(folder: Path, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
    """`python -m ARGS` in its own session (it outlives the dashboard), output appended to folder/log_name."""
    command = python_command(args)
    # Lines reach the log as they happen; a crash (SIGSEGV, SIGABRT...) leaves its Python traceback there.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    with open(folder / log_name, "ab") as log:  # the child keeps its own descriptor; ours closes here
        log.write(f"\n$ {' '.join(command)}\n".encode())
        log.flush()
        # A new session: the job survives the dashboard, and a Ctrl-C in its terminal does not reach it.
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=folder,
                                env=env, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    return proc


def pid_alive(pid: int | None) -> bool:
    """True while the process runs (zombies count as dead)."""
    if not pid or pid <= 0:
        return False
    if pid in _CHILDREN:
        return _CHILDREN[pid].poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited child of another Popen owner lingers as a zombie until reaped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def is_trainer(pid: int | None) -> bool:
    """Alive and running fer_core (guards against a recorded pid reused by an unrelated process)."""
    if not pid_alive(pid):
        return False
    try:
        return b"fer_core." in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid


def exit_note(pid: int | None) -> str:
    """How a process this interpreter started ended ("killed by SIGKILL", "exit code 1"); "" where unknown or running."""
    proc = _CHILDREN.get(pid or 0)
    code = proc.poll() if proc is not None else None
    if code is None:
        return ""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def log_tail(log: Path, lines: int = 3) -> list[str]:
    """The last non-blank lines of a job's log (none where it cannot be read)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.strip()][-lines:]


class _Status(Protocol):
    @property
    def state(self) -> str: ...
    @property
    def active(self) -> bool: ...


S = TypeVar("S", bound=_Status)


def wait_for(read: Callable[[Path], S], folder: str | os.PathLike[str], timeout: float = 120.0, poll: float = 0.2) -> S:
    """Block until `read(folder)` is no longer active (starting, running), or raise TimeoutError; its last status."""
    deadline = time.monotonic() + timeout
    while (status := read(Path(folder))).active:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{folder}: still {status.state} after {timeout:.0f} s")
        time.sleep(poll)
    return status
