"""scripts/gpu_sweep.py on the CPU: the packed data is lossless, epochs fit the budget, a sweep exports every spec."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from fer_core.checkpoint import load_model
from fer_core.train import RunFolder, bf16_supported

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sweep_mod():
    spec = importlib.util.spec_from_file_location("gpu_sweep", ROOT / "scripts" / "gpu_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pack_round_trip_is_lossless_and_smaller(sweep_mod, sample_data, sample_path, tmp_path):
    size = sweep_mod.pack(sample_data, tmp_path / "fer.npz")
    back = sweep_mod.unpack(tmp_path / "fer.npz")
    assert back.splits == sample_data.splits
    for s in sample_data.splits:
        assert torch.equal(back.images[s], sample_data.images[s])
        assert torch.equal(back.labels[s], sample_data.labels[s])
        assert back.labels[s].dtype == torch.int64
    assert size < sample_path.stat().st_size  # smaller than the gzipped CSV
    assert back.extra == {}


def test_median_edge_coding_is_lossless_on_any_shape_and_extreme_pixels(sweep_mod, sample_data):
    import numpy as np

    faces = sample_data.images["Training"][:40].numpy()
    rng = np.random.default_rng(0)
    cases = [faces, rng.integers(0, 256, (3, 5, 9), dtype=np.uint8), rng.integers(0, 256, (2, 9, 4), dtype=np.uint8),
             np.zeros((2, 48, 48), np.uint8), np.full((2, 48, 48), 255, np.uint8),
             np.tile(np.array([0, 255], np.uint8), (1, 48, 24))]  # stripes: every prediction wraps around
    for x in cases:
        residuals = sweep_mod.med_encode(x)
        assert residuals.dtype == np.uint8 and residuals.shape == x.shape
        assert np.array_equal(sweep_mod.med_decode(residuals), x)
    assert np.abs(sweep_mod.med_encode(faces).astype(np.int8).astype(np.int16)).mean() < np.abs(faces.astype(np.int16)).mean() / 4


def test_unpack_still_reads_the_first_format(sweep_mod, sample_data, tmp_path):
    """Packs written before the median-edge coding (plain byte delta, `pixels_xz`) still load, pixel for pixel."""
    import lzma

    import numpy as np

    splits = sample_data.splits
    pixels = np.concatenate([sample_data.images[s].numpy() for s in splits])
    blob = lzma.compress(pixels.tobytes(), format=lzma.FORMAT_XZ,
                         filters=[{"id": lzma.FILTER_DELTA, "dist": 1}, {"id": lzma.FILTER_LZMA2, "preset": 6}])
    np.savez(tmp_path / "old.npz", pixels_xz=np.frombuffer(blob, np.uint8),
             labels=np.concatenate([sample_data.labels[s].numpy() for s in splits]),
             splits=np.array(splits), counts=np.array([len(sample_data.labels[s]) for s in splits]))
    back = sweep_mod.unpack(tmp_path / "old.npz")
    assert back.splits == splits
    for s in splits:
        assert torch.equal(back.images[s], sample_data.images[s])
        assert torch.equal(back.labels[s], sample_data.labels[s])


def test_pack_carries_the_ferplus_vote_shares(sweep_mod, sample_data, tmp_path):
    from fer_core.data import with_vote_shares

    voted = with_vote_shares(sample_data)
    sweep_mod.pack(voted, tmp_path / "fer.npz")
    back = sweep_mod.unpack(tmp_path / "fer.npz")
    assert set(back.extra) == {f"dist_{s}" for s in sample_data.splits}
    for k, v in voted.extra.items():
        assert torch.equal(back.extra[k], v)
    assert with_vote_shares(back) is back  # a soft-label run on the device needs no vote file beside the .npz


def test_teacher_picks_from_the_candidates_that_exist(sweep_mod, sample_path, fast_checkpoint, tmp_path, capsys):
    from fer_core.config import TrainConfig
    from fer_core.train import fit

    tiny_cfg = TrainConfig(data=str(sample_path), model="small", width=8, batch_size=32, epochs=1, threads=1, limit=128)
    fit(tiny_cfg, tmp_path / "tiny")
    tiny, missing, out = tmp_path / "tiny" / "last.pt", tmp_path / "missing.pt", tmp_path / "teacher.txt"
    rc = sweep_mod.main(["teacher", str(fast_checkpoint), str(tiny), str(missing), "--data", str(sample_path),
                         "--out", str(out), "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0 and f"skipped (missing): {missing}" in text
    assert out.read_text().strip() == f"{fast_checkpoint},{tiny}"  # two candidates left: the ensemble of both
    assert "teacher (PublicTest " in text and f"{fast_checkpoint}: 0." in text
    assert sweep_mod.main(["teacher", str(missing), "--data", str(sample_path), "--out", str(out)]) == 1


def test_plan_epochs_fits_the_budget(sweep_mod):
    # 1000 img/s, 10k training + 3k val images: ~11.3 s per epoch; 85% of 600 s -> 45 epochs
    assert sweep_mod.plan_epochs(600, 1000, 10_000, 3_000, max_epochs=300) == 45
    assert sweep_mod.plan_epochs(600, 1e6, 10_000, 3_000, max_epochs=300) == 300
    assert sweep_mod.plan_epochs(1, 10, 10_000, 3_000, max_epochs=300) == 1


def test_cpu_sweep_exports_every_spec_and_reports_failures(sweep_mod, sample_path, tmp_path):
    data = tmp_path / "fer.npz"
    sweep_mod.pack(sweep_mod.load_dataset(sample_path), data)
    base = {"model": "small", "width": 8, "batch_size": 32, "threads": 1, "max_epochs": 3}
    emulated = {} if bf16_supported() else {"limit": 64}  # emulated bf16 is ~10x slower: fewer images
    specs = [{"name": "a", **base}, {"name": "b", **base, "precision": "bf16", "seed": 1, **emulated},
             {"name": "bad", **base, "model": "nope"}]
    rc = sweep_mod.main(["run", "--data", str(data), "--out", str(tmp_path / "out"), "--runs", str(tmp_path / "runs"),
                         "--budget-s", "60", "--device", "cpu", *sum((["--spec", json.dumps(s)] for s in specs), [])])
    assert rc == 1  # one spec failed
    info = json.loads((tmp_path / "out" / "sweep.json").read_text())
    by = {r["name"]: r for r in info["results"]}
    assert by["bad"]["state"] == "failed" and "nope" in by["bad"]["error"]
    for name in ("a", "b"):
        r = by[name]
        assert r["state"] == "finished" and r["epochs"] == 3 and len(r["metrics"]) == 3
        assert r["config"]["precision"] == ("bf16" if name == "b" else "fp32")
        loaded = load_model(tmp_path / "out" / f"{name}.pt")
        assert loaded.meta["best_epoch"] == r["best_epoch"]
        assert abs(loaded.meta["best_acc"] - max(m["val_acc"] for m in r["metrics"])) < 1e-9
    runs = sweep_mod.unsweep(tmp_path / "out" / "sweep.json", tmp_path / "again")
    assert sorted(p.name for p in runs) == ["a", "b"]
    assert RunFolder(runs[0]).read_metrics() == by["a"]["metrics"]


def test_resume_goes_on_with_the_first_calls_plan(sweep_mod, sample_path, tmp_path):
    """A schedule planned for more than one call: the second call (--resume) continues each run folder's last.pt."""
    data, out, runs = tmp_path / "fer.npz", tmp_path / "out", tmp_path / "runs"
    sweep_mod.pack(sweep_mod.load_dataset(sample_path), data)
    spec = json.dumps({"name": "a", "model": "small", "width": 8, "batch_size": 32, "threads": 1, "max_epochs": 2})
    common = ["--data", str(data), "--out", str(out), "--runs", str(runs), "--device", "cpu", "--spec", spec]
    assert sweep_mod.main(["run", "--budget-s", "60", *common]) == 0
    first = json.loads((out / "sweep.json").read_text())["results"][0]["metrics"]
    # what a first call cut off by its deadline leaves: last.pt after epoch 2 of a 4-epoch plan
    last = runs / "a" / "last.pt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    ckpt["config"]["epochs"] = 4
    torch.save(ckpt, last)
    assert sweep_mod.main(["run", "--budget-s", "60", "--resume", *common]) == 0
    r = json.loads((out / "sweep.json").read_text())["results"][0]
    assert r["state"] == "finished" and r["epochs"] == 4 and r["config"]["epochs"] == 4
    assert [m["epoch"] for m in r["metrics"]] == [0, 1, 2, 3]
    assert r["metrics"][:2] == first  # the first call's epochs kept, not retrained
    assert r["metrics"][2]["lr"] < r["metrics"][1]["lr"] * 1.01  # on the same cosine, not a fresh warm-up


