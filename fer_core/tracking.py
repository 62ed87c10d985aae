"""Face identities across a video's sampled frames: each box joins the track whose last box it overlaps or is nearest."""

from __future__ import annotations

from collections.abc import Sequence

from .faces import Box

MAX_GAP_S = 2.0  # a track not seen for longer ends; a face after that starts a new one


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def similar_size(a: Box, b: Box) -> bool:
    """Whether two boxes could be one face at two moments: widths at most 2x apart."""
    return 0.5 <= b[2] / max(a[2], 1) <= 2.0


def similarity(a: Box, b: Box) -> float:
    """How likely box b is box a a moment later: their IoU where they overlap; otherwise, for boxes of similar size
    (at most 2x apart in width), a score below any overlap that falls as the centres move apart, 0 beyond a box
    width and a half (a face that moved between samples)."""
    overlap = iou(a, b)
    if overlap > 0:
        return 1.0 + overlap
    if not similar_size(a, b):
        return 0.0
    dx, dy = (a[0] + a[2] / 2) - (b[0] + b[2] / 2), (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    reach = 1.5 * max(a[2], b[2])
    return max(0.0, 1.0 - (dx * dx + dy * dy) ** 0.5 / reach)


def assign_tracks(boxes: Sequence[Sequence[Box]], times: Sequence[float], max_gap_s: float = MAX_GAP_S) -> list[list[int]]:
    """A track id for every box of every frame (same shape as `boxes`): greedy matching of each frame's boxes to the
    tracks seen within `max_gap_s`, best pairs first (`similarity`); where a frame has one face and one track is live,
    a face of similar size continues it however far it moved (a single person moving fast between samples); ids are
    renumbered so 0 is the track in most frames (then the earliest), 1 the next, and so on."""
    if len(boxes) != len(times):
        raise ValueError(f"{len(boxes)} frames of boxes but {len(times)} times")
    last: dict[int, tuple[Box, float]] = {}  # track -> its latest box and when
    out: list[list[int]] = []
    for frame, t in zip(boxes, times, strict=True):
        live = {k: v for k, v in last.items() if t - v[1] <= max_gap_s}
        pairs = sorted(((similarity(box, b), j, k) for j, b in enumerate(frame) for k, (box, _) in live.items()), reverse=True)
        match: dict[int, int] = {}  # box index -> track
        for score, j, k in pairs:
            if score > 0 and j not in match and k not in match.values():
                match[j] = k
        if len(frame) == 1 and len(live) == 1 and not match:  # one face then, one now: the same, however far it moved
            (k, (box, _)), = live.items()
            if similar_size(box, frame[0]):
                match[0] = k
        ids = []
        for j, box in enumerate(frame):
            k = match[j] if j in match else len(last)  # unmatched: a new track
            last[k] = (box, t)
            ids.append(k)
        out.append(ids)
    counts: dict[int, list[int]] = {}
    for i, frame_ids in enumerate(out):
        for k in frame_ids:
            counts.setdefault(k, []).append(i)
    order = sorted(counts, key=lambda k: (-len(counts[k]), counts[k][0], k))
    rank = {k: r for r, k in enumerate(order)}
    return [[rank[k] for k in frame_ids] for frame_ids in out]
