"""Video analysis (and its annotated copy) as a detached subprocess: progress in status.json, the result in files."""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import (
    DEFAULT_CHECKPOINT,
    IMAGE_SIZE,
    atomic_write_bytes,
    atomic_write_json,
    cli_prog,
    read_json,
    set_threads,
    thread_count,
)
from .predict import FacePrediction
from .procs import exit_note, is_trainer, launch, log_tail, wait_for
from .transforms import TTA_MODES
from .video import DEFAULT_EVERY_S, FrameFaces, VideoError, VideoInfo, VideoPrediction

JOB, STATUS, RESULT, CROPS, LOG = "job.json", "status.json", "result.json", "crops.npy", "job.log"
ANNOTATED = "annotated.webm"  # what an annotation job writes instead of RESULT and CROPS
STOP = "stop"  # written by cancel_video_job: the process was asked to end (it may be killed before it can say so)
PROGRESS_EVERY_S = 0.25  # status.json is rewritten at most this often while frames are analysed
_START_LOCK = threading.Lock()  # dashboard sessions are threads of one process: one start per folder


@dataclass(frozen=True)
class VideoJobStatus:
    """Where a video analysis stands: its state, the fraction done, and why it ended where it did not finish."""

    state: str  # none (never started), starting, running, finished, failed, stopped, interrupted (process gone)
    done: float = 0.0  # fraction of the video analysed (by time)
    message: str = ""  # the error, or why it stopped
    pid: int | None = None
    started: float | None = None
    updated: float | None = None

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running")


def read_video_job(folder: str | os.PathLike[str]) -> VideoJobStatus:
    """The job's status, with its process checked: a job whose process is gone without saying so is interrupted."""
    folder = Path(folder)
    job, status = read_json(folder / JOB) or {}, read_json(folder / STATUS) or {}
    pid, saved = job.get("pid") or status.get("pid"), status.get("state")  # status alone: `python -m` by hand
    if not job and not status:
        return VideoJobStatus("none")
    alive = is_trainer(pid)
    if not alive:  # read again: a job that wrote its last status and ended after the first read is not interrupted
        status = read_json(folder / STATUS) or status
        saved = status.get("state")
    if alive:
        state = "running" if saved else "starting"  # (still running while it writes its last status)
    elif saved in ("finished", "failed", "stopped"):
        state = saved
    elif (folder / STOP).exists():
        state = "stopped"
    else:
        state = "interrupted"
    message = str(status.get("message") or "")
    if state == "stopped" and not message:
        message = "stopped on request before the end; nothing was saved"
    if state == "finished" and not ((folder / RESULT).is_file() or (folder / ANNOTATED).is_file()):
        state, message = "failed", f"the result files are missing from {folder}"
    if state == "interrupted" and not message:
        note = exit_note(pid)  # known where this process started the job
        message = f"the analysis ended without a result ({note or 'killed, or out of memory'})"
        tail = log_tail(folder / LOG, 2)
        message += f": {' / '.join(tail)}" if tail and not tail[-1].startswith("$ ") else ""
    done = status.get("done")
    return VideoJobStatus(state, float(done) if isinstance(done, (int, float)) else 0.0, message, pid,
                          job.get("started") or status.get("started"), status.get("updated"))


def start_video_job(video: str | os.PathLike[str], folder: str | os.PathLike[str],
                    checkpoint: str | os.PathLike[str] | None = None, every_s: float = DEFAULT_EVERY_S,
                    detect: bool = True, tta: str = "none", again: bool = False, small_faces: bool = False) -> VideoJobStatus:
    """Analyse `video` in a subprocess writing to `folder` (one folder per video and settings). A job there that runs
    or has ended is left as it is and its status returned, unless `again` asks to start over one that did not finish."""
    if tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
    if not every_s > 0:
        raise ValueError(f"every_s must be positive, not {every_s}")
    return _start(folder, again, [str(Path(video).resolve()), "--every", repr(every_s), "--tta", tta, "--checkpoint",
                                  str(Path(checkpoint or DEFAULT_CHECKPOINT).resolve()), *([] if detect else ["--no-detect"]),
                                  *(["--small-faces"] if small_faces else [])])


