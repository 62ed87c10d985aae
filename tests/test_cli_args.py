"""Arguments every CLI shares: a bad --threads is a usage error (exit 2) before any work, never a torch failure."""

from __future__ import annotations

import importlib

import pytest

from fer_core.config import MAX_THREADS, SAMPLE_DATA

CLIS = {  # module: the arguments that make the rest of its command line valid
    "fer_core.evaluate": ["--data", str(SAMPLE_DATA)],
    "fer_core.calibrate": ["--checkpoint", "m.pt"],
    "fer_core.export": [],
    "fer_core.predict_cli": ["photo.jpg"],
    "fer_core.video_job": ["v.mp4", "--out", "job"],
}


@pytest.mark.parametrize("module", list(CLIS))
@pytest.mark.parametrize("threads, message", [("99999", f"expected 0 (all cores) up to {MAX_THREADS} threads, not 99999"),
                                              ("-1", "not -1"), ("two", "expected a whole number of threads, not 'two'")])
def test_bad_thread_counts_are_usage_errors(module, threads, message, run_main):
    # 99999 threads made torch fail to allocate, reported as "weights do not fit model" by evaluate
    r = run_main(importlib.import_module(module).main, *CLIS[module], "--threads", threads)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_train_refuses_absurd_thread_counts_too(tmp_path, run_main):
    from fer_core.train import main

    r = run_main(main, "--run", tmp_path / "r", "--data", SAMPLE_DATA, "--threads", 99999)
    assert r.returncode == 2 and f"threads (0 = all cores) must be 0 to {MAX_THREADS}, not 99999" in r.stderr
    assert not (tmp_path / "r").exists()
