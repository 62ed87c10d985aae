"""benchmarks/label_noise.py: a report's predictions against the FER+ majority, cross-checked with the evaluate path."""

from __future__ import annotations

import importlib.util
import json

import pytest

from fer_core.config import REPO_ROOT, SAMPLE_DATA, atomic_write_json
from fer_core.data import load_ferplus
from fer_core.evaluate import evaluate_checkpoint

SCRIPT = REPO_ROOT / "benchmarks" / "label_noise.py"
VOTES = SAMPLE_DATA.with_name("fer2013new.csv")


def load_script():
    spec = importlib.util.spec_from_file_location("label_noise", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figures_agree_with_an_evaluation_on_the_ferplus_labels(fast_checkpoint):
    ln = load_script()
    report = evaluate_checkpoint(fast_checkpoint, SAMPLE_DATA, "PublicTest")
    relabelled = evaluate_checkpoint(fast_checkpoint, SAMPLE_DATA, "PublicTest", labels="ferplus")  # the other code path
    f = ln.label_noise(report, load_ferplus(VOTES))
    assert f["n"] == report["n"] and f["kept"] == relabelled["n"] < f["n"]
    assert f["acc_fer2013"] == pytest.approx(report["accuracy"])
    assert f["acc_ferplus_kept"] == pytest.approx(relabelled["accuracy"], abs=1 / f["kept"])  # at most one near-tie apart
    assert 0 <= f["wrong_ferplus_agrees_with_model"] <= f["wrong_kept"] <= f["kept"]
    assert 0 < f["vote_share_label"] <= 1 and 0 < f["vote_share_model"] <= 1
    with pytest.raises(ValueError, match="per-image predictions"):
        ln.label_noise({**report, "n": report["n"] + 1}, load_ferplus(VOTES))


def test_cli_prints_the_figures_and_says_when_votes_are_missing(fast_checkpoint, tmp_path, capsys):
    ln = load_script()
    out = tmp_path / "r.json"
    atomic_write_json(out, evaluate_checkpoint(fast_checkpoint, SAMPLE_DATA, "PublicTest"))
    assert ln.main(["--report", str(out)]) == 0  # votes found beside the report's data file
    assert "FER+ sides with the model on" in capsys.readouterr().out
    atomic_write_json(out, {**json.loads(out.read_text()), "data": str(tmp_path / "elsewhere.csv")})
    assert ln.main(["--report", str(out)]) == 2
    assert "pass --votes" in capsys.readouterr().err
