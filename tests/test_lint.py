"""The habits the project keeps, checked like any other behaviour: ruff and mypy, with the settings in
pyproject.toml, report nothing (`.ci/run` runs this suite, so a new finding fails CI)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: it is in the test extra (pip install '.[test]')")
    return found


def test_ruff_finds_nothing():
    result = subprocess.run([tool("ruff"), "check", "modemgw", "webui", "tests", "benchmarks"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing():
    result = subprocess.run([tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