def start_annotation_job(video: str | os.PathLike[str], folder: str | os.PathLike[str],
                         analysis: str | os.PathLike[str], max_side: int | None = None, max_fps: float | None = None,
                         again: bool = False) -> VideoJobStatus:
    """Draw a finished analysis (the folder of a video job) on the video in a subprocess, as folder/annotated.webm
    (fer_core.video_out.annotate_video); started once per folder, like start_video_job."""
    return _start(folder, again, [str(Path(video).resolve()), "--annotate-from", str(Path(analysis).resolve()),
                                  *(["--max-side", str(max_side)] if max_side else []),
                                  *(["--max-fps", repr(max_fps)] if max_fps else [])])


def _start(folder: str | os.PathLike[str], again: bool, args: list[str]) -> VideoJobStatus:
    folder = Path(folder).resolve()
    with _START_LOCK:
        status = read_video_job(folder)
        if status.active or status.state == "finished" or (status.state != "none" and not again):
            return status
        folder.mkdir(parents=True, exist_ok=True)
        for name in (JOB, STATUS, RESULT, CROPS, ANNOTATED, STOP):  # nothing of the run before is read as this one
            (folder / name).unlink(missing_ok=True)
        args = ["fer_core.video_job", *args, "--out", str(folder)]
        proc = launch(folder, args, log_name=LOG)
        atomic_write_json(folder / JOB, {"pid": proc.pid, "args": args, "started": time.time()})
    return read_video_job(folder)


def cancel_video_job(folder: str | os.PathLike[str]) -> bool:
    """Ask a running analysis to stop (it saves no result); False where none is running."""
    status = read_video_job(folder)
    if not status.active or status.pid is None:
        return False
    (Path(folder) / STOP).touch()
    os.kill(status.pid, signal.SIGTERM)
    return True


def wait_video_job(folder: str | os.PathLike[str], timeout: float = 120.0, poll: float = 0.1) -> VideoJobStatus:
    """Block until the analysis is no longer starting or running, or raise TimeoutError."""
    return wait_for(read_video_job, folder, timeout, poll)


# ---------------------------------------------------------------------------------------------- the result on disk


def save_result(result: VideoPrediction, folder: str | os.PathLike[str]) -> None:
    """The whole VideoPrediction: numbers in result.json, the faces' 48x48 crops (in frame and face order) in
    crops.npy; each file written whole before it is renamed into place."""
    folder = Path(folder)
    crops = [f.crop for frame in result.frames for f in frame.faces]
    buf = io.BytesIO()
    np.save(buf, np.stack(crops) if crops else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8))
    atomic_write_bytes(folder / CROPS, buf.getvalue())
    atomic_write_json(folder / RESULT, {
        "info": asdict(result.info), "every_s": result.every_s, "truncated": result.truncated,
        "frames": [{"index": f.index, "time_s": f.time_s, "tracks": f.tracks,
                    "faces": [{**p.to_dict(), "margin": p.margin} for p in f.faces]} for f in result.frames]})


