"""Train several configs at once on one GPU (or the CPU) inside a fixed wall-clock budget; pack the data to travel.

The device machine gets a copy of the work tree (64 MiB in all) and no ../shared, so the data travels packed:
    python scripts/gpu_sweep.py pack --data ../shared/data/fer2013.csv.gz --out .devdata/fer.npz   # 48 MB, lossless
Then, on the machine with the GPU:
    python scripts/gpu_sweep.py run --data .devdata/fer.npz --out $OUT --budget-s 480 --device cuda \\
        --spec '{"name": "vgg64", "model": "vgg", "width": 64}' --spec '{"name": "vgg48", "model": "vgg", "width": 48}'
Every spec is a TrainConfig (plus `name` and `max_epochs`) run in its own process (`gpu_sweep.py one`), all at
once. Each first measures its own images/s while the others run, then sets `epochs` so that its whole cosine
schedule fits the budget; a timer stops it cleanly at the hard deadline in any case. OUT gets NAME.pt (best epoch
on the validation split, fp16) per spec and sweep.json: per spec its final config, state and every epoch's metrics
(`unsweep` turns them back into run folders, for the model card). Few files come back from the device machine,
hence one summary file.
A schedule longer than one call (the device tool allows 600 s a command): plan it in the first call and go on in the
next with --resume, keeping --runs on the machine between calls (an ignored folder of the work tree, e.g. runs/):
    python scripts/gpu_sweep.py run ... --runs runs/dev --budget-s 520 --plan-s 720 --spec ...
    python scripts/gpu_sweep.py run ... --runs runs/dev --budget-s 200 --resume --spec ...   # same specs
Models of one sweep can teach the next within the same call: `teacher` scores every ensemble (two or more) of the
candidates that exist on PublicTest and writes the best one's comma list, for the next sweep's "teacher" field:
    python scripts/gpu_sweep.py teacher checkpoints/fer_resnet.pt $OUT/p1/a.pt $OUT/p1/b.pt --data D --out teacher.txt
"""

from __future__ import annotations

import argparse
import json
import lzma
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fer_core.checkpoint import export_checkpoint, load_model, read_checkpoint  # noqa: E402
from fer_core.checks import check_device  # noqa: E402
from fer_core.config import TrainConfig, set_threads  # noqa: E402
from fer_core.data import FERData, find_ferplus, load_dataset, with_vote_shares  # noqa: E402
from fer_core.distill import Teacher, best_teacher, centre_probs, load_teachers  # noqa: E402
from fer_core.runfolder import RunFolder, Stopper  # noqa: E402
from fer_core.targets import select_splits  # noqa: E402
from fer_core.train import build_for_training, fit, train_one_epoch  # noqa: E402
from fer_core.transforms import Normalization  # noqa: E402

_XZ_MED = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 4}]


def _med(up: np.ndarray, left: np.ndarray, upleft: np.ndarray) -> np.ndarray:
    """JPEG-LS's median edge detector: each pixel predicted from its upper, left and upper-left neighbours."""
    lo, hi = np.minimum(up, left), np.maximum(up, left)
    return np.where(upleft >= hi, lo, np.where(upleft <= lo, hi, up + left - upleft))


