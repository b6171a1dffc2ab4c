"""The suite passes from a checkout inside a directory other users cannot enter (issue 19).

Root's home is 0700, and so is any `mktemp -d`: a fresh clone there hid the
venv's binary from the tests that run it as `nobody`, and six of them failed.
This copies the tree into such a directory, gives it a venv of its own there
(without pip: it sees this venv's packages through a .pth file, and the
copied tree first), and runs the tests that act as nobody from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The tests that run the binary as nobody (by -k, so a test moved to another file still counts).
NOBODY_TESTS = "(dumpable or dev_shm or default_chain) and not container"


@pytest.mark.skipif(os.geteuid() != 0, reason="running as nobody needs root")
def test_the_tests_that_run_as_nobody_pass_from_a_0700_checkout() -> None:
    hidden = Path(tempfile.mkdtemp(prefix="stronghold-0700-"))
    try:
        assert (hidden.stat().st_mode & 0o777) == 0o700
        tree = hidden / "checkout"
        ignore = shutil.ignore_patterns(
            "__pycache__", ".venv", ".git", ".hypothesis", ".pytest_cache", "dist", "build", "*.egg-info"
        )
        shutil.copytree(ROOT, tree, ignore=ignore, symlinks=True)
        venv = tree / ".venv"
        base_python = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
        subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
        python = venv / "bin" / "python"
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
        # The copied tree first, then this venv's packages (its .pth files, e.g. an editable install, unread).
        Path(site, "00-checkout.pth").write_text(f"{tree}\n{sysconfig.get_paths()['purelib']}\n")
        binary = venv / "bin" / "stronghold-init"
        binary.write_text(f"#!{python}\nfrom injector.cli import main\nmain()\n")
        binary.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "STRONGHOLD_INIT_BIN")}
        done = subprocess.run(
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", "-k", NOBODY_TESTS],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert " passed" in summary and "skipped" not in summary and "deselected" in summary, summary
    finally:
        shutil.rmtree(hidden, ignore_errors=True)
