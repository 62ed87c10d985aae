"""Paired comparison of reports: McNemar's exact test on the shipped models' real PublicTest reports, and clear errors."""

from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest

from fer_core.compare import ReportError, compare_reports, main, read_report, verdict
from fer_core.config import DEFAULT_CHECKPOINT, SAMPLE_DATA, atomic_write_json
from fer_core.metrics import paired

SHIPPED = DEFAULT_CHECKPOINT.parent


def exact_mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact p from first principles: twice the smaller binomial tail of the discordant images at 1/2."""
    n, k = only_a + only_b, min(only_a, only_b)
    return min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n)


def test_paired_counts_the_discordant_images_and_matches_the_exact_test():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, 500)
    a = np.where(rng.random(500) < 0.7, y, (y + 1) % 7)
    b = np.where(rng.random(500) < 0.75, y, (y + 2) % 7)
    r = paired(y, a, b)
    assert r["only_a"] == int(((a == y) & (b != y)).sum()) and r["only_b"] == int(((a != y) & (b == y)).sum())
    assert r["both_right"] + r["both_wrong"] + r["only_a"] + r["only_b"] == 500
    assert r["difference"] == pytest.approx(r["accuracy_b"] - r["accuracy_a"])
    assert r["p_value"] == pytest.approx(exact_mcnemar(r["only_a"], r["only_b"]))
    assert r["ci95"][0] < r["difference"] < r["ci95"][1]
    swapped = paired(y, b, a)  # the test is symmetric; the difference changes sign
    assert swapped["p_value"] == pytest.approx(r["p_value"]) and swapped["difference"] == pytest.approx(-r["difference"])
    same = paired(y, a, a)
    assert same["p_value"] == 1.0 and same["difference"] == 0 and same["ci95"] == (0.0, 0.0)
    with pytest.raises(ValueError, match="same images"):
        paired(y, a, b[:-1])


def test_shipped_reports_the_resnet_beats_the_vgg_and_each_verdict_follows_its_own_p():
    vgg, resnet = read_report(SHIPPED / "fer_vgg.report.json"), read_report(SHIPPED / "fer_resnet.report.json")
    r = compare_reports(vgg, resnet)
    assert r["n"] == vgg["n"] == 3589 and r["split"] == "PublicTest"
    assert r["accuracy_a"] == pytest.approx(vgg["accuracy"]) and r["accuracy_b"] == pytest.approx(resnet["accuracy"])
    assert r["p_value"] < 0.05 and r["ci95"][0] > 0  # 1.3 points on 3,589 images: more than noise (p = 0.018)
    gap = 100 * (resnet["accuracy"] - vgg["accuracy"])
    assert f"B is {gap:.2f} points above A on PublicTest" in verdict(r) and "unlikely" in verdict(r)
    assert r["p_value"] == pytest.approx(exact_mcnemar(r["only_a"], r["only_b"]), rel=1e-6)
    for tta in ("multiscale", "tencrop", "int8"):  # each of the default model's other reports against its centre crop
        t = compare_reports(resnet, read_report(SHIPPED / f"fer_resnet.{tta}.report.json"))
        assert t["p_value"] == pytest.approx(exact_mcnemar(t["only_a"], t["only_b"]), rel=1e-6)
        significant = t["p_value"] < 0.05
        assert ("unlikely" in verdict(t)) == significant and ("within the noise" in verdict(t)) != significant


def test_reports_of_other_images_or_without_answers_are_refused(tmp_path):
    from fer_core.evaluate import evaluate_checkpoint

    sample = evaluate_checkpoint(SHIPPED / "fer_fast.pt", SAMPLE_DATA, "PublicTest")
    shipped = read_report(SHIPPED / "fer_fast.report.json")
    with pytest.raises(ReportError, match=r"do not score the same images \(A: fer_fast.pt on PublicTest \(140 images\)"):
        compare_reports(sample, shipped)
    bare = {k: v for k, v in shipped.items() if k != "predictions"}
    with pytest.raises(ReportError, match="report B .* has no per-image answers"):
        compare_reports(shipped, bare)
    cut = {**shipped, "predictions": {**shipped["predictions"], "y_pred": shipped["predictions"]["y_pred"][:-1]}}
    with pytest.raises(ReportError, match="needs answers for the same images: 3589 labels, 3589 and 3588 answers"):
        compare_reports(shipped, cut)  # a hand-edited file


def test_cli_compares_two_report_files_and_explains_bad_ones(tmp_path, run_main):
    a, b = SHIPPED / "fer_vgg.report.json", SHIPPED / "fer_resnet.report.json"
    r = run_main(main, a, b)
    assert r.returncode == 0 and r.stdout.startswith("A: fer_vgg.pt on PublicTest (3,589 images), TTA none, fp32\n")
    p_value = compare_reports(read_report(a), read_report(b))["p_value"]
    assert f"McNemar's exact p = {p_value:.3g}" in r.stdout
    r = run_main(main, a, b, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["only_b"] > json.loads(r.stdout)["only_a"]
    atomic_write_json(tmp_path / "two.report.json", [read_report(a), read_report(b)])  # a file holding a list
    r = run_main(main, f"{tmp_path / 'two.report.json'}#0", f"{tmp_path / 'two.report.json'}#1", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["p_value"] == pytest.approx(p_value)
    (tmp_path / "bad.json").write_text("{not json")
    for args, message in (([a, tmp_path / "none.json"], "none.json: no such file"),
                          ([a, tmp_path / "bad.json"], "not a readable"),
                          ([f"{tmp_path / 'two.report.json'}#2", a], "holds 2 report(s); pick one as"),
                          ([a, SHIPPED / "fer_vgg.md"], "fer_vgg.md: not a readable JSON file")):
        r = run_main(main, *args)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, args


def test_robustness_rows_follow_the_clean_report_of_the_same_model_and_images(fast_checkpoint):
    from fer_core.compare import robustness, same_model_reports
    from fer_core.evaluate import robustness_reports

    seen: list[str] = []
    clean, blur, noise = robustness_reports(fast_checkpoint, SAMPLE_DATA, "PublicTest",
                                            corruptions=["none", "blur-2", "noise-25"],
                                            on_report=lambda r: seen.append(r.get("corruption", "none")))
    assert seen == ["none", "blur-2", "noise-25"] and "corruption" not in clean and blur["corruption"] == "blur-2"
    rows = robustness([blur, clean, noise])  # any order in; the clean row first out
    assert [r["corruption"] for r in rows] == ["none", "blur-2", "noise-25"] and rows[0]["drop"] == 0
    for row, r in zip(rows[1:], (blur, noise), strict=True):
        pair = compare_reports(clean, r)
        assert row["drop"] == pytest.approx(100 * (r["accuracy"] - clean["accuracy"])) and row["p_value"] == pair["p_value"]
    assert rows[1]["drop"] < -5 and rows[1]["p_value"] < 0.05  # 140 faces are enough to see a 2 px blur's cost
    with pytest.raises(ReportError, match="no report of the clean faces"):
        robustness([blur, noise])
    # Families: the same checkpoint, split, TTA, precision and images; the newest report per corruption
    other_split = robustness_reports(fast_checkpoint, SAMPLE_DATA, "PrivateTest", corruptions=["blur-2"])[0]
    redone = blur | {"created": "9999-01-01T00:00:00Z", "accuracy": 0.0}
    family = same_model_reports(noise, [clean, blur, noise, other_split, redone, clean | {"tta": "flip"}])
    assert [r.get("corruption", "none") for r in family] == ["none", "blur-2", "noise-25"] and family[1] is redone


def test_robustness_sets_gather_each_models_corruptions_and_borrow_another_precisions_set(fast_checkpoint):
    """Home sums up each set in a line; the Robustness tab of a float32 report shows the onnx set of the same model and
    faces when float32 has none, never a set of other faces."""
    from fer_core.compare import robustness_set, robustness_sets
    from fer_core.evaluate import evaluate_checkpoint, robustness_reports

    clean, blur = robustness_reports(fast_checkpoint, SAMPLE_DATA, "PublicTest", precision="onnx",
                                     corruptions=["none", "blur-2"])
    fp32 = evaluate_checkpoint(fast_checkpoint, SAMPLE_DATA, "PublicTest")
    private = evaluate_checkpoint(fast_checkpoint, SAMPLE_DATA, "PrivateTest")
    everything = [fp32, private, clean, blur]
    assert robustness_sets(everything) == [[clean, blur]] and robustness_sets([fp32, blur]) == []  # no clean onnx report
    assert robustness_set(fp32, everything) == [clean, blur]  # fp32 was never corrupted: onnx's set stands in
    assert robustness_set(blur, everything) == [clean, blur]
    assert robustness_set(private, everything) == [private]  # other faces: nothing to borrow
    fp32_blur = fp32 | {"corruption": "blur-2", "created": "9999-01-01T00:00:00Z"}
    assert robustness_set(fp32, [*everything, fp32_blur]) == [fp32, fp32_blur]  # its own precision's set first
    assert [s[0]["precision"] for s in robustness_sets([*everything, fp32_blur])] == ["fp32", "onnx"]  # newest first


def test_the_faces_training_lacks_are_compared_apart_where_both_reports_mark_them(tmp_path, run_main):
    from fer_core.compare import compare_unseen

    a, b = (read_report(SHIPPED / f"{m}.report.json") for m in ("fer_vgg", "fer_resnet"))
    seen = set(a["unseen"]["seen_index"])
    assert seen == set(b["unseen"]["seen_index"]) and len(seen) == 871  # FER2013's PublicTest faces in Training too
    rest = [i for i in range(a["n"]) if i not in seen]
    y, pa, pb = (np.asarray(r["predictions"][k]) for r, k in ((a, "y_true"), (a, "y_pred"), (b, "y_pred")))
    result = compare_unseen(a, b)
    assert result is not None and result == {**paired(y[rest], pa[rest], pb[rest]), "split": result["split"],
                                             "a": result["a"], "b": result["b"]}
    assert result["n"] == 2718 and result["split"] == "PublicTest's 2,718 faces that Training lacks"
    assert result["accuracy_b"] == pytest.approx(b["unseen"]["accuracy"])
    # Without the block on either side, or with other faces marked, there is nothing to compare apart
    bare = {k: v for k, v in b.items() if k != "unseen"}
    other = {**b, "unseen": {**b["unseen"], "seen_index": b["unseen"]["seen_index"][1:]}}
    assert compare_unseen(a, bare) is None and compare_unseen(a, other) is None
    for name, r in (("a", a), ("b", b)):
        atomic_write_json(tmp_path / f"{name}.json", r)
    out = run_main(main, tmp_path / "a.json", tmp_path / "b.json")
    assert out.returncode == 0 and out.stdout.rstrip().endswith(verdict(result))
    out = run_main(main, tmp_path / "a.json", tmp_path / "b.json", "--json")
    assert json.loads(out.stdout)["unseen"]["only_b"] == result["only_b"]
