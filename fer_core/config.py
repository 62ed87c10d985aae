"""Shared constants, the frozen training config, data-path resolution and seeding."""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(EMOTIONS)
IMAGE_SIZE = 48
SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")

REPO_ROOT = Path(__file__).resolve().parent.parent
# Where to look for data when neither --data nor FER_DATA is given: the shared folder beside the repo,
# then a data/ folder inside it.
DEFAULT_DATA_CANDIDATES: tuple[Path, ...] = (
    REPO_ROOT.parent / "shared" / "data" / "fer2013.csv.gz",
    REPO_ROOT.parent / "shared" / "data" / "fer2013.csv",
    REPO_ROOT / "data" / "fer2013.csv.gz",
    REPO_ROOT / "data" / "fer2013.csv",
)
SAMPLE_DATA = REPO_ROOT / "tests" / "data" / "fer2013.csv.gz"  # 560 real images (benchmarks/make_sample.py)
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "fer_resnet.pt"
_T = TypeVar("_T")


class DataNotFoundError(FileNotFoundError):
    """Raised when no dataset can be found; its message says where to put the data."""


def data_help(tried: list[Path] | None = None) -> str:
    """Explain where the data goes (used by every CLI and the dashboard)."""
    lines = [
        "FER2013 data not found.",
        "Get fer2013.csv (Kaggle layout: emotion,pixels,Usage; .csv or .csv.gz) or an image folder",
        "(<split>/<emotion>/*.png) and either",
        "  * pass it explicitly:      --data /path/to/fer2013.csv.gz",
        "  * set the environment:     export FER_DATA=/path/to/fer2013.csv.gz",
        f"  * or put it at:            {DEFAULT_DATA_CANDIDATES[0]}",
        f"                             {DEFAULT_DATA_CANDIDATES[2]}",
    ]
    if tried:
        lines.append("Looked at: " + ", ".join(str(p) for p in tried))
    return "\n".join(lines)


def resolve_data_path(path: str | os.PathLike[str] | None = None) -> Path:
    """Return the dataset path from the argument, $FER_DATA, or the default locations."""
    if path is not None and str(path) != "":
        p = Path(path).expanduser()
        if not p.exists():
            raise DataNotFoundError(data_help([p]))
        return p
    env = os.environ.get("FER_DATA")
    if env:
        p = Path(env).expanduser()
        if not p.exists():
            raise DataNotFoundError(data_help([p]) + "\n(FER_DATA is set but points nowhere)")
        return p
    for p in DEFAULT_DATA_CANDIDATES:
        if p.exists():
            return p
    raise DataNotFoundError(data_help(list(DEFAULT_DATA_CANDIDATES)))


