"""fer_core.audit on real faces: copies of test faces in Training (exact and near), the report's `unseen` block, the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from fer_core import audit
from fer_core.audit import NEAR, add_unseen, copies_in, nearest, seen_in_training, unseen_metrics
from fer_core.config import REPO_ROOT
from fer_core.data import FERData, SplitError, load_dataset
from fer_core.metrics import accuracy, f1_scores


def _thumbs(faces: np.ndarray, dy: int = 0, dx: int = 0, crop: int = 36) -> np.ndarray:
    """An independent thumbnail: the centre `crop` px moved (dy, dx), as 12 x 12 means of the blocks adaptive pooling
    takes (rows start * crop // 12 to ceil((i + 1) * crop / 12)), mean removed, unit length."""
    o = (48 - crop) // 2
    window = faces[:, o + dy : o + dy + crop, o + dx : o + dx + crop].astype(np.float64)
    edges = [(i * crop // 12, -(-(i + 1) * crop // 12)) for i in range(12)]
    t = np.stack([window[:, a:b, c:d].mean((1, 2)) for a, b in edges for c, d in edges], 1)
    t -= t.mean(1, keepdims=True)
    return t / np.linalg.norm(t, axis=1, keepdims=True)


def test_copies_of_the_samples_public_test_faces_in_training_match_a_brute_force_search(sample_data):
    c = copies_in(sample_data, "PublicTest")
    test, train = sample_data.images["PublicTest"].numpy(), sample_data.images["Training"].numpy()
    exact = np.array([any(np.array_equal(f, t) for t in train) for f in test])
    ref = _thumbs(train)
    sims = np.max([_thumbs(test, dy, dx, crop) @ ref.T for crop in (33, 36, 39) for dy in range(-3, 4)
                   for dx in range(-3, 4)], axis=0)
    assert (c.exact == exact).all() and exact.sum() == 2  # the sample holds two faces of PublicTest twice
    # Scoring every Training face at every shift gives the brute force's answer (copies_in does so here: 350 Training
    # faces are under the 2 x 200 candidates); the shortcut (only the likeliest candidates are scored, 2 x 50 of 350
    # here) the same wherever a face is anywhere near a copy, and never more
    sim, idx = nearest(sample_data.images["PublicTest"], sample_data.images["Training"], exhaustive=True)
    np.testing.assert_allclose(sim, sims.max(1), atol=1e-4)
    assert (idx == sims.argmax(1))[~exact].all()
    close = sims.max(1) > 0.85
    short, _ = nearest(sample_data.images["PublicTest"], sample_data.images["Training"], candidates=50)
    for found in (c.similarity, short):
        np.testing.assert_allclose(found[close & ~exact], sims.max(1)[close & ~exact], atol=1e-4)
        assert (found <= sims.max(1) + 1e-4).all()
    assert (train[c.index[exact]] == test[exact]).all()
    # Two more are the same photos cropped a little differently (0.98 and 0.96); the next most similar pair, 0.91,
    # is two different people
    near = c.seen & ~c.exact
    assert near.sum() == 2 and (c.similarity[near] < 0.99).all() and np.sort(c.similarity[~c.seen])[-1] < 0.92
    assert c.same_label[c.seen].all()
    assert (seen_in_training(sample_data, "PublicTest") == c.seen).all()
    assert seen_in_training(sample_data, "Training") is None


def test_a_training_face_moved_and_saved_as_jpeg_is_found_as_a_near_copy_with_its_label(sample_data):
    train_x, train_y = sample_data.split("Training")
    test_x, test_y = sample_data.split("PublicTest")
    plain = copies_in(sample_data, "PublicTest")
    keep = np.flatnonzero(~plain.seen)[:20]  # 20 PublicTest faces that Training does not hold
    copies = []
    for i, (dy, dx) in enumerate([(2, -3), (3, 1), (-2, 2), (1, 3), (-3, -1)]):  # five Training faces, each moved
        padded = np.pad(train_x[i * 50].numpy(), 3, mode="edge")  # (the border repeated) and saved as JPEG quality 50
        buf = io.BytesIO()
        Image.fromarray(padded[3 + dy : 51 + dy, 3 + dx : 51 + dx]).save(buf, format="JPEG", quality=50)
        copies.append(np.asarray(Image.open(buf)))
    labels = train_y[::50][:5].clone()
    labels[0] = (labels[0] + 1) % 7  # one of them relabelled, as 98 of FER2013's PublicTest copies are
    data = FERData({"Training": train_x, "PublicTest": torch.cat([test_x[keep], torch.from_numpy(np.stack(copies))])},
                   {"Training": train_y, "PublicTest": torch.cat([test_y[keep], labels])})
    c = copies_in(data, "PublicTest")
    assert not c.seen[:20].any() and c.seen[20:].all() and not c.exact.any()
    assert (c.index[20:] == np.arange(0, 250, 50)).all()
    assert c.same_label[20:].tolist() == [False, True, True, True, True]
    row = audit.audit(data)["splits"]["PublicTest"]
    assert row["exact_in_training"] == 0 and row["near_in_training"] == 5 and row["in_training_other_label"] == 1


def test_missing_splits_and_blank_faces(sample_data):
    with pytest.raises(SplitError, match="PrivateTest"):
        copies_in(FERData({"Training": sample_data.images["Training"]}, {"Training": sample_data.labels["Training"]}),
                  "PrivateTest")
    only_test = FERData({"PublicTest": sample_data.images["PublicTest"]}, {"PublicTest": sample_data.labels["PublicTest"]})
    assert seen_in_training(only_test, "PublicTest") is None
    assert "exact_in_training" not in audit.audit(only_test)["splits"]["PublicTest"]
    faces = sample_data.images["PublicTest"][:4].clone()
    faces[1] = 128
    faces[2] = 128 + torch.randint(-2, 3, (48, 48), dtype=torch.int64).to(torch.uint8)  # +-2 grey levels: no face
    assert audit.blank(faces).tolist() == [False, True, True, False]
    # A blank face is similar to nothing (its thumbnail is zero), not to every other blank face
    assert audit.thumbnails(faces[1:2]).abs().sum() == 0


def test_unseen_metrics_by_hand():
    y_true = np.array([0, 1, 2, 3, 3, 4, 5, 6])
    y_pred = np.array([0, 1, 2, 3, 4, 4, 6, 6])
    seen = np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)
    u = unseen_metrics(y_true, y_pred, seen)
    assert u["n"] == 6 and u["seen_n"] == 2 and u["seen_accuracy"] == 1.0 and u["threshold"] == NEAR
    assert u["accuracy"] == pytest.approx(4 / 6)
    assert u["macro_f1"] == f1_scores(y_true[2:], y_pred[2:])["macro_f1"]
    assert "accuracy" not in unseen_metrics(y_true, y_pred, np.ones(8, bool))  # nothing left to score


def test_evaluate_reports_accuracy_without_the_faces_training_holds(sample_path, fast_checkpoint, tmp_path, run_main):
    from fer_core.evaluate import evaluate_checkpoint, format_report
    from fer_core.evaluate import main as evaluate_main

    r = evaluate_checkpoint(fast_checkpoint, sample_path, "PublicTest")
    seen = seen_in_training(load_dataset(sample_path), "PublicTest")
    assert r["unseen"]["seen_index"] == np.flatnonzero(seen).tolist() and r["unseen"]["seen_n"] == 4
    y_true, y_pred = np.array(r["predictions"]["y_true"]), np.array(r["predictions"]["y_pred"])
    assert r["unseen"]["accuracy"] == accuracy(y_true[~seen], y_pred[~seen]) and r["unseen"]["n"] == 136
    assert "without the 4 faces that Training holds too" in format_report(r)
    assert "unseen" not in evaluate_checkpoint(fast_checkpoint, sample_path, "Training")
    # The CLI's summary line carries it too
    out = run_main(evaluate_main, "--checkpoint", fast_checkpoint, "--data", sample_path)
    assert out.returncode == 0 and json.loads(out.stdout.splitlines()[-1])["unseen_accuracy"] == r["unseen"]["accuracy"]


def test_audit_cli_counts_and_annotates_saved_reports(sample_path, fast_checkpoint, tmp_path):
    from fer_core.evaluate import evaluate_checkpoint

    out = subprocess.run([sys.executable, "-m", "fer_core.audit", "--data", str(sample_path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "PublicTest     140 faces" in out.stdout and "in Training: 2 exact + 2 near = 4 (2.9%)" in out.stdout
    out = subprocess.run([sys.executable, "-m", "fer_core.audit", "--data", str(sample_path), "--json"], capture_output=True,
                         text=True, timeout=120)
    counts = json.loads(out.stdout)["splits"]
    assert counts["PublicTest"] == {"n": 140, "repeated": 1, "repeated_other_label": 0, "blank": 0, "exact_in_training": 2,
                                    "near_in_training": 2, "in_training_other_label": 0}
    data = load_dataset(sample_path)
    for split in data.splits:  # repeats: faces beyond the first of each distinct image, counted by their bytes
        faces = data.images[split].numpy().reshape(len(data.images[split]), -1)
        assert counts[split]["repeated"] == len(faces) - len({f.tobytes() for f in faces})
    assert counts["Training"]["repeated"] == 2 and "exact_in_training" not in counts["Training"]
    # An old report (no unseen block), alone and in a list, gains the same block as a new one
    r = evaluate_checkpoint(fast_checkpoint, sample_path, "PublicTest")
    fresh = r.pop("unseen")
    (tmp_path / "one.json").write_text(json.dumps(r))
    (tmp_path / "list.json").write_text(json.dumps([r, r]))
    out = subprocess.run([sys.executable, "-m", "fer_core.audit", "--data", str(sample_path), "--reports",
                          str(tmp_path / "one.json"), str(tmp_path / "list.json")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "one.json").read_text())["unseen"] == fresh
    assert [x["unseen"] for x in json.loads((tmp_path / "list.json").read_text())] == [fresh, fresh]
    assert f"without the 4 faces Training holds {fresh['accuracy']:.4f}" in out.stdout


def test_audit_cli_refuses_a_report_of_other_faces_and_leaves_it(sample_path, fast_checkpoint, tmp_path, run_main):
    from fer_core.evaluate import evaluate_checkpoint

    r = evaluate_checkpoint(fast_checkpoint, sample_path, "PublicTest")
    del r["unseen"]
    r["predictions"]["y_true"][0] = (r["predictions"]["y_true"][0] + 1) % 7
    path = tmp_path / "other.json"
    path.write_text(json.dumps(r))
    before = path.read_bytes()
    out = run_main(audit.main, "--data", sample_path, "--reports", path)
    assert out.returncode == 2 and "scored on other data" in out.stderr and path.read_bytes() == before
    out = run_main(audit.main, "--data", sample_path, "--reports", tmp_path / "missing.json")
    assert out.returncode == 2 and "missing.json" in out.stderr
    out = run_main(audit.main, "--data", tmp_path / "nowhere.csv")
    assert out.returncode == 2 and "nowhere.csv" in out.stderr
    assert run_main(audit.main, "--data", sample_path, "--threshold", "2").returncode == 2


def test_shipped_reports_say_how_many_public_test_faces_training_holds(full_data_path):
    data = load_dataset(full_data_path)
    c = copies_in(data, "PublicTest")
    train = {bytes(f) for f in data.images["Training"].numpy().reshape(-1, 48 * 48)}
    exact = np.array([bytes(f) in train for f in data.images["PublicTest"].numpy().reshape(-1, 48 * 48)])
    assert (c.exact == exact).all() and exact.sum() == 280  # FER2013's known cross-split duplicates
    seen = c.seen
    # Scoring only the candidates finds the same copies as scoring every Training face at every crop and shift (the
    # first 600 faces: 8 s; on all 3,589, 38 s, it misses 2 of 872)
    sim, _ = nearest(data.images["PublicTest"][:600], data.images["Training"], exhaustive=True)
    first = slice(0, 600)
    assert (seen[first] == (c.exact[first] | (sim >= NEAR))).all() and seen[first].sum() > 100
    assert (c.similarity[first][~c.exact[first]] <= sim[~c.exact[first]] + 1e-5).all()
    for path in sorted((REPO_ROOT / "checkpoints").glob("*.report.json")):
        content = json.loads(path.read_text())
        for r in content if isinstance(content, list) else [content]:
            assert r["unseen"]["seen_index"] == np.flatnonzero(seen).tolist(), path.name
            expect = add_unseen(json.loads(json.dumps(r)), seen)["unseen"]
            assert r["unseen"] == expect, path.name
            if "corruption" not in r:  # Training's copies are easy: every shipped model scores them far above the rest
                assert r["unseen"]["seen_accuracy"] > r["unseen"]["accuracy"] + 0.1, path.name


def test_copies_are_found_in_an_image_folder_too(sample_path, tmp_path):
    from fer_core.config import EMOTIONS

    data = load_dataset(sample_path)
    root = tmp_path / "faces"
    for split, folder in (("Training", "train"), ("PublicTest", "val")):
        for i, (face, label) in enumerate(zip(*data.split(split), strict=True)):
            d = root / folder / EMOTIONS[int(label)]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(face.numpy()).save(d / f"{i:04d}.png")
    folder_data = load_dataset(root)
    assert seen_in_training(folder_data, "PublicTest").sum() == 4  # the files' order differs; the copies do not


def test_private_test_faces_that_public_test_holds_are_counted_too(sample_data):
    pub_x, pub_y = sample_data.split("PublicTest")
    priv_x, priv_y = sample_data.split("PrivateTest")
    moved = torch.from_numpy(np.pad(pub_x[7].numpy(), 2, mode="edge")[4:52, 1:49].copy())  # 2 px up, 1 px right
    data = FERData({"Training": sample_data.images["Training"], "PublicTest": pub_x,
                    "PrivateTest": torch.cat([priv_x[:10], pub_x[3:4], moved[None]])},
                   {"Training": sample_data.labels["Training"], "PublicTest": pub_y,
                    "PrivateTest": torch.cat([priv_y[:10], pub_y[3:4], pub_y[7:8]])})
    c = copies_in(data, "PrivateTest", "PublicTest")
    assert c.seen.tolist() == [False] * 10 + [True, True] and c.exact.tolist() == [False] * 10 + [True, False]
    assert c.index[10:].tolist() == [3, 7]
    row = audit.audit(data)["splits"]["PrivateTest"]
    assert row["in_publictest"] == 2 and "in_publictest" not in audit.audit(data)["splits"]["PublicTest"]
    assert "; 2 in PublicTest (exact or near)" in audit.format_audit(audit.audit(data))
