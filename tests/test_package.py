"""Layering: fer_core imports without Streamlit; every module says what it owns; ruff and mypy find nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import fer_core

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


def test_mypy_passes_on_the_package():
    # pyproject's [tool.mypy]: fer_core only, every function annotated. A cold run takes ~20 s.
    r = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
