"""Faces in real photos: detection (upright, turned in the picture's plane, or seen from the side) behind a small
interface; fer_core.crops cuts them out."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Protocol

import cv2
import numpy as np
from PIL import Image

PROFILE_CASCADE = "haarcascade_profileface.xml"  # faces seen from the side, looking one way (OpenCV's, bundled)
LOOK_AGAIN = (-15.0, 0.0, 15.0)  # degrees either side of a found face's angle at which it is looked at again
LOOK_HALF = 64  # a face looked at again on its own is scaled to this many pixels, in a square twice that
# Faces turned less than this are cut upright: training turned faces by up to 10 degrees, and the angle is only known to
# about 6 (benchmarks/tilt.py), so turning them back would add blur (a second resampling) for nothing.
UPRIGHT_WITHIN = 10.0
Box = tuple[int, int, int, int]  # (x, y, w, h) in the pixel coordinates of the (EXIF-rotated) original image


# ---------------------------------------------------------------------------------------------- detection


class FaceDetector(Protocol):
    """Anything that finds faces in a greyscale uint8 (H, W) array, boxes in that array's pixel coordinates."""

    def detect(self, grey: np.ndarray) -> list[Box]: ...


class Face(NamedTuple):
    """A face found in a photo: its box as if it were upright, how far it is turned in the picture's plane, and whether
    it was found seen from the side."""

    box: Box  # (x, y, w, h): the face's centre and size, not turned
    angle: float = 0.0  # degrees, counter-clockwise: a head tilted towards its right shoulder (left of the picture) is > 0
    side: bool = False  # a side view (profile or three-quarter), found by the profile search: less reliably classified


class TurnedFaceDetector:
    """A FaceDetector that also says how far each face is turned (find_faces uses it); its boxes are detect()."""

    def detect_turned(self, grey: np.ndarray) -> list[Face]:
        raise NotImplementedError

    def detect(self, grey: np.ndarray) -> list[Box]:
        return [face.box for face in self.detect_turned(grey)]


def _largest_first(faces: list[Face]) -> list[Face]:
    """Faces by area, largest first, then in reading order."""
    return sorted(faces, key=lambda f: (-f.box[2] * f.box[3], f.box[1], f.box[0]))


