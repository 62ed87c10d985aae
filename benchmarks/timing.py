"""Shared helpers of the benchmark scripts (run them as `python benchmarks/NAME.py`): timing, and the model and faces
of one split for the photo-path benchmarks."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np


def time_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> tuple[float, float]:
    """(median, min) milliseconds of fn() over `repeats` runs, after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), min(times)


def add_split_args(p: argparse.ArgumentParser) -> None:
    """--checkpoint, --data and --split, as the photo-path benchmarks (tilt.py, group.py) take them."""
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--data", default=None, help="FER2013 CSV (default: as the CLIs find it)")
    p.add_argument("--split", default="PublicTest")


def split_faces(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The (N, 48, 48) uint8 faces and (N,) labels of args.split; a clear exit where the data is missing."""
    from fer_core.config import DataNotFoundError
    from fer_core.data import load_dataset

    try:
        x, y = load_dataset(args.data).split(args.split)
    except (DataNotFoundError, KeyError) as e:
        sys.exit(str(e))
    return x.numpy(), y.numpy()
