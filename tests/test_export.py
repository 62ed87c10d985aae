"""ONNX export: the standalone file predicts like fer_core on real faces, runs without torch, and fails cleanly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fer_core.checkpoint import load_model
from fer_core.config import EMOTIONS
from fer_core.evaluate import predict_probs
from fer_core.export import MAX_DIFF, export_onnx
from fer_core.export import main as export_main
from fer_core.onnxrt import ort_session
from fer_core.quantize import QuantizationError
from fer_core.transforms import resize_matrix, to_float


def _run(path: Path, faces: np.ndarray) -> np.ndarray:
    return ort_session(path.read_bytes(), 1).run(None, {"faces": faces})[0]


@pytest.fixture(scope="module")
def fast_onnx(tmp_path_factory: pytest.TempPathFactory, fast_checkpoint: Path) -> Path:
    out = tmp_path_factory.mktemp("export") / "fast.onnx"
    result = export_onnx(fast_checkpoint, out)
    assert result["faces_checked"] == 560 and result["max_prob_diff"] <= MAX_DIFF and result["top1_agreement"] == 1.0
    return out


def test_resize_matrix_is_the_antialiased_resize_of_real_faces(sample_data) -> None:
    x = to_float(sample_data.images["PublicTest"][:32], load_model().norm)
    r = resize_matrix(48, 44)
    want = F.interpolate(x, size=(44, 44), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(r @ x @ r.T, want, atol=1e-5)
    assert torch.allclose(r.sum(1), torch.ones(44))  # a weighted mean of pixels: brightness kept


def test_the_exported_file_gives_fer_cores_probabilities_at_any_batch_size(fast_onnx, fast_checkpoint, sample_data):
    faces = sample_data.images["PublicTest"]  # 140 real faces; the export was checked on these and the others
    want = predict_probs(load_model(fast_checkpoint), faces)
    got = _run(fast_onnx, faces.numpy())
    assert got.shape == (140, 7) and np.abs(got - want).max() <= MAX_DIFF
    assert np.allclose(got.sum(1), 1, atol=1e-5)
    one = _run(fast_onnx, faces[3:4].numpy())  # a batch of one, as a camera app would send
    assert np.abs(one[0] - want[3]).max() <= MAX_DIFF


def test_the_file_carries_what_its_user_needs(fast_onnx, fast_checkpoint):
    session = ort_session(fast_onnx.read_bytes())
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["emotions"]) == list(EMOTIONS)
    assert meta["tta"] == "none" and meta["precision"] == "fp32" and meta["checkpoint"] == "fer_fast.pt"
    report = json.loads(fast_checkpoint.with_suffix(".report.json").read_text())
    assert float(meta["publictest_accuracy_centre_crop"]) == pytest.approx(report["accuracy"], abs=1e-4)
    assert float(meta["temperature"]) == pytest.approx(load_model(fast_checkpoint).temperature_for("none"), rel=1e-5)
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("faces", "tensor(uint8)", [48, 48])
    assert (out.name, out.shape[1:]) == ("probs", [7])


def test_the_file_runs_where_torch_cannot_be_imported(fast_onnx, sample_data, tmp_path):
    faces = sample_data.images["PublicTest"][:20].numpy()
    np.save(tmp_path / "faces.npy", faces)
    code = ("import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
            "import json, numpy as np, onnxruntime as ort\n"
            f"s = ort.InferenceSession({str(fast_onnx)!r}, providers=['CPUExecutionProvider'])\n"
            f"p = s.run(None, {{'faces': np.load({str(tmp_path / 'faces.npy')!r})}})[0]\n"
            "print(json.dumps(p.argmax(1).tolist()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == _run(fast_onnx, faces).argmax(1).tolist()


def test_tta_views_are_computed_inside_the_file(tmp_path, fast_checkpoint, sample_data, monkeypatch):
    import fer_core.export

    calib, faces = fer_core.export._sample_faces()
    monkeypatch.setattr(fer_core.export, "_sample_faces", lambda: (calib, faces[::4]))  # a quarter of the check's faces
    out = tmp_path / "ms.onnx"
    assert export_onnx(fast_checkpoint, out, tta="multiscale")["faces_checked"] == 140  # the resize: matrix products
    faces = sample_data.images["PublicTest"][:40]
    loaded = load_model(fast_checkpoint)
    got, want = _run(out, faces.numpy()), predict_probs(loaded, faces, "multiscale")
    assert np.abs(got - want).max() <= MAX_DIFF
    assert np.abs(got - predict_probs(loaded, faces)).max() > 0.01  # the views do change the answer


def test_int8_export_is_smaller_and_agrees(tmp_path, fast_checkpoint, fast_onnx, run_main, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = run_main(export_main, "--checkpoint", fast_checkpoint, "--int8")  # no --out: named after the checkpoint
    out = tmp_path / "fer_fast.int8.onnx"
    assert done.returncode == 0, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    assert "int8" in done.stdout and "top class the same for" in done.stdout
    assert out.stat().st_size < 0.4 * fast_onnx.stat().st_size
    meta = ort_session(out.read_bytes()).get_modelmeta().custom_metadata_map
    assert meta["precision"] == "int8"


@pytest.mark.slow
def test_int8_export_keeps_publictest_accuracy(tmp_path, fast_checkpoint, full_data_path):
    from fer_core.data import load_dataset

    out = tmp_path / "fast_int8.onnx"
    export_onnx(fast_checkpoint, out, int8=True)
    x, y = load_dataset(full_data_path).split("PublicTest")
    accuracy = float((_run(out, x.numpy()).argmax(1) == y.numpy()).mean())
    report = json.loads(fast_checkpoint.with_suffix(".report.json").read_text())
    assert len(y) == 3589 and abs(accuracy - report["accuracy"]) < 0.006


def test_a_failed_check_writes_nothing(tmp_path, fast_checkpoint):
    out = tmp_path / "never.onnx"
    with pytest.raises(QuantizationError, match="agrees with the float model on"):
        export_onnx(fast_checkpoint, out, int8=True, min_agreement=1.01)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_cli_errors_are_one_clear_line(tmp_path, run_main):
    done = run_main(export_main, "--checkpoint", tmp_path / "missing.pt", "--out", tmp_path / "x.onnx")
    assert done.returncode == 1 and "checkpoint not found" in done.stderr and "Traceback" not in done.stderr
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    done = run_main(export_main, "--checkpoint", bad, "--out", tmp_path / "x.onnx")
    assert done.returncode == 1 and "not a readable PyTorch checkpoint" in done.stderr
    done = run_main(export_main, "--out", tmp_path)
    assert done.returncode == 2 and "is a folder" in done.stderr
    done = run_main(export_main, "--out", tmp_path / "x.onnx", "--tta", "sideways")
    assert done.returncode == 2 and "invalid choice" in done.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_cli_as_a_subprocess(tmp_path, fast_checkpoint):
    out = tmp_path / "sub" / "fast.onnx"  # a folder that does not exist yet is made
    done = subprocess.run([sys.executable, "-m", "fer_core.export", "--checkpoint", str(fast_checkpoint), "--out",
                           str(out), "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "top class the same for 100.0%" in done.stdout
    assert out.exists() and done.stderr == ""


def test_the_readme_example_runs_on_an_exported_file(fast_onnx, sample_data, tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in (part.split("```", 1)[0] for part in readme.split("```python\n")[1:]) if "fer.onnx" in b)
    (tmp_path / "fer.onnx").write_bytes(fast_onnx.read_bytes())
    monkeypatch.chdir(tmp_path)
    crops = sample_data.images["PublicTest"][:5].numpy()
    exec(compile(block, "README.md", "exec"), {"crops": crops})  # noqa: S102 - the documented example, as a user runs it
    names = eval(capsys.readouterr().out)  # noqa: S307 - the printed list of class names
    assert len(names) == 5 and set(names) <= set(EMOTIONS)
    assert names == [EMOTIONS[k] for k in _run(fast_onnx, crops).argmax(1)]


def test_the_example_program_predicts_photos_with_the_file_alone(fast_onnx, fast_checkpoint, tmp_path):
    from photos import astronaut

    from fer_core.predict import predict_image

    astronaut().save(tmp_path / "astronaut.png")
    (tmp_path / "notes.jpg").write_text("not a picture\n")
    script = Path(__file__).resolve().parents[1] / "examples" / "onnx_predict.py"
    code = ("import runpy, sys; sys.modules['torch'] = None; sys.argv = sys.argv[1:]\n"  # `import torch` would fail
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code, str(script), str(fast_onnx), str(tmp_path / "astronaut.png"),
                           str(tmp_path / "notes.jpg"), str(tmp_path / "missing.png")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    found, notes, missing = (json.loads(line) for line in done.stdout.splitlines())
    (face,) = found["faces"]
    (want,) = predict_image(tmp_path / "astronaut.png", load_model(fast_checkpoint))
    assert face["box"] == list(want.box) and face["label"] == want.label  # the same box, crop and answer as fer_core
    # OpenCV's and PIL's greyscale conversions round some pixels apart by one level: probabilities within 2e-3
    assert all(abs(face["probs"][e] - want.probs[e]) < 2e-3 for e in EMOTIONS), (face["probs"], want.probs)
    assert notes["error"] == "not an image OpenCV can read" and missing["error"] == "No such file or directory"


def test_a_diverged_model_is_not_exported(tmp_path, fast_checkpoint):
    from fer_core.checkpoint import read_checkpoint

    ckpt = read_checkpoint(fast_checkpoint)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point())
    ckpt["model"][name] = torch.full_like(ckpt["model"][name], float("nan"))  # NaN in, NaN out: the comparison passes
    torch.save(ckpt, tmp_path / "nan.pt")
    with pytest.raises(QuantizationError, match=f"hold NaN or infinite values \\({name}"):
        export_onnx(tmp_path / "nan.pt", tmp_path / "nan.onnx")
    assert not (tmp_path / "nan.onnx").exists()


def test_a_damaged_report_beside_the_checkpoint_only_leaves_the_accuracy_out(tmp_path, fast_checkpoint, monkeypatch):
    import shutil

    import fer_core.export

    calib, faces = fer_core.export._sample_faces()
    monkeypatch.setattr(fer_core.export, "_sample_faces", lambda: (calib, faces[:64]))
    shutil.copy(fast_checkpoint, tmp_path / "mine.pt")
    (tmp_path / "mine.report.json").write_text('{"accuracy": 0.71')  # cut off mid-write
    export_onnx(tmp_path / "mine.pt", tmp_path / "mine.onnx")
    meta = ort_session((tmp_path / "mine.onnx").read_bytes()).get_modelmeta().custom_metadata_map
    assert meta["publictest_accuracy_centre_crop"] == "" and meta["checkpoint"] == "mine.pt"
