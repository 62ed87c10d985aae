"""Copies of faces across and within splits (FER2013's test faces recur in Training) and blank images; CLI `fer-audit`."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import DataNotFoundError, atomic_write_json, cli_main, cli_prog
from .data import DataError, FERData, load_dataset
from .metrics import accuracy, f1_scores

# Faces are compared as 12 x 12 thumbnails (mean removed, unit length) of their centre 36 px, against the query face's
# centre 33, 36 or 39 px moved up to 3 px each way: a copy cropped a few pixels off, rescaled by up to about 8% or
# re-encoded still matches.
CROP, CROPS, SHIFT, THUMB = 36, (33, 36, 39), 3, 12
# Cosine similarity at or above which two faces count as the same photo. On FER2013's PublicTest against Training
# (README, Data), the most similar pairs from 0.95 up carry the same label 76-93% of the time and look like one photo
# cropped twice; from 0.94 down, 54% and less (between a face and its most similar unrelated face: 30-37%).
NEAR = 0.95
BLANK_STD = 3.0  # grey levels: a face image flatter than this holds no face


def thumbnails(images: torch.Tensor, dy: int = 0, dx: int = 0, crop: int = CROP) -> torch.Tensor:
    """(N, 48, 48) uint8 faces -> (N, 144) float32: the centre `crop` px moved (dy, dx), as a mean-removed unit-length
    12 x 12 thumbnail (a flat image: 0, similar to nothing)."""
    if len(images) == 0:
        return torch.zeros(0, THUMB * THUMB)
    o = (images.shape[-1] - crop) // 2
    window = images[:, o + dy : o + dy + crop, o + dx : o + dx + crop].float().unsqueeze(1)
    t = F.adaptive_avg_pool2d(window, THUMB).flatten(1)
    t = t - t.mean(1, keepdim=True)
    norm = t.norm(dim=1, keepdim=True)
    return torch.where(norm > 1e-3, t / norm.clamp_min(1e-3), torch.zeros_like(t))


def spectra(images: torch.Tensor, k: int = 8) -> torch.Tensor:
    """(N, 48, 48) uint8 -> (N, 120) float32: log magnitudes of the lowest 2-D frequencies of the centre 40 px (Hann
    windowed), mean removed, unit length. A small shift leaves them nearly unchanged, so they pick the candidates that
    `nearest` then scores with thumbnails."""
    f = images.float()[:, 4:44, 4:44]
    w = torch.hann_window(40, periodic=False)
    f = (f - f.mean((1, 2), keepdim=True)) * w[:, None] * w[None, :]
    mag = torch.fft.rfft2(f).abs()[:, :, :k]
    t = torch.log1p(torch.cat([mag[:, :k], mag[:, 1 - k :]], 1).flatten(1))
    t = t - t.mean(1, keepdim=True)
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-6)


def nearest(query: torch.Tensor, reference: torch.Tensor, candidates: int = 200, chunk: int = 512,
            exhaustive: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For each query face the most similar reference face, over every crop size and shift of the query: (cosine
    similarity of thumbnails, its index); -1 where there is no reference face.

    Only `candidates` reference faces per query are scored at every crop and shift: the most similar by `spectra` (which
    a shift hardly changes) and by the plain thumbnail. On FER2013's PublicTest against Training that takes 1.6 s on two
    cores, against 50 s for scoring all 28,709 (`exhaustive`), and finds the same faces at NEAR on the 600 compared."""
    n = len(query)
    if len(reference) == 0:
        return np.full(n, -1.0, np.float32), np.full(n, -1, np.int64)
    ref = thumbnails(reference)
    views = [(crop, dy, dx) for crop in CROPS for dy in range(-SHIFT, SHIFT + 1) for dx in range(-SHIFT, SHIFT + 1)]
    best, at = torch.full((n,), -2.0), torch.zeros(n, dtype=torch.int64)
    if exhaustive or len(reference) <= 2 * candidates:
        for i in range(0, n, chunk):
            for crop, dy, dx in views:
                sim, idx = (thumbnails(query[i : i + chunk], dy, dx, crop) @ ref.T).max(1)
                better = sim > best[i : i + chunk]
                best[i : i + chunk][better], at[i : i + chunk][better] = sim[better], idx[better]
        return best.numpy(), at.numpy()
    ref_spectra = spectra(reference)
    for i in range(0, n, chunk):
        q = query[i : i + chunk]
        cand = torch.cat([(spectra(q) @ ref_spectra.T).topk(candidates, 1).indices,
                          (thumbnails(q) @ ref.T).topk(candidates, 1).indices], 1)  # (b, 2 candidates)
        moved = torch.stack([thumbnails(q, dy, dx, crop) for crop, dy, dx in views], 1)  # (b, views, 144)
        sims = torch.einsum("bsd,bkd->bsk", moved, ref[cand]).amax(1)  # (b, 2 candidates): the best view of each
        top, k = sims.max(1)
        best[i : i + chunk], at[i : i + chunk] = top, cand.gather(1, k[:, None]).squeeze(1)
    return best.numpy(), at.numpy()


