"""Knowledge distillation: the teacher's term, its checks, and a student that learns the teacher's answers."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from fer_core.checkpoint import CheckpointError, load_model, read_checkpoint
from fer_core.config import TrainConfig
from fer_core.data import FERData
from fer_core.distill import Teacher, best_teacher, centre_probs, check_distill, distill_loss, load_teachers, teacher_paths
from fer_core.train import fit
from fer_core.train import main as train_main
from fer_core.transforms import Normalization, preprocess

TINY = TrainConfig(model="small", width=8, batch_size=32, epochs=1, lr=0.05, warmup_epochs=1, crop_size=44, threads=1,
                   patience=0)


def test_distill_loss_is_hintons_scaled_kl():
    torch.manual_seed(0)
    s, t = torch.randn(6, 7), torch.randn(6, 7)
    assert distill_loss(t, t, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    p = F.softmax(t / 2, 1)
    manual = (p * (p.log() - F.log_softmax(s / 2, 1))).sum(1).mean() * 4
    assert distill_loss(s, t, 2.0).item() == pytest.approx(manual.item(), rel=1e-5)
    s.requires_grad_(True)
    distill_loss(s, t, 1.0).backward()  # the gradient points from the student's probabilities to the teacher's
    assert torch.allclose(s.grad, (F.softmax(s, 1) - F.softmax(t, 1)).detach() / len(s), atol=1e-6)


@pytest.mark.parametrize("changes, match", [
    ({"distill": 0.5}, "needs a teacher"),
    ({"teacher": "t.pt"}, "unused with distill 0"),
    ({"teacher": "t.pt", "distill": 1.5}, "0 to 1"),
    ({"teacher": "t.pt", "distill": 0.5, "distill_t": 0.0}, "distill_t"),
])
def test_inconsistent_settings_are_refused_before_any_work(sample_data, tmp_path, changes, match):
    with pytest.raises(ValueError, match=match):
        check_distill(TINY.replace(**changes))
    with pytest.raises(ValueError, match=match):
        fit(TINY.replace(**changes), tmp_path / "run", data=sample_data)
    assert not (tmp_path / "run").exists()


def test_teacher_scores_the_students_batch_in_its_own_normalisation(sample_data, fast_checkpoint):
    teacher_model = load_model(fast_checkpoint)
    x = sample_data.split("PublicTest")[0][:16]
    other = Normalization(mean=100.0, std=40.0)  # a student fitted on other pixel statistics
    teacher = Teacher(load_model(fast_checkpoint), other)
    got = teacher.logits(preprocess(x, other, 44))
    with torch.no_grad():
        want = teacher_model.model(preprocess(x, teacher_model.norm, 44))
    assert torch.allclose(got, want, atol=1e-4)
    assert not any(p.requires_grad for net in teacher.nets for p in net.parameters())


def test_an_ensemble_teacher_gives_its_mean_probabilities(sample_data, fast_checkpoint, tmp_path):
    fit(TINY.replace(seed=5, limit=128), tmp_path / "other", data=sample_data)
    a, b = load_model(fast_checkpoint), load_model(tmp_path / "other" / "last.pt")
    norm = Normalization(mean=120.0, std=60.0)
    xb = preprocess(sample_data.split("PublicTest")[0][:16], norm, 44)
    la, lb = Teacher(a, norm).logits(xb), Teacher(b, norm).logits(xb)
    assert not torch.allclose(F.softmax(la, 1), F.softmax(lb, 1), atol=1e-2)  # two different teachers
    both = Teacher([a, b], norm).logits(xb)
    assert torch.allclose(both.exp(), (F.softmax(la, 1) + F.softmax(lb, 1)) / 2, atol=1e-5)
    # the same model twice teaches exactly what it teaches alone, at any temperature
    twice = Teacher([a, a], norm).logits(xb)
    s = torch.randn(16, 7)
    assert distill_loss(s, twice, 2.0).item() == pytest.approx(distill_loss(s, la, 2.0).item(), rel=1e-5)


def test_best_teacher_is_the_most_accurate_ensemble_and_the_smallest_on_ties():
    y = torch.tensor([0, 1, 2, 3])

    def rows(*answers: tuple[int, float]) -> torch.Tensor:  # (label, confidence) per image, the rest shared evenly
        return torch.stack([F.one_hot(torch.tensor(k), 7).float() * (c - (1 - c) / 6) + (1 - c) / 6 for k, c in answers])

    a = rows((0, 0.9), (1, 0.9), (2, 0.9), (6, 0.4))  # 3/4, unsure where wrong
    b = rows((0, 0.9), (1, 0.9), (5, 0.4), (3, 0.9))  # 3/4, wrong elsewhere
    c = rows((0, 0.9), (5, 0.9), (5, 0.9), (5, 0.9))  # 1/4
    probs = {"a": a, "b": b, "c": c}
    assert best_teacher(probs, y) == (["a", "b"], 1.0)  # a and b fix each other's mistakes
    assert best_teacher({"a": a, "c": c}, y)[0] == ["a", "c"]  # two candidates: both, whatever they score
    assert best_teacher(probs, y, min_members=1)[0] == ["a", "b"]
    assert best_teacher({"a": a, "a2": a.clone(), "c": c}, y)[0] == ["a", "a2"]  # ties go to the first, smallest subset


def test_centre_probs_are_the_evaluate_clis_centre_crop(sample_data, fast_checkpoint):
    from fer_core.evaluate import view_logits

    m = load_model(fast_checkpoint)
    x = sample_data.split("PublicTest")[0][:40]
    got = centre_probs(m, x, batch_size=16)
    assert got.shape == (40, 7)
    assert torch.allclose(got, F.softmax(view_logits(m, x, "none")[0], 1), atol=1e-4)
    assert centre_probs(m, x[:0]).shape == (0, 7)


def test_teacher_paths_split_on_commas_and_each_is_checked(fast_checkpoint, tmp_path):
    assert teacher_paths(f" {fast_checkpoint}, ~/b.pt ,") == [str(fast_checkpoint), os.path.expanduser("~/b.pt")]
    assert len(load_teachers(f"{fast_checkpoint},{fast_checkpoint}")) == 2
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_teachers(f"{fast_checkpoint},{tmp_path / 'missing.pt'}")


def test_student_learns_the_teachers_answers_not_the_labels(sample_data, fast_checkpoint, tmp_path):
    cfg = TINY.replace(width=16, epochs=15, augment="none", erasing=0.0, lr=0.05, label_smoothing=0.0, drop_rate=0.0,
                       teacher=str(fast_checkpoint), distill=1.0, distill_t=1.0)
    # distill 1: the labels have no weight, so shuffled labels give the very same weights
    x, y = sample_data.split("Training")
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1))
    shuffled = FERData(images=sample_data.images, labels={**sample_data.labels, "Training": y[perm]},
                       source=sample_data.source)
    short = cfg.replace(epochs=2, limit=96)
    fit(short, tmp_path / "a", data=sample_data)
    fit(short, tmp_path / "b", data=shuffled)
    a, b = (read_checkpoint(tmp_path / r / "last.pt")["model"] for r in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The student ends up answering like the teacher (fer_fast.pt) on the images it trained on: 0.81 measured, against
    # 0.68 for the same student trained on the labels (which the teacher gets 92% right here); chance is ~0.2.
    fit(cfg, tmp_path / "c", data=sample_data)
    student, teacher = load_model(tmp_path / "c" / "last.pt"), load_model(fast_checkpoint)
    with torch.no_grad():
        s = student.model(preprocess(x, student.norm, 44)).argmax(1)
        t = teacher.model(preprocess(x, teacher.norm, 44)).argmax(1)
    assert (s == t).float().mean() > 0.7
    assert read_checkpoint(tmp_path / "c" / "best.pt")["config"]["teacher"] == str(fast_checkpoint)


def test_cli_missing_teacher_is_a_clear_error(sample_path, tmp_path, run_main):
    missing = tmp_path / "nope.pt"
    r = run_main(train_main, "--run", tmp_path / "r", "--data", sample_path, "--model", "small", "--width", 8,
                 "--teacher", missing, "--distill", 0.5, "--quiet")
    assert r.returncode == 2 and str(missing) in r.stderr


@pytest.mark.parametrize("degrade", [0.0, 1.0])
def test_the_teacher_scores_the_faces_before_they_are_degraded(sample_data, fast_checkpoint, tmp_path, monkeypatch, degrade):
    import fer_core.train as train

    seen: dict[str, list[torch.Tensor]] = {"student": [], "teacher": []}
    student_forward, teacher_logits = train.forward, Teacher.logits

    def record_student(model, xb, precision="fp32"):
        seen["student"].append(xb.detach().clone())
        return student_forward(model, xb, precision)

    def record_teacher(self, xb):
        seen["teacher"].append(xb.detach().clone())
        return teacher_logits(self, xb)

    monkeypatch.setattr(train, "forward", record_student)
    monkeypatch.setattr(Teacher, "logits", record_teacher)
    fit(TINY.replace(limit=64, teacher=str(fast_checkpoint), distill=0.5, degrade=degrade), tmp_path / "run", data=sample_data)
    assert len(seen["teacher"]) == len(seen["student"]) == 2  # two steps of 32
    for s, t in zip(seen["student"], seen["teacher"], strict=True):
        differs = (s != t).flatten(1).any(1)
        assert bool(differs.all()) if degrade else not differs.any()  # degraded for the student alone
