"""The code stays ruff-clean (docs/development.md: "Types and lint"), checked with the pinned test dependency."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from conftest import BIN_DIR

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(BIN_DIR)) or shutil.which("ruff")
    assert ruff, "ruff is a test dependency: pip install '.[test]'"
    done = subprocess.run([ruff, "check", "injector", "tests", "bench"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
