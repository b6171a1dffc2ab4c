"""The type annotations are checked, and checking them costs the entrypoint nothing.

`mypy` runs with pyproject.toml's [tool.mypy] settings (every function
annotated, Optional misuse caught) and must report no error.  Types needed
only for annotations are imported under `if TYPE_CHECKING:` with
`TYPE_CHECKING = False` defined in the module, so `typing` itself is never
imported on the start path.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import PYTHON

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_finds_no_error_in_injector() -> None:
    done = subprocess.run(
        # --no-incremental: a stale .mypy_cache in a working copy once hid an error a fresh clone showed
        [PYTHON, "-m", "mypy", "--no-error-summary", "--no-incremental"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_would_catch_optional_misuse(tmp_path: Path) -> None:
    """The settings are strict enough for the bug class the issue names (a None used as a str)."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f(x: str | None) -> int:\n    return len(x)\n\ndef g(y):\n    return y\n")
    done = subprocess.run(
        [PYTHON, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), str(sample)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1
    assert "arg-type" in done.stdout and "no-untyped-def" in done.stdout


def test_the_start_path_does_not_import_typing() -> None:
    """Annotations are strings and type-only imports sit under TYPE_CHECKING: nothing to load at start."""
    probe = (
        "import sys; from injector import cli; from injector.settings import plan; "
        "from injector.modes import lifecycle, run; from injector.process import supervisor; "
        "from injector.refresh import refresher; from injector.delivery import tokendir, childenv; "
        "from injector.sources import proxy, wiring; from injector.sources.openbao import source; "
        "print('typing' in sys.modules)"
    )
    done = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
