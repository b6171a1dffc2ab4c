"""The benchmark harness runs (`bench/run.py --quick`), so it cannot rot unnoticed.

Not a timed test: it checks the report has every section, never a figure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_run_writes_every_section(tmp_path) -> None:
    output = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report = output.read_text()
    headings = ("## Start-up", "## Start-up with 1,000", "## Beside `bao agent`", "## Signal forwarding", "## Idle CPU")
    for heading in (*headings, "## AWS", "## Refresh soak", "## Herd", "## Image audit"):
        assert heading in report
    assert "Ratio to `import requests`" in report
    assert "moments with an expired token in place" in report
