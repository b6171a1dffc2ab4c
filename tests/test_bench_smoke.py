"""The benchmark harness runs (one quick round), so it cannot rot unnoticed.

Not a timed test: it asserts the report's shape, never a figure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_startup_benchmark_reports_a_ratio() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "startup.py"), "--runs", "1"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "ratio (median)" in done.stdout
    assert 'python -c "import requests"' in done.stdout