def _digests(images: torch.Tensor) -> list[bytes]:
    flat = images.reshape(len(images), -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]


@dataclass(frozen=True)
class Copies:
    """Each face of `split` against its most similar face in `reference`."""

    split: str
    reference: str
    similarity: np.ndarray  # (N,) thumbnail cosine similarity to the most similar reference face
    index: np.ndarray  # (N,) that face's index in the reference split
    exact: np.ndarray  # (N,) bool: some reference face is the same pixel for pixel
    same_label: np.ndarray  # (N,) bool: the matched reference face (the exact copy where there is one) has this label
    threshold: float = NEAR

    @property
    def seen(self) -> np.ndarray:
        """(N,) bool: the face, or a near copy of it, is in the reference split."""
        return self.exact | (self.similarity >= self.threshold)


def copies_in(data: FERData, split: str, reference: str = "Training", threshold: float = NEAR) -> Copies:
    """Which faces of `split` also lie in `reference` (exactly, or as a near copy: thumbnail similarity >= threshold);
    raises SplitError where either split is missing."""
    x, y = data.split(split)
    rx, ry = data.split(reference)
    sim, idx = nearest(x, rx)
    where = {d: i for i, d in enumerate(_digests(rx))}
    exact_at = np.array([where.get(d, -1) for d in _digests(x)], dtype=np.int64)
    exact = exact_at >= 0
    idx = np.where(exact, exact_at, idx)
    sim = np.where(exact, 1.0, sim).astype(np.float32)
    same = (idx >= 0) & (ry.numpy()[np.maximum(idx, 0)] == y.numpy())
    return Copies(split, reference, sim, idx, exact, same, threshold)


def seen_in_training(data: FERData, split: str, threshold: float = NEAR) -> np.ndarray | None:
    """copies_in(data, split).seen, or None for Training itself or data without a Training split."""
    if split == "Training" or "Training" not in data.splits or split not in data.splits:
        return None
    return copies_in(data, split, "Training", threshold).seen


def unseen_metrics(y_true: np.ndarray, y_pred: np.ndarray, seen: np.ndarray, threshold: float = NEAR) -> dict[str, Any]:
    """Accuracy and macro-F1 on the faces with no copy in Training, and accuracy on those with one: the report's
    `unseen` block (the honest figure where a test split shares faces with Training)."""
    y_true, y_pred, seen = np.asarray(y_true), np.asarray(y_pred), np.asarray(seen, bool)
    rest = ~seen
    out: dict[str, Any] = {"n": int(rest.sum()), "seen_n": int(seen.sum()), "threshold": threshold}
    if rest.any():
        out |= {"accuracy": accuracy(y_true[rest], y_pred[rest]), "macro_f1": f1_scores(y_true[rest], y_pred[rest])["macro_f1"]}
    if seen.any():
        out["seen_accuracy"] = accuracy(y_true[seen], y_pred[seen])
    return out


def add_unseen(report: dict[str, Any], seen: np.ndarray, threshold: float = NEAR) -> dict[str, Any]:
    """The report (an evaluate report, with its per-face predictions) with its `unseen` block, which lists the faces
    Training holds by their index (`seen_index`); raises ValueError where `seen` does not cover its faces."""
    pred = report["predictions"]
    if len(seen) != len(pred["y_true"]):
        raise ValueError(f"the report scores {len(pred['y_true'])} faces, the split has {len(seen)}: another data file?")
    report["unseen"] = unseen_metrics(np.asarray(pred["y_true"]), np.asarray(pred["y_pred"]), seen, threshold)
    report["unseen"]["seen_index"] = np.flatnonzero(seen).tolist()  # which faces Training holds (fewer than the rest)
    return report


def seen_mask(report: dict[str, Any]) -> np.ndarray | None:
    """(N,) bool over a report's faces: those its `unseen` block says Training holds (add_unseen); None without the
    block. Indices past the end (a hand-edited report) are ignored."""
    index = (report.get("unseen") or {}).get("seen_index")
    if index is None:
        return None
    return np.isin(np.arange(len(report["predictions"]["y_true"])), index)


def blank(images: torch.Tensor) -> np.ndarray:
    """(N,) bool: images with no structure (grey-level standard deviation under BLANK_STD)."""
    return (images.reshape(len(images), -1).float().std(1) < BLANK_STD).numpy() if len(images) else np.zeros(0, bool)


def exact_groups(images: torch.Tensor) -> list[list[int]]:
    """Indices of the images that occur more than once, one list per distinct image."""
    groups: dict[bytes, list[int]] = defaultdict(list)
    for i, d in enumerate(_digests(images)):
        groups[d].append(i)
    return [g for g in groups.values() if len(g) > 1]