def test_ready_barrier_waits_for_every_peer_and_no_longer(sweep_mod, tmp_path):
    import threading

    threading.Timer(0.5, lambda: (tmp_path / ".ready" / "b").touch()).start()
    waited = sweep_mod.ready_barrier(tmp_path, "a", ["a", "b"], timeout_s=30)
    assert 0.4 < waited < 10 and (tmp_path / ".ready" / "a").exists()
    assert sweep_mod.ready_barrier(tmp_path, "c", ["c", "never"], timeout_s=0.5) >= 0.5  # a missing peer: the timeout


def test_device_slim_leaves_what_a_gpu_call_needs_and_git_puts_the_rest_back(tmp_path, sample_data):
    import shutil
    import subprocess

    from fer_core.data import load_csv
    from fer_core.quantize import CALIBRATION_FACES

    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs the project's git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    shutil.copy(ROOT / "scripts" / "device_slim.sh", clone / "scripts" / "device_slim.sh")  # this tree's version
    done = subprocess.run(["bash", "scripts/device_slim.sh", "fer_resnet.pt"], cwd=clone, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "travels:" in done.stdout and "of 67108864" in done.stdout
    assert sorted(p.name for p in (clone / "checkpoints").glob("*.pt")) == ["fer_resnet.pt"]
    assert not list((clone / "checkpoints").glob("*.report.json")) and not (clone / "README.md").exists()
    assert (ROOT / "docs" / "gpu_leases.md").exists() and not list((clone / "docs").rglob("*.md"))
    assert [p.relative_to(clone).as_posix() for p in (clone / "tests").rglob("*") if p.is_file()] == ["tests/data/fer2013.csv.gz"]
    cut = load_csv(clone / "tests" / "data" / "fer2013.csv.gz", cache=False)
    assert cut.splits == ["Training"] and torch.equal(cut.images["Training"], sample_data.images["Training"][:CALIBRATION_FACES])
    helps = subprocess.run([sys.executable, "scripts/gpu_sweep.py", "run", "--help"], cwd=clone, capture_output=True)
    assert helps.returncode == 0  # what a call runs still imports
    subprocess.run(["git", "checkout", "--", "."], cwd=clone, check=True)
    left = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True).stdout
    assert left.strip() in ("", "M scripts/device_slim.sh", "?? scripts/device_slim.sh")
    assert (clone / "checkpoints" / "fer_vgg.pt").exists() and (clone / "tests" / "conftest.py").exists()
