"""Videos: frames sampled on a time grid, faces classified as in photos, a timeline, the CLI, and broken files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from photos import ASTRONAUT_FACE, face_clip, iou, two_people_clip, write_video

import fer_core.images
import fer_core.predict as predict_mod
import fer_core.video as video_mod
import fer_core.video_out as video_out
from fer_core.checkpoint import load_model
from fer_core.config import EMOTIONS
from fer_core.predict import annotate, predict_image
from fer_core.video import (
    VideoError,
    format_video,
    predict_video,
    read_frame,
    sample_frames,
    smooth,
    video_info,
)
from fer_core.video_out import annotate_video


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    return path, face_clip(path)


def test_info_of_a_real_clip(clip):
    info = video_info(clip[0])
    assert (info.width, info.height, info.fps, info.frame_count) == (512, 512, 10.0, 30)
    assert info.duration_s == pytest.approx(3.0)


def test_frames_sampled_every_half_second_with_faces_where_the_portrait_is(model, clip):
    path, has_face = clip
    result = predict_video(path, model, every_s=0.5)
    assert [f.index for f in result.frames] == [0, 5, 10, 15, 20, 25]
    assert [f.time_s for f in result.frames] == pytest.approx([0, 0.5, 1, 1.5, 2, 2.5])
    assert [bool(f.faces) for f in result.frames] == [has_face[f.index] for f in result.frames]
    first, mirrored = result.frames[0].faces[0], result.frames[-1].faces[0]
    assert iou(first.box, ASTRONAUT_FACE) > 0.7
    assert mirrored.box[0] > 512 / 2 - 40  # the mirrored face is on the other side
    times, probs = result.timeline()
    assert times.tolist() == pytest.approx([0, 0.5, 1, 1.5, 2, 2.5]) and probs.shape == (6, len(EMOTIONS))
    assert np.isnan(probs[2:4]).all() and np.allclose(probs[[0, 1, 4, 5]].sum(1), 1, atol=1e-5)
    labels = [f.faces[0].label for f in result.frames if f.faces]
    assert sum(result.summary().values()) == pytest.approx(1) and result.summary() == {
        e: labels.count(e) / 4 for e in sorted(set(labels), key=lambda e: -labels.count(e))}


def test_faces_are_followed_between_whole_frame_searches_with_the_same_results(model, clip, monkeypatch):
    from fer_core.faces import HaarDetector
    from fer_core.tracking import iou

    path, truth = clip
    whole = []
    real = HaarDetector.detect_turned
    monkeypatch.setattr(HaarDetector, "detect_turned", lambda self, g, *side_views: whole.append(1) or real(self, g, *side_views))
    followed = predict_video(path, model, every_s=0.1)
    # whole-frame searches: frame 0, frame 10 (a second later; the cup), 11-19 (no face to follow), 20 (the face back)
    assert len(whole) == 12
    whole.clear()
    monkeypatch.setattr(video_mod, "WHOLE_FRAME_EVERY_S", 0.0)  # every frame searched whole, as before following
    searched = predict_video(path, model, every_s=0.1)
    assert len(whole) == 30
    assert [bool(f.faces) for f in followed.frames] == truth == [bool(f.faces) for f in searched.frames]
    for a, b in zip(followed.frames, searched.frames, strict=True):
        assert len(a.faces) == len(b.faces)
        for p, q in zip(a.faces, b.faces, strict=True):
            assert iou(p.box, q.box) > 0.7 and p.label == q.label


def test_a_sampled_frame_read_back_gives_the_photo_prediction(model, clip):
    path, _ = clip
    result = predict_video(path, model, every_s=1.0)
    frame = result.frames[-1]
    assert frame.index == 20
    (face,) = predict_image(read_frame(path, frame.index), model)  # seeking lands on the same decoded frame
    assert face.box == frame.faces[0].box and np.array_equal(face.crop, frame.faces[0].crop)
    assert [face.probs[e] for e in EMOTIONS] == pytest.approx([frame.faces[0].probs[e] for e in EMOTIONS], abs=1e-5)


def test_no_detect_classifies_every_frame_whole_and_tta_is_checked(model, clip):
    result = predict_video(clip[0], model, every_s=1.5, detect=False)
    assert [f.index for f in result.frames] == [0, 15] and all(f.faces[0].box == (0, 0, 512, 512) for f in result.frames)
    with pytest.raises(ValueError, match="tta must be one of"):
        predict_video(clip[0], model, tta="sideways")


def test_a_long_video_is_sampled_sparsely_and_progress_reaches_one(model, clip, monkeypatch):
    monkeypatch.setattr(video_mod, "CHUNK", 2)
    seen: list[float] = []
    result = predict_video(clip[0], model, every_s=0.1, max_samples=4, progress=seen.append)
    assert result.every_s == pytest.approx(0.75)
    assert [f.index for f in result.frames] == [0, 7, 15, 22]  # the frames nearest to 0, 0.75, 1.5 and 2.25 s
    assert seen == sorted(seen) and len(seen) == 3 and seen[-1] == 1.0  # two batches of two frames, then done
    assert len(list(sample_frames(clip[0], every_s=0.1, max_samples=30))) == 30  # every frame, none twice


def test_mjpeg_avi_works_too(model, tmp_path, clip):
    frames = [read_frame(clip[0], i) for i in (0, 10)]
    write_video(tmp_path / "two.avi", frames, fps=2, fourcc="MJPG")
    result = predict_video(tmp_path / "two.avi", model)
    assert [(f.index, bool(f.faces)) for f in result.frames] == [(0, True), (1, False)]


def test_broken_videos_give_clear_errors(tmp_path, clip, monkeypatch, model):
    (tmp_path / "notes.mp4").write_text("not a video\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    data = clip[0].read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])  # cut off while copying: no index at the end
    for name in ("notes.mp4", "empty.mp4", "half.mp4"):
        with pytest.raises(VideoError, match="cannot read this file as a video"):
            predict_video(tmp_path / name, model)
    with pytest.raises(VideoError, match="no such file"):
        video_info(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="not a file"):
        video_info(tmp_path)
    with pytest.raises(VideoError, match="no frame 30"):
        read_frame(clip[0], 30)
    with pytest.raises(ValueError, match="every_s must be positive"):
        predict_video(clip[0], model, every_s=0)
    monkeypatch.setattr(video_mod, "MAX_PIXELS", 512 * 511)
    with pytest.raises(VideoError, match="512 x 512 pixels exceed the limit"):
        video_info(clip[0])
    assert fer_core.images.MAX_PIXELS == 50_000_000


def test_cli_video_lines_in_input_order_with_errors(clip, tmp_path, run_main):
    path, _ = clip
    (tmp_path / "notes.mp4").write_text("not a video\n")
    r = run_main(predict_mod.main, "--threads", 1, "--json", "--every", 1, path, tmp_path / "notes.mp4")
    assert r.returncode == 1 and "1 of 2 inputs failed" in r.stderr
    row, error = map(json.loads, r.stdout.splitlines())
    assert row["path"] == str(path) and row["video"]["duration_s"] == 3.0 and row["every_s"] == 1.0
    assert [(f["frame"], len(f["faces"])) for f in row["frames"]] == [(0, 1), (10, 0), (20, 1)]
    assert error["path"] == str(tmp_path / "notes.mp4") and "cannot read this file as a video" in error["error"]
    r = run_main(predict_mod.main, "--threads", 1, path)
    assert r.returncode == 0 and r.stdout.strip() == format_video(str(path), predict_video(path, load_model()))
    assert "6 frames sampled, one every 0.5 s; a face in 4\n  most often: " in r.stdout and "1.00 s  no face" in r.stdout
    r = run_main(predict_mod.main, "--every", "-1", path)
    assert r.returncode == 2 and "--every must be a positive number of seconds" in r.stderr


def _edge_change(frame, original, box) -> float:
    """Mean absolute change along a box's left edge (where annotate draws the outline)."""
    x, y, w, h = box
    a, b = (np.asarray(im, dtype=np.float64)[y : y + h, max(0, x - 1) : x + 2] for im in (frame, original))
    return float(np.abs(a - b).mean())


