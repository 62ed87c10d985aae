"""Loading FER2013-style data (Kaggle CSV, image folders, FER+ votes) into uint8 tensors, with a cache."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import EMOTIONS, IMAGE_SIZE, NUM_CLASSES, SPLITS, resolve_data_path

PIXELS = IMAGE_SIZE * IMAGE_SIZE
CSV_COLUMNS = ("emotion", "pixels", "Usage")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# Folder names of the common image-folder exports, mapped to the Kaggle Usage names.
SPLIT_ALIASES = {
    "training": "Training", "train": "Training",
    "publictest": "PublicTest", "val": "PublicTest", "valid": "PublicTest", "validation": "PublicTest",
    "privatetest": "PrivateTest", "test": "PrivateTest",
}
EMOTION_ALIASES = {name: i for i, name in enumerate(EMOTIONS)} | {
    "anger": 0, "disgusted": 1, "fearful": 2, "happiness": 3, "sadness": 4, "surprised": 5,
} | {str(i): i for i in range(NUM_CLASSES)}
# FER+ vote columns in file order, and where each lands in EMOTIONS (None = not one of our classes).
FERPLUS_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF")
FERPLUS_TO_EMOTION = (6, 3, 5, 4, 0, 1, 2, None, None, None)
CACHE_VERSION = 1


class DataError(ValueError):
    """A dataset file is malformed; the message names the file and, where it applies, the row."""


class SplitError(DataError, KeyError):
    """The data has no such split (a KeyError too, for callers that look splits up); printed without KeyError's quotes."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class FERData:
    """Images `(N, 48, 48)` uint8 and labels `(N,)` int64 per split, in file order."""

    images: dict[str, torch.Tensor]
    labels: dict[str, torch.Tensor]
    source: str = ""
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. FER+ vote distributions

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if s in self.images] + [s for s in self.images if s not in SPLITS]

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of one split; a clear error lists the splits present."""
        if name not in self.images:
            raise SplitError(f"split {name!r} is not in {self.source or 'the data'}; it has {', '.join(self.splits)}")
        return self.images[name], self.labels[name]

    def class_counts(self) -> dict[str, list[int]]:
        """Number of images per class (in EMOTIONS order) for each split."""
        return {s: torch.bincount(self.labels[s], minlength=NUM_CLASSES).tolist() for s in self.splits}


# ---------------------------------------------------------------------------------------------- CSV
def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"  # trust the bytes, not the file name
    if gzipped:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def parse_pixels(text: str, where: str = "") -> np.ndarray:
    """Parse one space-separated pixel string into a (48, 48) uint8 array, or raise DataError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # older numpy warns and stops at a bad token; the size check catches it
            values = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:  # numpy >= 2.3 raises on a non-integer token
        raise DataError(f"{where}: pixels must be {PIXELS} integers (48x48) in 0..255; found a non-integer value") from None
    if values.size != PIXELS or len(text.split()) != PIXELS:
        raise DataError(f"{where}: pixels must be {PIXELS} integers (48x48), got {len(text.split())} values")
    if values.min() < 0 or values.max() > 255:
        raise DataError(f"{where}: pixel values must be in 0..255, got {values.min()}..{values.max()}")
    return values.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def _iter_csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        with _open_text(path) as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames
            if not header:
                raise DataError(f"{path}: the file is empty (expected a header {','.join(CSV_COLUMNS)})")
            missing = [c for c in CSV_COLUMNS if c not in header]
            if missing:
                raise DataError(f"{path}: missing column(s) {missing}; found {header}, expected {list(CSV_COLUMNS)}")
            yield from enumerate(reader, start=2)  # line 1 is the header
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        if isinstance(e, FileNotFoundError):
            raise
        if isinstance(e, UnicodeDecodeError):  # a photo, a zip or another binary file where the CSV was expected
            raise DataError(f"{path}: not a text CSV (it holds binary data); expected a FER2013 CSV with "
                            f"columns {','.join(CSV_COLUMNS)}, plain or .gz, or a folder split/<emotion>/*.png") from e
        raise DataError(f"{path}: cannot read the file ({e})") from e


def parse_csv(path: str | os.PathLike[str]) -> FERData:
    """Parse a Kaggle FER2013 CSV (`emotion,pixels,Usage`, plain or gzipped) without caching."""
    path = Path(path)
    images: dict[str, list[np.ndarray]] = {}
    labels: dict[str, list[int]] = {}
    for line, row in _iter_csv_rows(path):
        where = f"{path}, line {line}"
        usage = (row["Usage"] or "").strip()
        if usage not in SPLITS:
            raise DataError(f"{where}: unknown Usage {usage!r}; expected one of {list(SPLITS)}")
        try:
            label = int((row["emotion"] or "").strip())
        except ValueError:
            raise DataError(f"{where}: emotion {row['emotion']!r} is not an integer") from None
        if not 0 <= label < NUM_CLASSES:
            raise DataError(f"{where}: emotion {label} is outside 0..{NUM_CLASSES - 1}")
        images.setdefault(usage, []).append(parse_pixels(row["pixels"] or "", where))
        labels.setdefault(usage, []).append(label)
    if not images:
        raise DataError(f"{path}: the file has a header but no rows")
    return FERData(
        images={s: torch.from_numpy(np.stack(v)) for s, v in images.items()},
        labels={s: torch.tensor(v, dtype=torch.int64) for s, v in labels.items()},
        source=str(path),
    )


