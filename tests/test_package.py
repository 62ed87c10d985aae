"""Layering: fer_core imports without Streamlit; every module says what it owns; ruff and mypy find nothing."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import sysconfig
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fer_core
from fer_core.config import EMOTIONS, SAMPLE_DATA

PKG = Path(fer_core.__file__).parent
ROOT = PKG.parent


def test_fer_core_imports_without_streamlit():
    modules = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")
    code = "import sys; sys.modules['streamlit'] = None\n" + "\n".join(f"import fer_core.{m}" for m in modules)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_every_module_has_a_docstring_and_stays_small():
    for path in PKG.glob("*.py"):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name} has no module docstring"
        assert len(path.read_text().splitlines()) < 400, f"{path.name} is too long"


def test_ruff_finds_nothing_in_the_repo():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_passes_on_the_package_and_the_dashboard():
    # pyproject's [tool.mypy]: fer_core and the dashboard, every function annotated. A cold run takes ~30 s.
    r = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_console_scripts_are_the_module_clis(tmp_path):
    scripts = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.value.startswith("fer_core.")}
    assert set(scripts) == {"fer-train", "fer-evaluate", "fer-predict", "fer-calibrate", "fer-soup", "fer-prune", "fer-card",
                            "fer-export", "fer-compare", "fer-lrfind", "fer-audit"}, \
        "console scripts missing: reinstall with `pip install -r requirements.txt -e .`"
    for ep in scripts.values():
        assert ep.load() is importlib.import_module(ep.module).main
    from fer_core.data import load_dataset

    face = load_dataset(SAMPLE_DATA).images["PublicTest"][0].numpy()
    Image.fromarray(np.asarray(face)).save(tmp_path / "face.png")
    exe = Path(sysconfig.get_path("scripts")) / "fer-predict"  # where pip put it, whether or not that is on PATH
    r = subprocess.run([str(exe), "--no-detect", "--json", str(tmp_path / "face.png")], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["faces"][0]["label"] in EMOTIONS
    usage = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120).stdout
    assert usage.startswith("usage: fer-predict ")  # the usage line names the command that was typed


def test_readme_python_example_runs_on_a_real_photo(tmp_path, monkeypatch):
    from photos import astronaut, encode

    block = (ROOT / "README.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "photo.jpg").write_bytes(encode(astronaut(), "JPEG"))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - the documented example, run as a user would
    assert scope["faces"] and scope["faces"][0].label in EMOTIONS
    assert scope["heat"].shape == (48, 48) and 0 <= scope["heat"].min() and scope["heat"].max() <= 1
    assert Image.open(tmp_path / "photo.annotated.png").size == Image.open(tmp_path / "photo.jpg").size


def test_every_top_level_name_resolves_to_the_module_that_owns_it():
    import fer_core.video

    for name in fer_core.__all__:  # the lazy re-exports included: a renamed function would fail here, not in a user's code
        assert getattr(fer_core, name) is not None, name
    assert fer_core.predict_video is fer_core.video.predict_video
    with pytest.raises(AttributeError, match="has no attribute 'predict_videos'"):
        fer_core.predict_videos  # noqa: B018