def _neighbours(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper, left and upper-left neighbours of every pixel of (N, H, W) int16 images: 0 outside the image, except
    that the first column's left neighbour is its upper one."""
    up, left, upleft = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    up[:, 1:], left[:, :, 1:], upleft[:, 1:, 1:] = x[:, :-1], x[:, :, :-1], x[:, :-1, :-1]
    left[:, :, 0] = up[:, :, 0]
    return up, left, upleft


def med_encode(pixels: np.ndarray) -> np.ndarray:
    """(N, H, W) uint8 images -> their prediction residuals modulo 256 (uint8): about 9% smaller than a plain delta
    once compressed (48 MB against 53 for FER2013), so the data and both shipped models travel within 64 MiB."""
    x = pixels.astype(np.int16)
    return ((x - _med(*_neighbours(x))) % 256).astype(np.uint8)


def med_decode(residuals: np.ndarray) -> np.ndarray:
    """Inverse of med_encode, one anti-diagonal at a time (a pixel's neighbours all lie on the two before it), every
    image at once."""
    r = np.ascontiguousarray(residuals.transpose(1, 2, 0), dtype=np.int16)  # (H, W, N): each pixel's N values adjacent
    h, w, n = r.shape
    x = np.zeros((h + 1, w + 1, n), np.int16)  # x[i + 1, j + 1] is pixel (i, j); row 0 and column 0 stay 0
    for k in range(h + w - 1):
        i = np.arange(max(0, k - w + 1), min(h, k + 1))
        j = k - i
        up, upleft = x[i, j + 1], x[i, j]
        left = np.where((j == 0)[:, None], up, x[i + 1, j])
        x[i + 1, j + 1] = (_med(up, left, upleft) + r[i, j]) % 256
    return np.ascontiguousarray(x[1:, 1:].transpose(2, 0, 1)).astype(np.uint8)


def pack(data: FERData, out: str | Path) -> int:
    """Write every split's pixels (median-edge-predicted residuals, xz: lossless), labels and, where data has them, FER+ vote
    shares to one .npz; returns its size."""
    splits = data.splits
    pixels = np.concatenate([data.images[s].numpy() for s in splits])
    blob = lzma.compress(med_encode(pixels).tobytes(), format=lzma.FORMAT_XZ, filters=_XZ_MED)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"pixels_med_xz": np.frombuffer(blob, np.uint8), "shape": np.array(pixels.shape),
              "labels": np.concatenate([data.labels[s].numpy() for s in splits]),
              "splits": np.array(splits), "counts": np.array([len(data.labels[s]) for s in splits])}
    if all(f"dist_{s}" in data.extra for s in splits):
        arrays["dist"] = np.concatenate([data.extra[f"dist_{s}"].numpy() for s in splits])
    np.savez_compressed(out, **arrays)
    return out.stat().st_size


def unpack(path: str | Path) -> FERData:
    """The FERData that pack() wrote."""
    with np.load(path) as z:
        if "pixels_med_xz" in z.files:
            residuals = np.frombuffer(lzma.decompress(z["pixels_med_xz"].tobytes()), np.uint8)
            pixels = med_decode(residuals.reshape(z["shape"].tolist()))
        else:  # format 1, a plain byte delta (xz files name their own filters)
            pixels = np.frombuffer(lzma.decompress(z["pixels_xz"].tobytes()), np.uint8).reshape(-1, 48, 48)
        labels, splits, counts = z["labels"].astype(np.int64), [str(s) for s in z["splits"]], z["counts"].tolist()
        dist = z["dist"] if "dist" in z.files else None
    bounds = np.cumsum([0, *counts]).tolist()
    spans = list(zip(splits, bounds[:-1], bounds[1:], strict=True))
    extra = {} if dist is None else {f"dist_{s}": torch.from_numpy(dist[a:b].copy()) for s, a, b in spans}
    return FERData(images={s: torch.from_numpy(pixels[a:b].copy()) for s, a, b in spans},
                   labels={s: torch.from_numpy(labels[a:b].copy()) for s, a, b in spans}, source=str(path), extra=extra)


def load_any(data_path: str | Path) -> FERData:
    """A packed .npz (pack()'s) or any dataset path fer_core reads."""
    return unpack(data_path) if str(data_path).endswith(".npz") else load_dataset(data_path)


def plan_epochs(budget_s: float, images_per_s: float, n_train: int, n_val: int, max_epochs: int,
                overhead_s: float = 0.3, safety: float = 0.85) -> int:
    """Epochs whose training, per-epoch validation (about a third of a training image each) and saving fit the budget."""
    per_epoch = (n_train + n_val / 3) / max(images_per_s, 1e-9) + overhead_s
    return max(1, min(max_epochs, int(budget_s * safety / per_epoch)))


