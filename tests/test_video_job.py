"""Video analysis as a subprocess job: the same result as in-process, started once, stopped, killed, broken inputs."""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
from photos import astronaut, face_clip, group_scene, matched, turned_astronaut, write_video

from fer_core.checkpoint import load_model
from fer_core.video import VideoError, predict_video, video_info
from fer_core.video_job import (
    ANNOTATED,
    CROPS,
    RESULT,
    cancel_video_job,
    load_result,
    main,
    read_video_job,
    start_annotation_job,
    start_video_job,
    wait_video_job,
)
from fer_core.video_out import annotate_video


def same(a, b) -> bool:
    """Two VideoPredictions agree in every number, every crop and every crop margin."""
    pairs = [(p, q) for fa, fb in zip(a.frames, b.frames, strict=True) for p, q in zip(fa.faces, fb.faces, strict=True)]
    return (a.to_dict() == b.to_dict() and a.info == b.info and all(np.array_equal(p.crop, q.crop) for p, q in pairs)
            and all(p.margin == q.margin for p, q in pairs))


def test_a_job_gives_what_predict_video_gives_and_runs_once(tmp_path):
    face_clip(tmp_path / "clip.mp4")
    job = tmp_path / "job"
    assert read_video_job(job).state == "none" and not read_video_job(job).active
    started = start_video_job(tmp_path / "clip.mp4", job, every_s=0.5)
    assert started.active and started.pid
    done = wait_video_job(job, timeout=120)
    assert (done.state, done.done, done.message, done.pid) == ("finished", 1.0, "", started.pid)
    expected = predict_video(tmp_path / "clip.mp4", load_model(), 0.5)
    result = load_result(job)
    assert same(result, expected) and sum(bool(f.faces) for f in result.frames) == 4  # 6 samples, the cup in 2
    assert start_video_job(tmp_path / "clip.mp4", job, every_s=0.5) == done  # finished: nothing runs again
    assert start_video_job(tmp_path / "clip.mp4", job, every_s=0.5, again=True) == done  # again is for unfinished ones


def test_a_job_with_small_faces_finds_a_group_videos_faces(tmp_path, sample_data):
    group, placed = group_scene(sample_data.split("PublicTest")[0].numpy(), 0.04, (1600, 1200))  # 40 faces of 48 px
    write_video(tmp_path / "group.mp4", [group] * 4, fps=2.0)
    model = load_model()
    default = predict_video(tmp_path / "group.mp4", model, 0.5)
    assert not any(matched(f.box, p) for frame in default.frames for f in frame.faces for p in placed)  # too small
    started = start_video_job(tmp_path / "group.mp4", tmp_path / "job", every_s=0.5, small_faces=True)
    assert "--small-faces" in json.loads((tmp_path / "job" / "job.json").read_text())["args"]
    assert wait_video_job(tmp_path / "job", timeout=120).state == "finished" and started.pid
    result = load_result(tmp_path / "job")
    assert same(result, predict_video(tmp_path / "group.mp4", model, 0.5, small_faces=True))
    found = [sum(any(matched(f.box, p) for f in frame.faces) for p in placed) for frame in result.frames]
    assert len(found) == 4 and min(found) >= 18, found  # (25-28 of 40, found in the first frame and followed after)


def test_an_annotation_job_draws_a_finished_analysis(tmp_path):
    face_clip(tmp_path / "clip.mp4")
    main([str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "job")])
    start_annotation_job(tmp_path / "clip.mp4", tmp_path / "drawn", tmp_path / "job", max_side=256, max_fps=5)
    assert wait_video_job(tmp_path / "drawn", timeout=120).state == "finished" and not (tmp_path / "drawn" / RESULT).exists()
    expected = annotate_video(tmp_path / "clip.mp4", load_result(tmp_path / "job"), tmp_path / "here.webm", 256, 5)
    made = video_info(tmp_path / "drawn" / ANNOTATED)
    assert made == video_info(expected) and (made.width, made.frame_count) == (256, 15)  # every 2nd frame of 30
    start_annotation_job(tmp_path / "clip.mp4", tmp_path / "nothing", tmp_path / "no analysis")
    failed = wait_video_job(tmp_path / "nothing", timeout=120)
    assert failed.state == "failed" and "no readable" in failed.message