def test_annotated_video_holds_each_samples_boxes_until_the_next(model, clip, tmp_path):
    path, _ = clip
    result = predict_video(path, model, every_s=0.5)
    out = annotate_video(path, result, tmp_path / "out" / "clip.annotated.mp4")
    assert video_info(out) == video_info(path) and not list(out.parent.glob(".*part*"))
    box0, box20 = result.frames[0].faces[0].box, result.frames[4].faces[0].box
    for index, box, drawn in ((3, box0, True), (12, box0, False), (23, box20, True), (23, box0, False)):
        change = _edge_change(read_frame(out, index), read_frame(path, index), box)
        assert (change > 40) == drawn, (index, box, change)  # frame 12 shows the cup: no face, nothing drawn
    x, y, w, h = box0  # around the box and its label, frame 3 looks like annotate() on frame 3 (up to MPEG-4's losses)
    region = lambda im: np.asarray(im, dtype=np.float64)[max(0, y - 30) : y + h, x : x + w]  # noqa: E731
    shown, plain = region(read_frame(out, 3)), region(read_frame(path, 3))
    expected = region(annotate(read_frame(path, 3), result.frames[0].faces))
    assert np.abs(shown - expected).mean() < 0.5 * np.abs(shown - plain).mean()  # measured: 4.5 against 13.0