def load_result(folder: str | os.PathLike[str]) -> VideoPrediction:
    """The VideoPrediction save_result wrote; raises VideoError where the files are missing or do not match."""
    folder = Path(folder)
    data = read_json(folder / RESULT)
    try:
        crops = np.load(folder / CROPS, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise VideoError(f"{folder}: no readable {CROPS} ({e})") from e
    if data is None or crops.dtype != np.uint8 or crops.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise VideoError(f"{folder}: no readable video analysis ({RESULT} and {CROPS})")
    it, frames = iter(crops), []
    try:
        for f in data["frames"]:
            faces = [FacePrediction(box=tuple(p["box"]), label=p["label"], probs=p["probs"], confidence=p["confidence"],
                                    crop=next(it), margin=p["margin"], angle=p.get("angle", 0.0),
                                    side=bool(p.get("side", False)), issues=tuple(p.get("issues", ())))
                     for p in f["faces"]]
            frames.append(FrameFaces(f["index"], f["time_s"], faces, list(f["tracks"])))
        result = VideoPrediction(VideoInfo(**data["info"]), data["every_s"], frames, bool(data["truncated"]))
    except (KeyError, TypeError, StopIteration) as e:
        raise VideoError(f"{folder}: {RESULT} does not match {CROPS} ({type(e).__name__}: {e})") from e
    if next(it, None) is not None:
        raise VideoError(f"{folder}: {CROPS} holds more faces than {RESULT}")
    return result


# ---------------------------------------------------------------------------------------------- the subprocess


class _Stopped(BaseException):
    """SIGTERM or SIGINT: a BaseException (like KeyboardInterrupt), so that no `except Exception` on the way swallows it."""


def _stop(signum: int, frame: Any) -> None:
    raise _Stopped(signal.Signals(signum).name)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=cli_prog("fer_core.video_job"), description="Analyse one video into a folder "
                                "(status.json while it runs, then result.json and crops.npy); the dashboard's video job.")
    p.add_argument("video")
    p.add_argument("--out", required=True, help="the job's folder")
    p.add_argument("--checkpoint", default=None, help=f"model checkpoint (default: {DEFAULT_CHECKPOINT})")
    p.add_argument("--every", type=float, default=DEFAULT_EVERY_S, help="seconds between sampled frames")
    p.add_argument("--tta", default="none", choices=TTA_MODES)
    p.add_argument("--no-detect", action="store_true", help="each frame is one face (no face detection)")
    p.add_argument("--small-faces", action="store_true", help="also faces from about 3%% of the short side (slower)")
    p.add_argument("--threads", type=thread_count, default=0, help="torch threads (0: all cores)")
    p.add_argument("--annotate-from", metavar="DIR", default=None,
                   help=f"instead of analysing: draw the analysis in DIR on the video, as --out/{ANNOTATED}")
    p.add_argument("--max-side", type=int, default=None, help="with --annotate-from: shrink frames to this side")
    p.add_argument("--max-fps", type=float, default=None, help="with --annotate-from: keep at most this frame rate")
    return p


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError, load_model
    from .video import predict_video
    from .video_out import annotate_video

    args = get_args_parser().parse_args(argv)
    out, started, last = Path(args.out), time.time(), [0.0]
    out.mkdir(parents=True, exist_ok=True)

    def write(state: str, done: float, message: str = "") -> None:
        atomic_write_json(out / STATUS, {"state": state, "done": round(done, 4), "message": message, "pid": os.getpid(),
                                         "started": started, "updated": time.time()})

    def progress(done: float) -> None:
        if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
            last[0] = time.monotonic()
            write("running", done)

    handlers = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    write("running", 0.0)
    try:
        set_threads(args.threads)
        if args.annotate_from:
            annotate_video(args.video, load_result(args.annotate_from), out / ANNOTATED, args.max_side, args.max_fps,
                           progress=progress)
        else:
            model = load_model(args.checkpoint or DEFAULT_CHECKPOINT)
            result = predict_video(args.video, model, args.every, detect=not args.no_detect, tta=args.tta, progress=progress,
                                   small_faces=args.small_faces)
            save_result(result, out)
    except _Stopped as e:
        done = float((read_json(out / STATUS) or {}).get("done", 0.0))
        write("stopped", done, f"stopped ({e}) at {done:.0%} of the video; nothing was saved")
        return 1
    except (VideoError, CheckpointError, OSError) as e:
        write("failed", 0.0, str(e))
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug, not the input: the traceback goes to job.log, the status says what happened
        write("failed", 0.0, f"{type(e).__name__}: {e} (see {out / LOG})")
        raise
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    write("finished", 1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