def measure_speed(cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, images: int = 4096) -> float:
    """Training images/s of cfg on this device (a throwaway model, with cfg's teacher if any: distilling from two
    checkpoints costs about half a training step more; the second of two passes, after warm-up)."""
    device = check_device(cfg.device)
    model, opt = build_for_training(cfg, device)
    xs, ys = x[:images].to(device), y[:images].to(device)
    norm = Normalization.fit(x[:images])
    teachers = load_teachers(cfg.teacher)
    teacher = Teacher(teachers, norm, cfg.precision, device) if teachers else None
    train_one_epoch(model, opt, xs, ys, cfg, norm, epoch=0, teacher=teacher)
    return train_one_epoch(model, opt, xs, ys, cfg, norm, epoch=1, teacher=teacher)["images_per_s"]


def ready_barrier(runs: str | Path, name: str, peers: list[str], timeout_s: float = 90.0) -> float:
    """Mark `name` ready and wait (at most timeout_s) until every peer is, so that all specs measure their speed while
    the others train: a probe run while peers still load data overestimates the shared speed (by 13-35% on the
    third H100 lease, which cut every schedule short). Returns the seconds waited."""
    folder = Path(runs) / ".ready"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).touch()
    t0 = time.time()
    while time.time() - t0 < timeout_s and not all((folder / p).exists() for p in peers):
        time.sleep(0.2)
    return time.time() - t0


def run_spec(spec: dict[str, Any], data_path: str, out: str, runs: str, deadline: float,
             plan_s: float | None = None, resume: bool = False, peers: list[str] | None = None) -> dict[str, Any]:
    """One spec in its own process: measure, plan epochs for plan_s seconds (default: until the deadline), fit until
    done or the deadline, export. With resume, a run folder left by an earlier call goes on with its planned epochs."""
    spec = dict(spec)
    name, max_epochs = spec.pop("name"), int(spec.pop("max_epochs", 300))
    run = Path(runs) / name
    try:
        data = load_any(data_path)
        cfg = TrainConfig().replace(**spec)
        set_threads(cfg.threads)
        resume = resume and (run / "last.pt").exists()
        if resume:  # the earlier call's plan stands: its config (epochs included) is inside last.pt
            speed = 0.0
            saved = TrainConfig.from_dict(read_checkpoint(run / "last.pt")["config"])
            cfg = saved.replace(device=cfg.device, threads=cfg.threads)
            ready_barrier(runs, name, [])  # nothing to measure; only let the peers go
            print(f"[{name}] resuming at the epoch after last.pt's, {cfg.epochs} epochs planned", flush=True)
        else:
            x, y, vx, _ = select_splits(data, cfg)
            ready_barrier(runs, name, peers or [])
            speed = measure_speed(cfg, x, y)
            budget = plan_s if plan_s is not None else deadline - time.time()
            epochs = plan_epochs(budget, speed, len(x), len(vx), max_epochs)
            cfg = cfg.replace(epochs=epochs, patience=0)
            print(f"[{name}] {speed:.0f} img/s -> {epochs} epochs", flush=True)
        stopper = Stopper()
        timer = threading.Timer(max(0.0, deadline - time.time()), lambda: setattr(stopper, "stop", True))
        timer.daemon = True
        timer.start()
        t0 = time.time()

        def on_epoch(row: dict[str, Any]) -> None:
            print(f"[{name}] epoch {row['epoch'] + 1}/{cfg.epochs} train_acc {row['train_acc']:.3f} val_acc {row['val_acc']:.4f} "
                  f"{row['images_per_s']:.0f} img/s", flush=True)

        status = fit(cfg, run, resume=resume, on_epoch_end=on_epoch, stopper=stopper, data=data)
        timer.cancel()
        result = {"name": name, "config": cfg.to_dict(), "probe_images_per_s": speed, "wall_s": time.time() - t0,
                  **{k: status.get(k) for k in ("state", "epoch", "epochs", "best_acc", "best_epoch")}}
        if (run / "best.pt").exists():
            export_checkpoint(run / "best.pt", Path(out) / f"{name}.pt")
        return result | {"metrics": RunFolder(run).read_metrics()}
    except Exception as e:  # noqa: BLE001 - one failing spec must not take the others' results with it
        print(f"[{name}] failed: {type(e).__name__}: {e}", flush=True)
        (Path(runs) / ".ready").mkdir(parents=True, exist_ok=True)
        (Path(runs) / ".ready" / name).touch()  # a failed spec must not hold the others at the barrier
        return {"name": name, "state": "failed", "error": f"{type(e).__name__}: {e}"}