def cache_dir() -> Path:
    """Where parsed datasets are cached ($FER_CACHE, else ~/.cache/fer_core)."""
    return Path(os.environ.get("FER_CACHE", Path.home() / ".cache" / "fer_core"))


def _cache_path(path: Path) -> Path:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{CACHE_VERSION}"
    return cache_dir() / f"{path.name}.{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"


def load_csv(path: str | os.PathLike[str], cache: bool = True) -> FERData:
    """Load a FER2013 CSV, using an .npz cache keyed by the file's path, size and mtime."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    cpath = _cache_path(path) if cache else None
    if cpath is not None and cpath.exists():
        try:
            with np.load(cpath) as z:
                names = [k[len("x_"):] for k in z.files if k.startswith("x_")]
                return FERData(
                    images={s: torch.from_numpy(z[f"x_{s}"]) for s in names},
                    labels={s: torch.from_numpy(z[f"y_{s}"]) for s in names},
                    source=str(path),
                )
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is rebuilt below
    data = parse_csv(path)
    if cpath is not None:
        try:
            cpath.parent.mkdir(parents=True, exist_ok=True)
            tmp = cpath.with_name(f".{cpath.name}.{os.getpid()}.tmp.npz")
            arrays = {f"x_{s}": data.images[s].numpy() for s in data.splits}
            arrays |= {f"y_{s}": data.labels[s].numpy() for s in data.splits}
            np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub takes **arrays for allow_pickle
            os.replace(tmp, cpath)
        except OSError:
            pass  # caching is an optimisation; a read-only home must not break loading
    return data


# ------------------------------------------------------------------------------------ image folders
def _emotion_index(name: str) -> int | None:
    return EMOTION_ALIASES.get(name.strip().lower())


def read_grey48(path: str | os.PathLike[str]) -> np.ndarray:
    """Read any image file as (48, 48) uint8 greyscale (resized if needed)."""
    from PIL import Image

    with Image.open(path) as im:
        grey = im.convert("L")
    if grey.size != (IMAGE_SIZE, IMAGE_SIZE):
        grey = grey.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.uint8)


def load_folder(root: str | os.PathLike[str]) -> FERData:
    """Load `root/<split>/<emotion>/*.png|jpg` (split and emotion names case-insensitive)."""
    root = Path(root)
    images: dict[str, torch.Tensor] = {}
    labels: dict[str, torch.Tensor] = {}
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        split = SPLIT_ALIASES.get(split_dir.name.lower())
        if split is None:
            continue
        xs: list[np.ndarray] = []
        ys: list[int] = []
        for emo_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            label = _emotion_index(emo_dir.name)
            if label is None:
                raise DataError(f"{emo_dir}: unknown emotion folder {emo_dir.name!r}; expected one of {list(EMOTIONS)}")
            for f in sorted(emo_dir.iterdir()):
                if f.suffix.lower() not in IMAGE_EXTS:
                    continue
                try:
                    xs.append(read_grey48(f))
                except Exception as e:  # PIL raises many types for broken files
                    raise DataError(f"{f}: cannot read image ({e})") from e
                ys.append(label)
        if xs:
            images[split] = torch.from_numpy(np.stack(xs))
            labels[split] = torch.tensor(ys, dtype=torch.int64)
    if not images:
        raise DataError(
            f"{root}: no images found; expected {root}/<split>/<emotion>/*.png with split in "
            f"train/val/test (or {'/'.join(SPLITS)}) and emotion in {'/'.join(EMOTIONS)}"
        )
    return FERData(images=images, labels=labels, source=str(root))


# ------------------------------------------------------------------------------------------- FER+
@dataclass
class FERPlusVotes:
    """FER+ votes aligned with the FER2013 rows: majority label (-1 = dropped) and vote shares."""

    usage: list[str]
    labels: torch.Tensor  # (N,) int64, -1 where FER+ has no usable majority or no face
    dist: torch.Tensor  # (N, 7) float32 vote shares over EMOTIONS (zeros where dropped)


def load_ferplus(path: str | os.PathLike[str]) -> FERPlusVotes:
    """Read fer2013new.csv the standard FER+ way (drop single votes, majority > half, drop NF/unknown)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (FER+ votes, fer2013new.csv)")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: the file is empty")
        missing = [c for c in ("Usage", "Image name", *FERPLUS_COLUMNS) if c not in header]
        if missing:
            raise DataError(f"{path}: missing FER+ column(s) {missing}; found {header}")
        idx = [header.index(c) for c in FERPLUS_COLUMNS]
        name_i, usage_i = header.index("Image name"), header.index("Usage")
        usage, votes, named = [], [], []
        for line, row in enumerate(reader, start=2):
            try:
                votes.append([float(row[i]) for i in idx])
            except (ValueError, IndexError):
                raise DataError(f"{path}, line {line}: votes must be numbers in columns {list(FERPLUS_COLUMNS)}") from None
            usage.append(row[usage_i])
            named.append(bool(row[name_i].strip()))
    v = np.asarray(votes, dtype=np.float32).reshape(-1, len(FERPLUS_COLUMNS))
    v[v <= 1.0] = 0.0  # a single vote is treated as noise (FER+ reference code)
    total = v.sum(1)
    top = v.argmax(1)
    majority = v.max(1) > 0.5 * total
    to_emotion = np.array([-1 if e is None else e for e in FERPLUS_TO_EMOTION])
    labels = np.where(majority & np.asarray(named), to_emotion[top], -1)
    ours = np.zeros((len(v), NUM_CLASSES), dtype=np.float32)
    for col, e in enumerate(FERPLUS_TO_EMOTION):
        if e is not None:
            ours[:, e] = v[:, col]
    sums = ours.sum(1, keepdims=True)
    dist = np.where((labels[:, None] >= 0) & (sums > 0), ours / np.maximum(sums, 1e-9), 0.0).astype(np.float32)
    return FERPlusVotes(usage=usage, labels=torch.from_numpy(labels.astype(np.int64)), dist=torch.from_numpy(dist))