class HaarDetector(TurnedFaceDetector):
    """OpenCV's bundled frontal-face Haar cascade (no download), run on a copy resized to a working size.

    Large photos are shrunk to about `work_pixels` (the cascade's cost grows with the area; texture in big photos also
    gives false positives); small ones are enlarged so the long side is `min_side`, because the cascade's 24 px window
    misses faces in tight crops. Faces smaller than `min_face` of the working copy's short side (0.05: the cascade's own
    24 px window in a 640 x 480 copy) are not searched for. Defaults were chosen on real photos: the astronaut at 200 px
    to 4000 px, rows and grids of ten faces, mosaics of FER crops, group photos of FER faces (benchmarks/group.py), and
    twenty face-free scikit-image photos (false faces on the coins only).

    The cascade only finds faces within about 15 degrees of upright, so the copy is also searched turned by each of
    `tilts` (degrees). Each face found is then looked at again on its own, turned back by its angle and 15 degrees
    either side; its angle is refined to the mean of those three weighted by the cascade's window counts. A face the
    upright search did not find must reach `tilted_neighbors` windows there (true faces had 17-25, false ones 6-11):
    every extra search is another chance of a false positive. The turned searches look for faces of at least
    `turned_min_face` of the short side (the cascade's cost grows with the square of the smallest face sought: 0.16
    instead of 0.08 brought a 1-megapixel photo's detection from 100 to 64 ms, against 34 upright only), on a copy of
    at most `turned_pixels`. tilts=() searches upright only. Videos search the whole frame once a second and follow faces
    in between (`follow`).

    Faces seen from the side (profiles, three-quarter views), which the frontal cascade misses, are looked for with
    OpenCV's profile cascade on the working copy and on its mirror image (the cascade finds faces looking one way), from
    `profile_face` of the short side (0 turns it off): where the searches above found no face, or with
    `profiles_always` beside them (the small-faces detector), keeping those not where a face was found already. Its
    finer scale steps (`profile_scale`) and `profile_neighbors` were chosen on the cameraman photo at 19 sizes from 200 to
    2000 px (found at 7 of them with the frontal search's 1.2 and 5, at all 19 now) and on false faces in the turned
    astronauts, the ten-face sheet, group photos and the face-free photos (none). The two profile searches of a 640 x 480
    copy take about 100 ms, against about 30 for the upright frontal search.

    A face is found reliably once it is about 50 px where it is searched, now and then from 24 px: by default from about
    10% of the picture's short side, half as often at 6% (min_face 0.08 found none at 6%, but took 15 ms less on a
    1-megapixel photo). `small_face` > 0 adds an upright search of a larger copy (up to `small_pixels`) for faces from
    that fraction of the short side up to SMALL_UP_TO (group photos: get_detector(small_faces=True)), finding faces
    from about 3-4% (turned ones from about 6%): 3-5x slower, more false faces on textured surfaces. The working copy
    is then that larger copy; `small_turned_face` > 0 also searches it turned, for faces from that fraction up to
    `turned_min_face`.
    """

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml", work_pixels: int = 640 * 480,
                 min_side: int = 320, scale_factor: float = 1.2, min_neighbors: int = 5, min_face: float = 0.05,
                 tilts: tuple[float, ...] = (-30.0, 30.0), tilted_neighbors: int = 12, turned_min_face: float = 0.16,
                 turned_pixels: int = 640 * 480, small_face: float = 0.0, small_pixels: int = 1600 * 1200,
                 small_turned_face: float = 0.0, profile_face: float = 0.08, profile_scale: float = 1.15,
                 profile_neighbors: int = 5, profiles_always: bool = False) -> None:
        self.path = Path(cv2.data.haarcascades) / cascade  # type: ignore[attr-defined]  # not in OpenCV's stubs
        self.profile_path = self.path.with_name(PROFILE_CASCADE)
        self.work_pixels, self.min_side = work_pixels, min_side
        self.scale_factor, self.min_neighbors, self.min_face = scale_factor, min_neighbors, min_face
        self.tilts, self.tilted_neighbors = tuple(float(t) for t in tilts if t % 360), tilted_neighbors
        self.turned_min_face, self.turned_pixels = turned_min_face, turned_pixels
        self.small_face, self.small_pixels, self.small_turned_face = small_face, small_pixels, small_turned_face
        self.profile_face, self.profile_scale, self.profile_neighbors = profile_face, profile_scale, profile_neighbors
        self.profiles_always = profiles_always
        self._local = threading.local()
        self._cascade()  # fail now, not at the first photo
        if profile_face:
            self._cascade(self.profile_path)

    def _cascade(self, path: Path | None = None) -> cv2.CascadeClassifier:
        """The cascade at `path` (default: the frontal one). A CascadeClassifier keeps scratch buffers inside and is not
        safe to share between threads (the dashboard serves each user from a thread): one per thread, loaded on its
        first use (~50 ms)."""
        path = path or self.path
        cascades = self._local.__dict__.setdefault("cascades", {})
        if path not in cascades:
            cascades[path] = cv2.CascadeClassifier(str(path))
            if cascades[path].empty():
                raise RuntimeError(f"cannot load the Haar cascade {path} (opencv-python-headless>=4.8,<5 ships it)")
        return cascades[path]

    def work_scale(self, width: int, height: int) -> float:
        """Factor from the input's pixels to the working copy's."""
        pixels = max(self.work_pixels, self.small_pixels if self.small_face else 0)
        scale = min(1.0, (pixels / (width * height)) ** 0.5)
        return max(scale, self.min_side / max(width, height))

    def _search(self, work: np.ndarray, angle: float, pixels: int, min_face: float, max_face: float = 0.0,
                profile: bool = False) -> list[tuple[float, float, float, int]]:
        """(centre x, centre y, side, windows) in `work`'s coordinates of the faces from min_face (up to max_face, where
        given) of the short side, searched in a copy of `work` shrunk to at most `pixels` and turned by -angle (with
        the profile cascade where `profile`)."""
        k = min(1.0, (pixels / work.size) ** 0.5)
        h, w = work.shape
        if (round(w * k), round(h * k)) != (w, h):  # (the working copy itself may be a pixel over `pixels`: rounding)
            small = cv2.resize(work, (round(w * k), round(h * k)), interpolation=cv2.INTER_AREA)
            kx, ky = small.shape[1] / w, small.shape[0] / h
            return [(cx / kx, cy / ky, side * 2 / (kx + ky), n)
                    for cx, cy, side, n in self._search(small, angle, small.size, min_face, max_face, profile)]
        smallest, largest = max(24, round(min_face * min(h, w))), round(max_face * min(h, w))  # largest 0: no limit
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), -angle, 1.0)  # same size: corners are lost, the centre is not
        image = work if not angle else cv2.warpAffine(work, turn, (w, h), flags=cv2.INTER_LINEAR,
                                                      borderMode=cv2.BORDER_REPLICATE)
        back = cv2.invertAffineTransform(turn)
        cascade = self._cascade(self.profile_path) if profile else self._cascade()
        found, windows = cascade.detectMultiScale2(np.ascontiguousarray(image),
                                                   scaleFactor=self.profile_scale if profile else self.scale_factor,
                                                   minNeighbors=self.profile_neighbors if profile else self.min_neighbors,
                                                   minSize=(smallest, smallest), maxSize=(largest, largest))
        out = []
        for (x, y, bw, bh), n in zip(np.asarray(found, np.float64).reshape(-1, 4), np.asarray(windows).reshape(-1),
                                     strict=True):
            cx, cy = back @ (x + bw / 2, y + bh / 2, 1.0)
            out.append((float(cx), float(cy), float(max(bw, bh)), int(n)))
        return out

    def _work(self, grey: np.ndarray) -> tuple[np.ndarray, float]:
        """The working copy of a greyscale picture and its scale from the picture's pixels."""
        h, w = grey.shape[:2]
        scale = self.work_scale(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        return (grey if scale == 1.0 else cv2.resize(grey, size, interpolation=interpolation)), scale

    def _face(self, cx: float, cy: float, side: float, angle: float, scale: float, shape: tuple[int, ...],
              side_view: bool = False) -> Face | None:
        """The Face of a square at (cx, cy) in working-copy pixels, clipped to the picture; None if nothing is left."""
        h, w = shape[:2]
        x0, y0 = max(0, round((cx - side / 2) / scale)), max(0, round((cy - side / 2) / scale))
        x1, y1 = min(w, round((cx + side / 2) / scale)), min(h, round((cy + side / 2) / scale))
        return Face((x0, y0, x1 - x0, y1 - y0), round(float(angle), 1), side_view) if x1 > x0 and y1 > y0 else None

    def detect_turned(self, grey: np.ndarray, side_views: bool = True) -> list[Face]:
        """Every face, upright or turned by up to about 45 degrees, or seen from the side (unless `side_views` is False),
        largest first, then in reading order."""
        work, scale = self._work(grey)
        hits = [(*hit, 0.0) for hit in self._search(work, 0.0, self.work_pixels, self.min_face)]
        if self.small_face:  # overlapping the search above: it finds faces near its smallest only now and then
            hits += [(*hit, 0.0) for hit in self._search(work, 0.0, self.small_pixels, self.small_face, SMALL_UP_TO)]
        # The cascade's cost is set by the area searched and its smallest window relative to it: turned, larger faces only
        turned = max(self.min_face, self.turned_min_face)
        hits += [(*hit, angle) for angle in self.tilts for hit in self._search(work, angle, self.turned_pixels, turned)]
        if self.small_face and self.small_turned_face:  # and smaller turned faces on the larger copy (a tilted head in a group)
            hits += [(*hit, angle) for angle in self.tilts
                     for hit in self._search(work, angle, self.small_pixels, self.small_turned_face, turned)]
        faces = []
        for group in _grouped(hits):
            cx, cy, side, angle = np.average(np.array(group)[:, [0, 1, 2, 4]], axis=0, weights=[g[3] for g in group])
            if self.tilts:  # look again at this face alone, at its angle and 15 degrees either side
                windows = [n for n, *_ in self._look(work, cx, cy, side, angle)]
                if not any(a == 0.0 for *_, a in group) and max(windows) < self.tilted_neighbors:
                    continue  # seen only turned, and not clearly: more likely texture than a face
                angle = _refined(angle, windows)
            if (face := self._face(cx, cy, side, angle, scale, grey.shape)) is not None:
                faces.append(face)
        if side_views and self.profile_face and (self.profiles_always or not faces):
            faces += self._profiles(work, faces, scale, grey.shape)
        return _largest_first(faces)

    def _profiles(self, work: np.ndarray, found: list[Face], scale: float, shape: tuple[int, ...]) -> list[Face]:
        """Faces seen from the side in the working copy, looking either way, except where a face was `found` already."""
        w = work.shape[1]
        hits = [(w - cx if mirrored else cx, cy, side, n, 0.0) for mirrored in (False, True)  # a centre x mirrors to w - x
                for cx, cy, side, n in self._search(np.ascontiguousarray(work[:, ::-1]) if mirrored else work, 0.0,
                                                    self.work_pixels, self.profile_face, profile=True)]
        known = [((x + bw / 2) * scale, (y + bh / 2) * scale, max(bw, bh) * scale) for (x, y, bw, bh), *_ in found]
        faces = []
        for group in _grouped(hits):  # a three-quarter view is often seen looking both ways
            cx, cy, side = np.average(np.array(group)[:, :3], axis=0, weights=[g[3] for g in group])
            if not any(np.hypot(cx - kx, cy - ky) < max(side, ks) / 2 for kx, ky, ks in known):  # not inside a face
                faces += [face] if (face := self._face(cx, cy, side, 0.0, scale, shape, True)) is not None else []
        return faces

    @staticmethod
    def _square(work: np.ndarray, cx: float, cy: float, side: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
        """The square twice a face's side around (cx, cy), scaled so the face is 64 px and turned back by `angle`
        (LOOK_HALF * 2 pixels a side), and the 2x3 matrix from `work`'s pixels to it."""
        turn = cv2.getRotationMatrix2D((cx, cy), -angle, LOOK_HALF / side)
        turn[:, 2] += LOOK_HALF - np.array([cx, cy])
        return cv2.warpAffine(work, turn, (2 * LOOK_HALF, 2 * LOOK_HALF), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE), turn

    def _look(self, work: np.ndarray, cx: float, cy: float, side: float, angle: float) -> list[tuple[int, float, float, float]]:
        """For each step of LOOK_AGAIN: the face's _square turned back by angle + step, searched; (window count, centre x,
        centre y, side) in `work`'s pixels of the face found nearest its middle, within half a face of it ((0, cx, cy,
        side) where there is none)."""
        k, half = LOOK_HALF / side, LOOK_HALF
        out = []
        for step in LOOK_AGAIN:
            image, turn = self._square(work, cx, cy, side, angle + step)
            found, windows = self._cascade().detectMultiScale2(image, scaleFactor=1.1, minNeighbors=3, minSize=(40, 40),
                                                               maxSize=(96, 96))
            boxes, counts = np.asarray(found, np.float64).reshape(-1, 4), np.asarray(windows).reshape(-1)
            off = np.hypot(boxes[:, 0] + boxes[:, 2] / 2 - half, boxes[:, 1] + boxes[:, 3] / 2 - half)
            if not (off < boxes[:, 2] / 2).any():
                out.append((0, cx, cy, side))
                continue
            i = int(np.argmin(off))
            x, y = cv2.invertAffineTransform(turn) @ (boxes[i, 0] + boxes[i, 2] / 2, boxes[i, 1] + boxes[i, 3] / 2, 1.0)
            out.append((int(counts[i]), float(x), float(y), float(boxes[i, 2] / k)))
        return out

    def follow(self, grey: np.ndarray, faces: list[Face]) -> list[Face]:
        """The faces of the previous video frame looked for again near where they were (moved up to about half their
        side, 1.5x larger or smaller), at their angle and 15 degrees either side, instead of searching the whole frame;
        those not found there, or found where another one already was, are left out. A face these frontal looks miss
        is looked for there as a side view (a face turning away, or one found by the profile search). About 3 ms a
        face, against 60-80 ms for a whole 720p frame searched upright and turned."""
        work, scale = self._work(grey)
        out: list[Face] = []
        centres: list[tuple[float, float, float]] = []  # (cx, cy, side) of the faces kept, in `work`'s pixels
        for last in faces:
            (x, y, w, h), angle = last.box, last.angle
            at = ((x + w / 2) * scale, (y + h / 2) * scale, max(w, h) * scale)
            looks = self._look(work, *at, angle)
            windows = [n for n, *_ in looks]
            if max(windows) >= self.min_neighbors:
                (_, cx, cy, side), angle, side_view = looks[int(np.argmax(windows))], _refined(angle, windows), False
            elif self.profile_face and (side_look := self._look_side(work, *at))[0] >= self.profile_neighbors:
                (_, cx, cy, side), angle, side_view = side_look, 0.0, True
            else:
                continue
            same = any(np.hypot(cx - c[0], cy - c[1]) < min(side, c[2]) / 2 for c in centres)  # two ran into one
            if not same and (face := self._face(cx, cy, side, angle, scale, grey.shape, side_view)) is not None:
                out.append(face)
                centres.append((cx, cy, side))
        return _largest_first(out)

    def _look_side(self, work: np.ndarray, cx: float, cy: float, side: float) -> tuple[int, float, float, float]:
        """The face's upright _square searched for a side view looking either way: (window count, centre x, centre y,
        side) in `work`'s pixels of the one with most windows within half a face of the middle ((0, cx, cy, side) where
        there is none)."""
        k, half = LOOK_HALF / side, LOOK_HALF
        image, _ = self._square(work, cx, cy, side, 0.0)
        best = (0, cx, cy, side)
        for mirrored in (False, True):
            found, windows = self._cascade(self.profile_path).detectMultiScale2(
                np.ascontiguousarray(image[:, ::-1]) if mirrored else image, scaleFactor=1.1, minNeighbors=3,
                minSize=(40, 40), maxSize=(96, 96))
            for (x, y, w, _), n in zip(np.asarray(found, np.float64).reshape(-1, 4), np.asarray(windows).reshape(-1),
                                       strict=True):
                mx, my = (2 * half - x - w / 2) if mirrored else (x + w / 2), y + w / 2
                if np.hypot(mx - half, my - half) < w / 2 and n > best[0]:
                    best = (int(n), cx + (mx - half) / k, cy + (my - half) / k, w / k)
        return best


class FollowingDetector(TurnedFaceDetector):
    """Faces in the sampled frames of one video, given in order: the whole frame is searched every `every` frames, and
    wherever the last frame had no face or a face followed is lost; in between, the last frame's faces are followed
    (HaarDetector.follow). A face coming into view is found at the next whole-frame search. Side views are searched
    for at most every `every` frames (where no frontal face is found), not at every frame without a face: they cost
    more than the frontal searches."""

    def __init__(self, detector: HaarDetector, every: int) -> None:
        self.detector, self.every = detector, max(1, every)
        self._faces: list[Face] = []
        self._since = 0  # frames since the last whole-frame search
        self._frame, self._side_views = 0, -self.every  # this frame's number, and the last one searched for side views

    def detect_turned(self, grey: np.ndarray) -> list[Face]:
        self._frame += 1
        if self._faces and self._since < self.every:
            followed = self.detector.follow(grey, self._faces)
            if len(followed) == len(self._faces):
                self._faces, self._since = followed, self._since + 1
                return followed
        if side_views := self._frame - self._side_views >= self.every:
            self._side_views = self._frame
        self._faces, self._since = self.detector.detect_turned(grey, side_views), 1
        return self._faces


def _grouped(hits: list[tuple[float, float, float, int, float]]) -> list[list[tuple[float, float, float, int, float]]]:
    """Search hits (centre x, centre y, side, windows, angle) grouped by face: a hit joins the first group, led by the
    hit with most windows, whose leader's centre lies within half the smaller side of its own."""
    groups: list[list[tuple[float, float, float, int, float]]] = []
    for hit in sorted(hits, key=lambda t: -t[3]):  # most windows first: each group is led by its best hit
        group = next((g for g in groups if np.hypot(hit[0] - g[0][0], hit[1] - g[0][1]) < min(hit[2], g[0][2]) / 2), None)
        if group is None:
            groups.append([hit])
        else:
            group.append(hit)
    return groups


def _refined(angle: float, windows: list[int]) -> float:
    """A face's angle corrected by the looks at LOOK_AGAIN's steps (window-count weighted), 0 within UPRIGHT_WITHIN."""
    if sum(windows):
        angle += float(np.average(LOOK_AGAIN, weights=windows))
    return 0.0 if abs(angle) < UPRIGHT_WITHIN else angle


# Small faces (group photos): an upright search of a copy of up to 1600 x 1200 for faces from 2% of its short side (24 px)
# up to 12%, and turned searches of it from 5% up to the default's 16%, beside the default searches; faces from about
# 3-4% of a photo's short side are found upright, from about 6% turned by 25 degrees (benchmarks/group.py).
SMALL_FACE, SMALL_UP_TO, SMALL_TURNED_FACE = 0.02, 0.12, 0.05


@lru_cache(maxsize=2)
def get_detector(small_faces: bool = False) -> HaarDetector:
    """The default detector, or the one that also finds small faces and always looks for faces seen from the side (the
    default does only where it finds no frontal face), built once (loading the cascades takes ~50 ms)."""
    return (HaarDetector(small_face=SMALL_FACE, small_turned_face=SMALL_TURNED_FACE, profiles_always=True) if small_faces
            else HaarDetector())


RELIABLE_FROM = 0.12  # the default search finds faces reliably from about this share of a picture's short side


def has_small_faces(boxes: list[Box], size: tuple[int, int]) -> bool:
    """Whether a face found is smaller than RELIABLE_FROM of the picture's short side: then others that small were likely
    missed by the default search (get_detector(small_faces=True) looks for them)."""
    return bool(boxes) and min(max(b[2], b[3]) for b in boxes) < RELIABLE_FROM * min(size)


def find_faces(image: Image.Image, detector: FaceDetector | None = None) -> list[Face]:
    """All faces in an RGB (or any-mode) PIL image with their angles (0 from detectors that only find upright faces)."""
    grey = np.asarray(image.convert("L"))  # (H, W) uint8
    detector = detector or get_detector()
    if isinstance(detector, TurnedFaceDetector):
        return detector.detect_turned(grey)
    return [Face(tuple(int(v) for v in box)) for box in detector.detect(grey)]  # type: ignore[arg-type]


def detect_faces(image: Image.Image, detector: FaceDetector | None = None) -> list[Box]:
    """All faces in an RGB (or any-mode) PIL image, largest first, as (x, y, w, h) boxes in its pixel coordinates."""
    return [face.box for face in find_faces(image, detector)]