def sweep(specs: list[dict[str, Any]], data_path: str, out: str, runs: str, budget_s: float,
          plan_s: float | None = None, resume: bool = False) -> list[dict[str, Any]]:
    """Run every spec at once, each in its own `python gpu_sweep.py one` process, and write OUT/sweep.json.

    Plain subprocesses rather than multiprocessing: nothing is pickled, a crashing spec cannot hang the pool, and
    the caller's __main__ (a test runner, a Streamlit script) is never re-imported in the workers.
    """
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(runs).mkdir(parents=True, exist_ok=True)
    deadline = time.time() + budget_s
    for old in (Path(runs) / ".ready").glob("*"):
        old.unlink()
    names = ",".join(spec["name"] for spec in specs)
    procs = []
    for spec in specs:
        result = Path(runs) / f"{spec['name']}.result.json"
        result.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "one", "--spec", json.dumps(spec), "--data", data_path,
               "--out", out, "--runs", runs, "--deadline", repr(deadline), "--result", str(result), "--peers", names]
        cmd += (["--plan-s", repr(plan_s)] if plan_s is not None else []) + (["--resume"] if resume else [])
        procs.append((spec["name"], result, subprocess.Popen(cmd)))
    results = []
    for name, result, proc in procs:
        rc = proc.wait()
        if result.exists():
            results.append(json.loads(result.read_text()))
        else:
            results.append({"name": name, "state": "failed", "error": f"worker exited with status {rc} and no result"})
    info = {"budget_s": budget_s, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "results": results}
    (Path(out) / "sweep.json").write_text(json.dumps(info, indent=2) + "\n")
    return results


def pick_teacher(candidates: list[str], data_path: str, out: str | Path, split: str = "PublicTest",
                 device: str = "cpu") -> int:
    """Score each existing candidate and every ensemble of two or more on `split` (centre crop); write the best's
    comma list to `out` (a later sweep's "teacher": the models of a first sweep can teach a second in one call)."""
    x, y = load_any(data_path).split(split)
    paths = [p for p in candidates if Path(p).exists()]
    for p in sorted(set(candidates) - set(paths)):
        print(f"skipped (missing): {p}")
    if not paths:
        print("no candidate exists", file=sys.stderr)
        return 1
    probs = {p: centre_probs(load_model(p), x, device) for p in paths}
    for p, pr in probs.items():
        print(f"{p}: {(pr.argmax(1) == y).float().mean().item():.4f}")
    members, acc = best_teacher(probs, y)
    Path(out).write_text(",".join(members) + "\n")
    print(f"teacher ({split} {acc:.4f}): {','.join(members)}")
    return 0