def _vote_rows(data: FERData, votes: FERPlusVotes) -> dict[str, np.ndarray]:
    """Per split of data, the vote rows that describe its images (DataError when the two files are not aligned)."""
    usage = np.asarray(votes.usage)
    out = {}
    for s in data.splits:
        rows = out[s] = np.flatnonzero(usage == s)
        if len(rows) != len(data.labels[s]):
            raise DataError(f"FER+ votes have {len(rows)} {s} rows but the data has {len(data.labels[s])}; files are not aligned")
    return out


def apply_ferplus(data: FERData, votes: FERPlusVotes) -> FERData:
    """Relabel a CSV dataset with FER+ majority labels, dropping rows FER+ rejects."""
    out_x, out_y, out_d = {}, {}, {}
    for s, rows in _vote_rows(data, votes).items():
        lab = votes.labels[rows]
        keep = lab >= 0
        out_x[s], out_y[s] = data.images[s][keep], lab[keep]
        out_d[f"dist_{s}"] = votes.dist[rows][keep]
    return FERData(images=out_x, labels=out_y, source=data.source + " (FER+ labels)", extra=out_d)


def attach_vote_shares(data: FERData, votes: FERPlusVotes) -> FERData:
    """The same rows and FER2013 labels, plus extra["dist_<split>"]: each row's FER+ vote shares (zeros where FER+
    has no majority or no face), for soft training targets."""
    extra = dict(data.extra) | {f"dist_{s}": votes.dist[rows] for s, rows in _vote_rows(data, votes).items()}
    return FERData(images=data.images, labels=data.labels, source=data.source, extra=extra)


def with_vote_shares(data: FERData) -> FERData:
    """data with FER+ vote shares per split, read from the fer2013new.csv beside data.source (DataError if none)."""
    if all(f"dist_{s}" in data.extra for s in data.splits):
        return data
    if data.source and Path(data.source).is_dir():
        raise DataError(f"FER+ vote shares (soft labels) align with the CSV's rows; {data.source} is an image folder")
    votes_path = find_ferplus(Path(data.source)) if data.source else None
    if votes_path is None:
        raise DataError(f"FER+ vote shares (soft labels) need fer2013new.csv beside {data.source or 'the data'}")
    return attach_vote_shares(data, load_ferplus(votes_path))


def find_ferplus(data_path: Path) -> Path | None:
    """The FER+ vote file beside a CSV, if there is one."""
    p = data_path.parent / "fer2013new.csv"
    return p if p.exists() else None


def load_dataset(path: str | os.PathLike[str] | None = None, labels: str = "fer2013") -> FERData:
    """Load a CSV or an image folder (path, $FER_DATA or the default); `labels="ferplus"` relabels with FER+."""
    p = resolve_data_path(path)
    data = load_folder(p) if p.is_dir() else load_csv(p)
    if labels == "ferplus":
        votes_path = find_ferplus(p)
        if votes_path is None:
            raise DataError(f"labels='ferplus' needs fer2013new.csv beside {p}")
        data = apply_ferplus(data, load_ferplus(votes_path))
    elif labels != "fer2013":
        raise ValueError(f"labels must be 'fer2013' or 'ferplus', not {labels!r}")
    return data
