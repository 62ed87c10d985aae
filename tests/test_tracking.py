"""Face tracks across sampled frames: boxes on made-up paths, then two real people in a video."""

from __future__ import annotations

import numpy as np
import pytest
from photos import two_people_clip

from fer_core.checkpoint import load_model
from fer_core.config import EMOTIONS
from fer_core.tracking import assign_tracks, iou, similarity
from fer_core.video import format_video, predict_video


def test_iou_and_similarity():
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150) and iou((0, 0, 10, 10), (20, 0, 5, 5)) == 0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0
    overlapping, near, far = similarity((0, 0, 10, 10), (5, 0, 10, 10)), similarity((0, 0, 10, 10), (12, 0, 10, 10)), \
        similarity((0, 0, 10, 10), (40, 0, 10, 10))
    assert overlapping > 1 > near > 0 == far
    assert similarity((0, 0, 10, 10), (12, 0, 30, 30)) == 0  # three times the size: not the same face


def test_tracks_follow_positions_when_the_largest_face_changes():
    left = [(10 + 5 * i, 10, 60 if i < 3 else 30, 60 if i < 3 else 30) for i in range(6)]
    right = [(200 + 5 * i, 10, 30 if i < 3 else 60, 30 if i < 3 else 60) for i in range(6)]
    frames = [sorted([a, b], key=lambda b: -b[2]) for a, b in zip(left, right, strict=True)]  # largest first, as detected
    ids = assign_tracks(frames, [0.5 * i for i in range(6)])
    by_box = {box: k for frame, frame_ids in zip(frames, ids, strict=True) for box, k in zip(frame, frame_ids, strict=True)}
    assert {by_box[b] for b in left} == {0} and {by_box[b] for b in right} == {1}


def test_a_face_that_jumps_keeps_its_track_and_a_long_gap_starts_a_new_one():
    frames = [[(0, 0, 50, 50)], [(60, 0, 50, 50)], [], [], [(65, 0, 50, 50)], [(400, 300, 50, 50)], [(0, 0, 200, 200)]]
    ids = assign_tracks(frames, [0, 0.5, 1, 1.5, 2, 2.5, 3], max_gap_s=2.0)
    assert ids == [[0], [0], [], [], [0], [0], [1]]  # near, or far but alone: the same face; 4x the size: someone else
    assert assign_tracks(frames, [0, 0.5, 1, 1.5, 5, 5.5, 6])[4] == [1]  # seen again after 4.5 s: a new track
    two = [[(0, 0, 50, 50), (300, 0, 50, 50)], [(0, 0, 50, 50), (600, 300, 50, 50)]]
    assert assign_tracks(two, [0, 0.5]) == [[0, 1], [0, 2]]  # with company, a far jump is not assumed to be the same


def test_ids_rank_tracks_by_frames_seen():
    frames = [[(0, 0, 50, 50)], [(300, 0, 50, 50), (0, 0, 50, 50)], [(300, 0, 50, 50)], [(300, 0, 50, 50)]]
    assert assign_tracks(frames, [0, 1, 2, 3]) == [[1], [0, 1], [0], [0]]  # the later face is seen more: it is 0
    with pytest.raises(ValueError, match="2 frames of boxes but 1 times"):
        assign_tracks(frames[:2], [0])


def test_two_people_in_a_real_video_keep_their_tracks(tmp_path):
    two_people_clip(tmp_path / "two.mp4")
    result = predict_video(tmp_path / "two.mp4", load_model(), every_s=0.5)
    assert [len(f.faces) for f in result.frames] == [2, 2, 2, 2] and result.track_counts() == [4, 4]
    for f in result.frames:  # each track stays on its side, although the largest face moves from left to right
        left = min(range(2), key=lambda j: f.faces[j].box[0])
        assert sorted(f.tracks) == [0, 1] and f.tracks[left] == result.frames[0].tracks[
            min(range(2), key=lambda j: result.frames[0].faces[j].box[0])]
    assert result.frames[0].faces[0].box[0] < 320 < result.frames[-1].faces[0].box[0]  # largest: left, then right
    for k in (0, 1):
        _, probs = result.timeline(track=k)
        expected = [[f.face(k).probs[e] for e in EMOTIONS] for f in result.frames]
        assert np.allclose(probs, expected) and sum(result.summary(k).values()) == pytest.approx(1)
    assert result.to_dict()["frames"][0]["faces"][0]["track"] == result.frames[0].tracks[0]
    text = format_video("two.mp4", result)
    assert "  face 1, in 4 frames, most often: " in text and "  face 2, in 4 frames, most often: " in text
    assert text.splitlines()[-1].startswith("     1.50 s  face 1 ") and "; face 2 " in text.splitlines()[-1]
