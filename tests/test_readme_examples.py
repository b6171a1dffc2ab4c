"""The README's one-minute try and docs/openbao.md's worked example, run as written.

Only what must differ on a test machine is changed: a free port for the fixed
one, `--ttl 2` for `--ttl 60` (so the edit arrives in seconds, not a
minute), and a scratch HOME and working directory.  Everything else is the
documentation's text, run by bash with the installed binaries first on PATH.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from conftest import BIN_DIR, read_line
from docblocks import blocks
from testkit.servers import free_port


def shell_env(home: Path) -> dict[str, str]:
    return {"PATH": f"{BIN_DIR}:{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(home), "LANG": "C.UTF-8"}


def start_script(script: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """bash running `script` in its own session (teardown kills the whole group, background jobs too)."""
    return subprocess.Popen(
        ["bash", "-euc", script],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def line_starting(process: subprocess.Popen[str], prefix: str, timeout: float = 60) -> str:
    """The next stdout line starting with `prefix` (the dev proxy's URL line is skipped)."""
    while True:
        line = read_line(process, timeout=timeout)
        assert line, f"stdout ended before a line starting with {prefix!r}; stderr: {process.stderr.read()}"
        if line.startswith(prefix):
            return line.strip()


def test_laptop_section_runs_top_to_bottom(tmp_path, processes) -> None:
    start_block, edit_block = blocks("README.md", "## A one-minute try")[:2]
    assert "--token " not in start_block, "the token never goes in an argv"
    assert "127.0.0.1:8787" in start_block and "--ttl 60" in start_block
    port = free_port()
    script = start_block.replace("127.0.0.1:8787", f"127.0.0.1:{port}").replace("--ttl 60", "--ttl 2")
    home, project = tmp_path / "home", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    env = shell_env(home)
    app = start_script(script, project, env)
    processes.append(app)
    assert line_starting(app, "hello:") == "hello: STRIPE_KEY=sk_test_mine"
    for name in (".stronghold-dev.env", ".stronghold-dev.token"):
        assert stat.S_IMODE((home / name).stat().st_mode) == 0o600, f"~/{name} is yours alone"
    edited = subprocess.run(["bash", "-euc", edit_block], cwd=project, env=env, timeout=30)
    assert edited.returncode == 0
    assert line_starting(app, "hello:") == "hello: STRIPE_KEY=sk_test_rotated"


def test_openbao_worked_example_runs_as_written(tmp_path, processes) -> None:
    (block,) = blocks("docs/openbao.md")[:1]
    assert "127.0.0.1:8200" in block
    # The secret id file is made 0600 before the secret goes in.
    assert block.index("chmod 600 secret-id") < block.index("> secret-id")
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    example = start_script(block.replace("127.0.0.1:8200", f"127.0.0.1:{port}"), tmp_path, shell_env(home))
    processes.append(example)
    out, err = example.communicate(timeout=180)
    assert example.returncode == 0, err
    assert "the app got STRIPE_KEY=sk_test_123 DB_PASSWORD=s3cret" in out.splitlines()
    assert not (tmp_path / "secret-id").exists(), "--vault-remove-secret-id-file removed it"
    assert (tmp_path / "role-id").exists()
