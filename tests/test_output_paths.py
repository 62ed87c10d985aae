"""Where output goes: folders, pipes and devices are refused before any work, a failed write leaves nothing behind
and keeps the old file, an evaluation whose report cannot be written still prints its figures, and a CLI whose reader
leaves (`| head`) stops without a traceback."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fer_core.evaluate as evaluate
from fer_core import card, export, prune, soup
from fer_core.config import SAMPLE_DATA, OutputError, atomic_torch_save, atomic_write_json, read_json


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def _is_fifo(path: Path) -> bool:
    return stat.S_ISFIFO(path.lstat().st_mode)


def test_atomic_writes_refuse_a_pipe_or_a_folder_and_leave_nothing(tmp_path, fifo):
    folder = tmp_path / "reports"
    folder.mkdir()
    for target, words in ((fifo, "not a regular file"), (folder, "is a folder")):
        with pytest.raises(OutputError, match=words):
            atomic_write_json(target, {"a": 1})
        with pytest.raises(OutputError, match=words):
            atomic_torch_save({"a": torch.ones(1)}, target)
    assert _is_fifo(fifo) and folder.is_dir() and not list(folder.iterdir())  # os.replace would have swapped them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe", "reports"]  # no temporary files beside them


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    atomic_write_json(path, {"epoch": 3})

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        atomic_write_json(path, {"epoch": Unserialisable()})  # fails before anything is written

    def half_written(obj: object, f: Path) -> None:
        Path(f).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(OSError, match="No space left"):
        atomic_torch_save({"epoch": 4}, path)  # fails half-way through the temporary file
    assert read_json(path) == {"epoch": 3} and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_the_clis_refuse_a_pipe_or_a_folder_before_working(tmp_path, fifo, run_main, fast_checkpoint, monkeypatch):
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the work started although its output cannot be written")

    monkeypatch.setattr(evaluate, "evaluate_checkpoint", never)
    monkeypatch.setattr(soup, "soup", never)
    monkeypatch.setattr(prune, "prune_checkpoint", never)
    monkeypatch.setattr(export, "export_onnx", never)
    monkeypatch.setattr(card, "render", never)
    report = tmp_path / "r.json"
    report.write_text("{}")
    for main, args in ((evaluate.main, ["--checkpoint", fast_checkpoint, "--data", SAMPLE_DATA]),
                       (soup.main, [fast_checkpoint, fast_checkpoint]),
                       (prune.main, ["--checkpoint", fast_checkpoint, "--width", 16]),
                       (export.main, ["--checkpoint", fast_checkpoint]),
                       (card.main, ["--checkpoint", fast_checkpoint, "--reports", report])):
        for target, words in ((fifo, "not a regular file"), (tmp_path, "is a folder")):
            done = run_main(main, *args, "--out", target)
            assert done.returncode == 2, (main.__module__, done.stderr)
            assert words in done.stderr and "Traceback" not in done.stderr
    assert _is_fifo(fifo)


def test_an_evaluation_whose_report_cannot_be_written_still_prints_its_figures(tmp_path, run_main, fast_checkpoint,
                                                                                monkeypatch):
    def full_disk(path: object, obj: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluate, "atomic_write_json", full_disk)
    done = run_main(evaluate.main, "--checkpoint", fast_checkpoint, "--data", SAMPLE_DATA, "--out", tmp_path / "r.json")
    assert done.returncode == 1 and "cannot write the report" in done.stderr and "No space left" in done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["split"] == "PublicTest" and summary["n"] == 140 and 0.4 < summary["accuracy"] < 1


def test_predict_refuses_an_annotation_folder_that_is_a_file(tmp_path, run_main, fast_checkpoint):
    from fer_core.predict_cli import main as predict_main

    (tmp_path / "out").write_text("keep me")
    done = run_main(predict_main, "--checkpoint", fast_checkpoint, "--annotate", tmp_path / "out", SAMPLE_DATA)
    assert done.returncode == 2 and "is a file; give the folder for the annotated copies" in done.stderr
    assert (tmp_path / "out").read_text() == "keep me" and done.stdout == ""


@pytest.mark.parametrize("args", [["fer_core.train", "--list-models"],
                                  ["fer_core.evaluate", "--data", str(SAMPLE_DATA), "--threads", "1"]])
def test_a_cli_whose_reader_leaves_stops_without_a_traceback(args, fast_checkpoint):
    if args[0] == "fer_core.evaluate":
        args = [*args, "--checkpoint", str(fast_checkpoint)]
    read, write = os.pipe()
    os.close(read)  # `| head -0`: nobody reads, so the first flush fails
    done = subprocess.run([sys.executable, "-m", *args], stdout=write, stderr=subprocess.PIPE, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    os.close(write)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_every_cli_main_is_wrapped_for_a_reader_that_leaves():
    import importlib

    for name in ("train", "evaluate", "predict_cli", "calibrate", "soup", "prune", "card", "export"):
        main = importlib.import_module(f"fer_core.{name}").main
        assert main.__wrapped__.__module__ == f"fer_core.{name}", name  # functools.wraps of config.cli_main