def test_annotated_video_numbers_the_faces_by_person_where_there_are_several(model, clip, tmp_path, monkeypatch):
    two_people_clip(tmp_path / "two.mp4")
    seen, real = [], video_out.annotate
    monkeypatch.setattr(video_out, "annotate", lambda image, faces, names=None: seen.append(names) or real(image, faces, names))
    for path in (tmp_path / "two.mp4", clip[0]):
        result = predict_video(path, model, every_s=0.5)
        seen.clear()
        annotate_video(path, result, tmp_path / "out.mp4")
        people = len(result.track_counts())
        expected = [[str(k + 1) for k in f.tracks] if people > 1 else None for f in result.frames if f.faces]
        assert seen[::2] == expected and people == (2 if path.name == "two.mp4" else 1)  # drawn on black, then white


def test_annotated_webm_smaller_and_slower_and_bad_names(model, clip, tmp_path, monkeypatch):
    path, _ = clip
    result = predict_video(path, model, every_s=1.0)
    out = annotate_video(path, result, tmp_path / "small.webm", max_side=256, max_fps=5)
    info = video_info(out)
    assert (info.width, info.height, info.fps, info.frame_count) == (256, 256, 5.0, 15)
    with pytest.raises(ValueError, match="can be .mp4, .avi, .webm"):
        annotate_video(path, result, tmp_path / "clip.gif")
    with monkeypatch.context() as m:  # a failure half way leaves no file behind, finished or not
        m.setattr(video_out, "_overlay", lambda *a: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            annotate_video(path, result, tmp_path / "failed.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.webm"]


def test_cli_annotates_videos_beside_images(clip, tmp_path, run_main):
    from photos import astronaut

    astronaut().save(tmp_path / "clip.png")  # the same stem as the video: both keep their own suffix
    r = run_main(predict_mod.main, "--threads", 1, "--annotate", tmp_path / "out", clip[0], tmp_path / "clip.png")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.annotated.jpg", "clip.annotated.mp4"]
    assert video_info(tmp_path / "out" / "clip.annotated.mp4").frame_count == 30


def test_sparse_samples_seek_and_give_the_frames_decoding_would(tmp_path, monkeypatch):
    from photos import astronaut, coffee

    frames = [(astronaut() if (i // 7) % 2 else coffee()).resize((96, 96)).rotate(i * 3) for i in range(160)]
    write_video(tmp_path / "long.mp4", frames, fps=10)  # 16 s, changing every frame
    seeks, real = [], video_mod._seek_frames
    monkeypatch.setattr(video_mod, "_seek_frames", lambda *a: seeks.append(1) or real(*a))
    sought = [(i, t, np.asarray(im)) for i, t, im in sample_frames(tmp_path / "long.mp4", every_s=5.0)]
    assert seeks and [(i, t) for i, t, _ in sought] == [(0, 0.0), (50, 5.0), (100, 10.0), (150, 15.0)]
    monkeypatch.setattr(video_mod, "SEEK_GAP_S", 1e9)  # the same samples by decoding every frame
    decoded = [(i, t, np.asarray(im)) for i, t, im in sample_frames(tmp_path / "long.mp4", every_s=5.0)]
    assert len(seeks) == 1 and [(i, t) for i, t, _ in decoded] == [(i, t) for i, t, _ in sought]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(sought, decoded, strict=True))


def test_cli_csv_has_a_row_per_face_of_photos_and_videos_and_one_per_error(clip, tmp_path, run_main):
    import csv

    from photos import astronaut, coffee

    astronaut().save(tmp_path / "astronaut.png")
    coffee().save(tmp_path / "coffee.png")
    (tmp_path / "notes.mp4").write_text("not a video\n")
    table = tmp_path / "faces.csv"
    r = run_main(predict_mod.main, "--threads", 1, "--csv", table, "--every", 1, tmp_path / "astronaut.png", clip[0],
                 tmp_path / "coffee.png", tmp_path / "notes.mp4")
    assert r.returncode == 1 and "1 of 4 inputs failed" in r.stderr
    rows = list(csv.DictReader(table.open()))
    assert [(row["path"].rsplit("/", 1)[1], row["frame"], row["face"]) for row in rows] == [
        ("astronaut.png", "", "1"), ("clip.mp4", "0", "1"), ("clip.mp4", "10", ""), ("clip.mp4", "20", "1"),
        ("coffee.png", "", ""), ("notes.mp4", "", "")]
    (photo,) = predict_image(tmp_path / "astronaut.png", load_model())
    assert rows[0]["label"] == photo.label and tuple(int(rows[0][k]) for k in "xywh") == photo.box
    assert [float(rows[0][e]) for e in EMOTIONS] == pytest.approx([photo.probs[e] for e in EMOTIONS], abs=1e-4)
    assert float(rows[3]["time_s"]) == 2.0 and rows[3]["label"] in EMOTIONS
    assert rows[-1]["error"].startswith("cannot read this file as a video") and not rows[-2]["error"]
    r = run_main(predict_mod.main, "--csv", tmp_path / "missing" / "faces.csv", clip[0])
    assert r.returncode == 2 and "cannot write" in r.stderr and "No such file or directory" in r.stderr


def test_smoothing_averages_neighbours_and_keeps_gaps():
    probs = np.array([[1, 0], [0, 1], [np.nan, np.nan], [1, 0], [0.5, 0.5]])
    assert np.array_equal(smooth(probs, 1), probs, equal_nan=True)
    out = smooth(probs, 3)
    assert np.isnan(out[2]).all() and np.allclose(np.nansum(out, axis=1)[[0, 1, 3, 4]], 1)
    assert out[0] == pytest.approx([0.5, 0.5]) and out[1] == pytest.approx([0.5, 0.5])  # the gap is left out of the mean
    assert out[3] == pytest.approx([0.75, 0.25]) and out[4] == pytest.approx([0.75, 0.25])
    assert smooth(probs, 99)[0] == pytest.approx([0.625, 0.375])  # wider than the video: the mean of every face
    with pytest.raises(ValueError, match="at least 1 sample"):
        smooth(probs, 0)
