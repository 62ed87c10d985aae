"""Shared fixtures: the committed real sample, the full data when present, one thread per test process."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from fer_core.config import DEFAULT_DATA_CANDIDATES, REPO_ROOT, SAMPLE_DATA

torch.set_num_threads(1)  # tests share 2 cores with whatever else runs; results don't depend on it

FULL_DATA = next((p for p in DEFAULT_DATA_CANDIDATES if p.exists()), None)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # The parsed-CSV cache is shared per test session, never the user's ~/.cache.
    monkeypatch.setenv("FER_CACHE", str(tmp_path_factory.getbasetemp() / "fer_cache"))


@pytest.fixture(autouse=True)
def _restore_process_state():
    # A CLI's main() called in-process (run_main) may set torch's threads or install signal handlers: undo both.
    threads, handlers = torch.get_num_threads(), {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    torch.set_num_threads(threads)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@pytest.fixture
def run_main(capsys: pytest.CaptureFixture[str]) -> Callable[..., subprocess.CompletedProcess]:
    """Run a CLI's main(argv) in this process, as `python -m` would (exit code, stdout, stderr) but without starting
    an interpreter and importing torch again (~5 s each): for the error paths. Every CLI also has a real subprocess test."""

    def run(main: Callable[[list[str]], int], *args: object) -> subprocess.CompletedProcess:
        argv = [str(a) for a in args]
        capsys.readouterr()
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's usage errors
            code = e.code if isinstance(e.code, int) else 1
        out = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, out.out, out.err)

    return run


@pytest.fixture(scope="session")
def sample_path() -> Path:
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def sample_data():
    from fer_core.data import load_csv

    return load_csv(SAMPLE_DATA, cache=False)


@pytest.fixture(scope="session")
def full_data_path() -> Path:
    if FULL_DATA is None and not os.environ.get("FER_DATA"):
        pytest.skip("full FER2013 data not present (../shared/data/fer2013.csv.gz or $FER_DATA)")
    return Path(os.environ.get("FER_DATA") or FULL_DATA)


@pytest.fixture(scope="session")
def fast_checkpoint() -> Path:
    """The smallest shipped model (fer_fast.pt): tests of a mechanism (calibration, TTA, threads, CLI flags) run
    several times faster on it than on the default ResNet; tests about the default model itself load the default."""
    return REPO_ROOT / "checkpoints" / "fer_fast.pt"