def unsweep(sweep_json: str | Path, runs: str | Path) -> list[Path]:
    """Recreate RUNS/NAME/{config.json,metrics.jsonl} from sweep.json (what the model card reads)."""
    made = []
    for res in json.loads(Path(sweep_json).read_text())["results"]:
        if "metrics" not in res:
            continue
        run = RunFolder(Path(runs) / res["name"])
        run.write_metrics(res["metrics"])
        (run.path / "config.json").write_text(json.dumps(res["config"], indent=2) + "\n")
        made.append(run.path)
    return made


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="write the dataset as one compact, lossless .npz")
    pk.add_argument("--data", default=None, help="FER2013 CSV (default: the usual locations)")
    pk.add_argument("--out", required=True)
    r = sub.add_parser("run", help="train every --spec at once within --budget-s")
    r.add_argument("--data", required=True, help="a packed .npz or any dataset path fer_core reads")
    r.add_argument("--out", required=True, help="folder for the exported checkpoints and summaries")
    r.add_argument("--runs", default="/tmp/fer_sweep_runs", help="folder for the run folders (checkpoints every epoch)")
    r.add_argument("--budget-s", type=float, required=True, help="wall-clock seconds for the whole sweep")
    r.add_argument("--device", default="cuda", help="device for every spec that does not name one")
    r.add_argument("--spec", action="append", required=True, help="JSON: TrainConfig fields plus name and max_epochs")
    o = sub.add_parser("one", help="(internal) one spec of a sweep, in its own process")
    for flag in ("--spec", "--data", "--out", "--runs", "--result"):
        o.add_argument(flag, required=True)
    o.add_argument("--deadline", type=float, required=True)
    o.add_argument("--peers", default="", help="comma-separated names of the specs to wait for before measuring")
    for q in (r, o):
        q.add_argument("--plan-s", type=float, default=None,
                       help="seconds of training to plan each schedule for (default: --budget-s); more than this call's "
                            "budget when a later call goes on with --resume")
        q.add_argument("--resume", action="store_true",
                       help="a spec whose run folder (under --runs) has last.pt goes on from it with its planned epochs")
    t = sub.add_parser("teacher", help="write the comma list of the checkpoints whose ensemble scores best on --split")
    t.add_argument("checkpoints", nargs="+", help="candidates (missing ones are skipped: a spec may have failed)")
    t.add_argument("--data", required=True, help="a packed .npz or any dataset path fer_core reads")
    t.add_argument("--out", required=True, help="file for the comma list (a spec's \"teacher\")")
    t.add_argument("--split", default="PublicTest", help="the validation split (never the one you report)")
    t.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    u = sub.add_parser("unsweep", help="recreate run folders (config.json, metrics.jsonl) from a sweep.json")
    u.add_argument("sweep_json")
    u.add_argument("--runs", required=True)
    args = p.parse_args(argv)
    if args.cmd == "one":
        res = run_spec(json.loads(args.spec), args.data, args.out, args.runs, args.deadline, args.plan_s, args.resume,
                       [n for n in args.peers.split(",") if n])
        Path(args.result).write_text(json.dumps(res) + "\n")
        return 0 if res.get("state") != "failed" else 1
    if args.cmd == "unsweep":
        for path in unsweep(args.sweep_json, args.runs):
            print(path)
        return 0
    if args.cmd == "teacher":
        return pick_teacher(args.checkpoints, args.data, args.out, args.split, args.device)
    if args.cmd == "pack":
        data = load_dataset(args.data)
        if find_ferplus(Path(data.source)) is not None:
            data = with_vote_shares(data)  # soft-label runs need them; the file beside the CSV does not travel
        size = pack(data, args.out)
        print(f"{args.out}: {size / 1e6:.1f} MB")
        return 0
    specs = [{"device": args.device, **json.loads(s)} for s in args.spec]
    results = sweep(specs, args.data, args.out, args.runs, args.budget_s, args.plan_s, args.resume)
    for res in results:
        print(json.dumps({k: res.get(k) for k in ("name", "state", "epoch", "epochs", "best_acc", "best_epoch", "error")}))
    return 0 if all(res.get("state") != "failed" for res in results) else 1


if __name__ == "__main__":
    sys.exit(main())