def _field(default: _T, help: str) -> _T:
    """A TrainConfig field and its description (printed by `fer-train --help`)."""
    return field(default=default, metadata={"help": help})  # type: ignore[no-any-return]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved as a dict inside every checkpoint."""

    data: str = _field("", "dataset: a FER2013 CSV (.csv/.csv.gz) or an image folder (default: $FER_DATA or ../shared/data)")
    labels: str = _field("fer2013", "fer2013 (the original labels) or ferplus (the majority of the FER+ votes)")
    model: str = _field("vgg", "architecture, a name in the model registry (--list-models)")
    width: int = _field(32, "channels of the first stage (doubled per stage)")
    drop_rate: float = _field(0.3, "dropout before the classifier, 0 to below 1")
    epochs: int = _field(60, "number of epochs (the length of the schedule)")
    batch_size: int = _field(128, "images per SGD step")
    lr: float = _field(0.05, "peak learning rate")
    momentum: float = _field(0.9, "Nesterov momentum, 0 to below 1")
    weight_decay: float = _field(5e-4, "L2 on conv and linear weights (not on norms and biases)")
    label_smoothing: float = _field(0.1, "cross-entropy label smoothing, 0 to below 1")
    schedule: str = _field("cosine", "cosine (after a linear warmup), step (/10 at 50% and 75%) or constant")
    warmup_epochs: int = _field(2, "linear warmup of the cosine schedule, in epochs")
    patience: int = _field(15, "stop after this many epochs without a better validation accuracy (0 = off)")
    class_weights: bool = _field(False, "weight the loss by inverse class frequency (true/false)")
    crop_size: int = _field(44, "random training crop, 16 to 48 px; evaluation uses the centre crop of this size")
    augment: str = _field("standard", "augmentation strength: none, light, standard or strong")
    erasing: float = _field(0.5, "probability of random erasing per image, 0 to 1")
    mixup: float = _field(0.0, "mixup alpha (0 = off)")
    degrade: float = _field(0.0, "probability per image of a photo degradation: blur (sigma 0.5-1.2 px), low resolution "
                                 "(16-30 px) or noise (up to 15 grey levels), 0 to 1")
    jpeg: float = _field(0.0, "probability per image of JPEG compression (quality 10-40, as an 8 x 8 DCT quantisation of "
                             "the batch), after --degrade, 0 to 1")
    soft_labels: float = _field(0.0, "weight of each image's FER+ vote shares in its training target, 0 to 1 "
                                     "(needs fer2013new.csv)")
    teacher: str = _field("", "distil from this checkpoint's outputs on each augmented batch; a.pt,b.pt = their mean")
    distill: float = _field(0.0, "weight of the teacher's term in the loss, 0 to 1 (the label loss gets the rest)")
    distill_t: float = _field(2.0, "softmax temperature of the teacher's term")
    ema: float = _field(0.0, "per-step decay of an average of the weights, evaluated and saved as best.pt (0 = off)")
    val_split: str = _field("PublicTest", "split for model selection and early stopping (PublicTest or PrivateTest; "
                                          "without it in the data, every 10th Training image)")
    limit: int = _field(0, "train on the first N training images only (0 = all; for smoke runs)")
    seed: int = _field(0, "seeds the model init, batch order and augmentation")
    threads: int = _field(0, "torch intra-op threads (0 = all cores)")
    channels_last: bool = _field(True, "NHWC memory format, faster convolutions on CPU (true/false)")
    precision: str = _field("fp32", "fp32, or bf16: bfloat16 autocast for the training forward (fp32 master weights)")
    init: str = _field("", "start from this checkpoint's weights and normalisation (fresh optimizer and schedule)")
    device: str = _field("cpu", "cpu or cuda (training only; checkpoints load and evaluate on the CPU)")

    @classmethod
    def help(cls, name: str) -> str:
        """A field's description, as a sentence (the Train page's tooltips; `fer-train --help` prints the same)."""
        text: str = next(f for f in fields(cls) if f.name == name).metadata["help"]
        return text[:1].upper() + text[1:]

    def replace(self, **changes: Any) -> TrainConfig:
        """Return a copy with some fields changed (unknown names raise TypeError)."""
        from dataclasses import replace

        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring keys this version does not know (old checkpoints)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class Recipe:
    """A named starting point for a run (`train --recipe NAME`, the Train page's "Recipe"): fields that differ from
    TrainConfig's defaults, and what to expect from them."""

    summary: str
    changes: tuple[tuple[str, Any], ...]

    def config(self, base: TrainConfig | None = None) -> TrainConfig:
        return (base or TrainConfig()).replace(**dict(self.changes))


_HOUR = (("model", "vgg"), ("width", 32), ("warmup_epochs", 1), ("soft_labels", 0.3), ("patience", 0))
RECIPES: dict[str, Recipe] = {
    "try": Recipe("a first look at the workbench: the small net for 10 epochs, a curve within minutes on 2 cores",
                  (("model", "small"), ("width", 16), ("epochs", 10))),
    "hour": Recipe("an hour of 2 CPU cores: vgg width 32, a 20-epoch cosine with FER+ soft labels; 64.7% PublicTest after "
                   "60 min of SGD on a 2-core Zen 3 in float32 (60% at epoch 6, 19 min)", _HOUR + (("epochs", 20),)),
    "t65": Recipe("65% on 2 CPU cores: the hour recipe as a 30-epoch cosine; 65.7% PublicTest at epoch 19 (53 min of SGD on "
                  "a 2-core Zen 3 in float32; 16 min with --precision bf16 on 2 AMX cores), best 67.4% at epoch 25",
                  _HOUR + (("epochs", 30),)),
    "fer_vgg": Recipe("the first cycle of the shipped fer_vgg.pt: vgg width 48, 60 epochs, 69.30% PublicTest (65% at "
                      "epoch 22; 1.7 h on 2 AVX512-BF16 cores with --precision bf16, about 2.5x that in float32)",
                      (("model", "vgg"), ("width", 48), ("epochs", 60), ("warmup_epochs", 3), ("patience", 20))),
}