def audit(data: FERData, threshold: float = NEAR) -> dict[str, Any]:
    """Per split: its size, repeated images within it (and those repeats labelled otherwise than the first), blank images, and
    (other splits) its faces with an exact or near copy in Training, and of those how many carry another label;
    PrivateTest also counts its faces in PublicTest (the split models are selected on)."""
    out: dict[str, Any] = {"data": data.source, "threshold": threshold, "splits": {}}
    for split in data.splits:
        x, y = data.split(split)
        groups = exact_groups(x)
        labels = y.numpy()
        row: dict[str, Any] = {"n": len(x), "repeated": sum(len(g) - 1 for g in groups),
                               "repeated_other_label": sum(int((labels[g[1:]] != labels[g[0]]).sum()) for g in groups),
                               "blank": int(blank(x).sum())}
        if split != "Training" and "Training" in data.splits:
            c = copies_in(data, split, "Training", threshold)
            row |= {"exact_in_training": int(c.exact.sum()), "near_in_training": int((c.seen & ~c.exact).sum()),
                    "in_training_other_label": int((c.seen & ~c.same_label).sum())}
        if split == "PrivateTest" and "PublicTest" in data.splits:  # selecting on PublicTest also sees these
            c = copies_in(data, split, "PublicTest", threshold)
            row["in_publictest"] = int(c.seen.sum())
        out["splits"][split] = row
    return out


def format_audit(result: dict[str, Any]) -> str:
    lines = [f"{result['data']}: copies are exact, or near (shifted, rescaled 12 x 12 thumbnails, cosine similarity >= "
             f"{result['threshold']})"]
    for split, r in result["splits"].items():
        line = (f"{split:<11} {r['n']:>6} faces; {r['repeated']} repeats of another face of the split "
                f"({r['repeated_other_label']} labelled otherwise); {r['blank']} blank")
        if "exact_in_training" in r:
            seen = r["exact_in_training"] + r["near_in_training"]
            line += (f"; in Training: {r['exact_in_training']} exact + {r['near_in_training']} near = {seen} "
                     f"({seen / max(r['n'], 1):.1%}), {r['in_training_other_label']} of them labelled otherwise there")
        if "in_publictest" in r:
            line += f"; {r['in_publictest']} in PublicTest (exact or near)"
        lines.append(line)
    return "\n".join(lines)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=cli_prog("fer_core.audit"),
                                description="Count the faces each split shares with Training (exact and near copies), "
                                            "repeats within each split, and blank images.")
    p.add_argument("--data", default=None, help="CSV (.csv/.csv.gz) or image folder (default: $FER_DATA or ../shared/data)")
    p.add_argument("--threshold", type=float, default=NEAR, help=f"near-copy similarity (default {NEAR})")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.add_argument("--reports", nargs="+", default=[], metavar="REPORT",
                   help="instead, add the accuracy without the faces Training holds too to these evaluate reports (in "
                        "place, from their saved predictions; they must score this data's split)")
    return p


def annotate_reports(data: FERData, paths: list[str], threshold: float = NEAR) -> list[str]:
    """Add the `unseen` block to the evaluate reports in these JSON files (one report or a list), in place, each file
    written whole or not at all; one line per report. Raises ValueError for a report of other faces."""
    seen: dict[str, np.ndarray | None] = {}
    lines = []
    for path in paths:
        content = json.loads(Path(path).read_text())
        for r in content if isinstance(content, list) else [content]:
            split = r["split"]
            if split not in seen:
                seen[split] = seen_in_training(data, split, threshold)
            mask = seen[split]
            if mask is None:
                lines.append(f"{path}: {split}: no Training split to compare with; left as it was")
                continue
            if r["predictions"]["y_true"] != data.split(split)[1].tolist():
                raise ValueError(f"{path}: its {split} labels are not those of {data.source}: scored on other data (or with "
                                 "--labels ferplus)")
            u = add_unseen(r, mask, threshold)["unseen"]
            lines.append(f"{path}: {split} {r.get('corruption', 'clean')} tta={r['tta']}: {r['accuracy']:.4f}, without "
                         f"the {u['seen_n']} faces Training holds {u.get('accuracy', float('nan')):.4f}")
        atomic_write_json(path, content)
    return lines


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if not -1.0 <= args.threshold <= 1.0:
        print(f"error: --threshold must lie in [-1, 1], not {args.threshold}", file=sys.stderr)
        return 2
    try:
        data = load_dataset(args.data)
        if args.reports:
            print("\n".join(annotate_reports(data, args.reports, args.threshold)))
            return 0
        result = audit(data, args.threshold)
    except (DataNotFoundError, DataError, OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else format_audit(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
