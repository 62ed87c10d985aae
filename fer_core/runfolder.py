"""A training run's folder (config, metrics, status and checkpoints, written atomically) and its stop flag."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from .config import atomic_write_bytes, atomic_write_json

METRIC_KEYS = ("epoch", "train_seconds", "val_acc")  # what every reader of metrics.jsonl relies on


class Stopper:
    """Turns SIGINT/SIGTERM into a flag the loop checks between batches, so a stop never tears a file."""

    def __init__(self) -> None:
        self.stop = False

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.stop = True


class RunFolder:
    """A run's files: config.json, metrics.jsonl, status.json, last.pt, best.pt (all written atomically)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    def write_status(self, **status: Any) -> None:
        atomic_write_json(self.file("status.json"), {"pid": os.getpid(), "updated": time.time(), **status})

    def read_metrics(self) -> list[dict[str, Any]]:
        """The epochs' rows; ValueError naming the file and line if one is not a JSON object (the file is left as it is)."""
        p = self.file("metrics.jsonl")
        rows = []
        for n, line in enumerate(p.read_text(errors="replace").splitlines() if p.exists() else [], 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}, line {n}: not valid JSON ({e.msg}); repair or delete that line") from e
            if not isinstance(row, dict):
                raise ValueError(f"{p}, line {n}: expected one JSON object per epoch, found {type(row).__name__}")
            if missing := [k for k in METRIC_KEYS if not isinstance(row.get(k), int | float)]:
                raise ValueError(f"{p}, line {n}: no number for {', '.join(missing)}")
            rows.append(row)
        return rows

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_bytes(self.file("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in rows).encode())
