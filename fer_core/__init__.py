"""fer_core: facial expression recognition on FER2013-style data (data, models, training, evaluation)."""

from .checkpoint import CheckpointError, LoadedModel, load_model
from .config import EMOTIONS, NUM_CLASSES, SPLITS, DataNotFoundError, TrainConfig, set_seed
from .data import DataError, FERData, load_dataset
from .evaluate import evaluate_checkpoint, predict_probs
from .models import build_model, count_params, list_models
from .train import fit

__all__ = [
    "EMOTIONS", "NUM_CLASSES", "SPLITS", "CheckpointError", "DataError", "DataNotFoundError", "FERData", "LoadedModel",
    "TrainConfig", "build_model", "count_params", "evaluate_checkpoint", "fit", "list_models", "load_dataset", "load_model",
    "predict_probs", "set_seed",
]