def test_the_job_command_in_process_whole_frames(tmp_path):
    face_clip(tmp_path / "clip.mp4")
    before = signal.getsignal(signal.SIGINT)
    assert main([str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "job"), "--every", "1", "--no-detect"]) == 0
    assert signal.getsignal(signal.SIGINT) is before  # its stop handlers are put back
    result = load_result(tmp_path / "job")
    assert same(result, predict_video(tmp_path / "clip.mp4", load_model(), 1.0, detect=False))
    assert [len(f.faces) for f in result.frames] == [1, 1, 1] and result.frames[0].faces[0].margin == 0.0
    status = json.loads((tmp_path / "job" / "status.json").read_text())
    assert status["state"] == "finished" and status["pid"] == os.getpid()
    assert read_video_job(tmp_path / "job").state == "finished"  # run by hand: no job.json, its status is enough


def test_a_broken_video_fails_with_the_reason_once(tmp_path):
    (tmp_path / "notes.mp4").write_bytes(b"not a video")
    first = start_video_job(tmp_path / "notes.mp4", tmp_path / "job")
    failed = wait_video_job(tmp_path / "job", timeout=120)
    assert failed.state == "failed" and "cannot read this file as a video" in failed.message
    assert start_video_job(tmp_path / "notes.mp4", tmp_path / "job") == failed and failed.pid == first.pid
    with pytest.raises(VideoError, match="no readable"):
        load_result(tmp_path / "job")
    with pytest.raises(ValueError, match="tta must be one of"):
        start_video_job(tmp_path / "notes.mp4", tmp_path / "other", tta="sideways")
    assert not (tmp_path / "other").exists()


def running(folder, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while (status := read_video_job(folder)).state != "running":
        assert status.active and time.monotonic() < deadline, status
        time.sleep(0.05)
    return status


@pytest.mark.slow
def test_stopping_starting_over_and_a_killed_job(tmp_path):
    face = astronaut().resize((160, 160))
    write_video(tmp_path / "long.mp4", [face] * 600, fps=5)  # 2 minutes: 600 samples, seconds of work
    job, video = tmp_path / "job", tmp_path / "long.mp4"
    first = start_video_job(video, job, every_s=0.2)
    running(job)
    assert cancel_video_job(job)
    stopped = wait_video_job(job)
    assert stopped.state == "stopped" and "(SIGTERM)" in stopped.message and "nothing was saved" in stopped.message
    assert not (job / RESULT).exists() and not (job / CROPS).exists() and not cancel_video_job(job)
    assert start_video_job(video, job, every_s=0.2) == stopped  # left as it is unless asked again

    second = start_video_job(video, job, every_s=0.2, again=True)  # stopped while still importing: no handler yet
    assert second.state == "starting" and second.pid != first.pid and cancel_video_job(job)
    assert wait_video_job(job).message == "stopped on request before the end; nothing was saved"

    third = start_video_job(video, job, every_s=0.2, again=True)
    running(job)
    os.kill(third.pid, signal.SIGKILL)  # no chance to say anything: the dead process tells
    killed = wait_video_job(job)
    assert killed.state == "interrupted" and "ended without a result" in killed.message


def test_a_turned_face_keeps_its_angle_through_the_job_files(tmp_path):
    write_video(tmp_path / "tilted.mp4", [turned_astronaut(30)[0]] * 10, 10.0)
    assert main([str(tmp_path / "tilted.mp4"), "--out", str(tmp_path / "job"), "--every", "0.5"]) == 0
    result = load_result(tmp_path / "job")
    angles = [f.angle for frame in result.frames for f in frame.faces]
    assert len(angles) == 2 and all(20 < a < 40 for a in angles)
    assert same(result, predict_video(tmp_path / "tilted.mp4", load_model(), every_s=0.5))


def test_damaged_result_files_are_refused(tmp_path):
    face_clip(tmp_path / "clip.mp4")
    main([str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "job")])
    crops = np.load(tmp_path / "job" / CROPS)
    np.save(tmp_path / "job" / CROPS, crops[:-1])
    with pytest.raises(VideoError, match="does not match"):
        load_result(tmp_path / "job")
    np.save(tmp_path / "job" / CROPS, np.concatenate([crops, crops[:1]]))
    with pytest.raises(VideoError, match="more faces"):
        load_result(tmp_path / "job")
    np.save(tmp_path / "job" / CROPS, crops)
    (tmp_path / "job" / RESULT).write_text("{")
    with pytest.raises(VideoError, match="no readable video analysis"):
        load_result(tmp_path / "job")