def cli_prog(module: str) -> str:
    """The name a CLI's usage line shows: its console script (fer-train ...) when run as one, else `python -m module`."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.startswith("fer-") else f"python -m {module}"


class CliMain(Protocol):
    def __call__(self, argv: list[str] | None = None) -> int: ...


def cli_main(main: CliMain) -> CliMain:
    """Decorates a CLI's main: when the reader of its output leaves (`fer-predict photos/ --json | head -1`), stop with
    exit code 1 and no traceback, as Unix tools do."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        try:
            code = main(argv)
            sys.stdout.flush()  # output still buffered fails here, not in the interpreter's exit
            return code
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush does not fail again
            return 1

    return run


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch in one place."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


MAX_THREADS = 256  # far above any core count here; 99999 made torch fail to allocate with a misleading message


def thread_count(text: str) -> int:
    """argparse `type` of the CLIs' --threads: 0 (every core) up to MAX_THREADS; anything else is a usage error."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of threads, not {text!r}") from None
    if not 0 <= n <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected 0 (all cores) up to {MAX_THREADS} threads, not {n}")
    return n


def parse_bool(text: str) -> bool:
    """argparse type of the true/false flags: true/false, yes/no, 1/0 (any case); anything else is refused."""
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")
    return value


def set_threads(threads: int = 0) -> int:
    """Use `threads` intra-op threads (0 = every available core); returns the number set."""
    n = threads if threads > 0 else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def tune_allocator(mmap_bytes: int = 64 << 20, keep_bytes: int = 1 << 30) -> bool:
    """Let glibc malloc reuse freed activation memory instead of handing it back; returns whether it applied.

    By default glibc gives blocks over 32 MB back with munmap and trims the heap's free top above 64 MB, so every
    SGD step gets its activations as fresh pages and page-faults them in again (on a 2-core Zen 3, with in-place
    ReLUs, `vgg` width 32 trained 5-12% faster without that). Blocks up to `mmap_bytes` then come from the heap, and
    up to `keep_bytes` of free heap stay mapped. Process-wide; a no-op off glibc or with FER_TUNE_MALLOC=0.
    """
    if not sys.platform.startswith("linux") or os.environ.get("FER_TUNE_MALLOC", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError):
        return False
    mmap_set = mallopt(_M_MMAP_THRESHOLD, mmap_bytes)
    trim_set = mallopt(_M_TRIM_THRESHOLD, keep_bytes)  # set even if the first was refused
    return bool(mmap_set and trim_set)


class OutputError(OSError):
    """A path that cannot take a file written through a rename (a folder, device, pipe or terminal is there)."""


def output_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a file cannot be written at `path` by a rename, or None. os.replace would swap a device such as /dev/null,
    a pipe or /dev/stdout for a plain file (as root, in /dev), and cannot replace a folder."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder; give the path of the file to write"
    if path.exists() and not path.is_file():
        return f"{path} is not a regular file (a device, pipe or terminal); give the path of a file to write"
    return None


def output_file(path: str) -> str:
    """argparse `type` of a CLI's --out file: a folder, pipe or device there is a usage error (exit 2) before any work."""
    if problem := output_problem(path):
        raise argparse.ArgumentTypeError(problem)
    return path


@contextmanager
def _atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path` to write, renamed onto `path` when the block succeeds and removed if it fails."""
    path = Path(path)
    if problem := output_problem(path):
        raise OutputError(problem)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a file so readers see the old or the new content, never a partial one (OutputError where `path` is not a
    file's place)."""
    with _atomic_target(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def load_json_file(path: str | os.PathLike[str], error: type[Exception] = ValueError, label: str = "") -> Any:
    """The JSON in a file a user named (--config, a report); `error` with a clear message when the file is missing or
    not readable JSON, under `label` (default: the path)."""
    label = label or str(path)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{label}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{label}: not a readable JSON file ({e})") from None


def read_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A JSON object written by atomic_write_json, or None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None  # missing, or unreadable (an old non-atomic writer): treat as absent
    return data if isinstance(data, dict) else None


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """torch.save through a temporary file and os.replace (OutputError where `path` is not a file's place)."""
    with _atomic_target(path) as tmp:
        torch.save(obj, tmp)
