"""fer_core: facial expression recognition on FER2013-style data (data, models, training, evaluation)."""

from __future__ import annotations

import importlib
from typing import Any

from .config import EMOTIONS, NUM_CLASSES, SPLITS, DataNotFoundError, TrainConfig, set_seed

# Re-exports resolved on first use, so `python -m fer_core.train` does not import its own module twice.
_LAZY = {
    "CheckpointError": "checkpoint", "LoadedModel": "checkpoint", "load_model": "checkpoint",
    "DataError": "data", "FERData": "data", "load_dataset": "data",
    "evaluate_checkpoint": "evaluate", "predict_probs": "evaluate",
    "predict_image": "predict", "predict_files": "predict", "annotate": "predict", "face_names": "predict",
    "load_image": "images",
    "predict_video": "video",
    "build_model": "models", "count_params": "models", "list_models": "models",
    "fit": "train", "lr_range_test": "lrfind",
    "compare_reports": "compare", "read_report": "compare",
}

__all__ = ["EMOTIONS", "NUM_CLASSES", "SPLITS", "DataNotFoundError", "TrainConfig", "set_seed", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'fer_core' has no attribute {name!r}")
