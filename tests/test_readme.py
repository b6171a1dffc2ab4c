"""The README's first two commands are what .ci/run runs, and the demo works.

The system packages (docs/development.md) and the container commands
(docs/containers.md) moved out of the README; they are checked where they live.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import BIN_DIR
from docblocks import blocks

ROOT = Path(__file__).resolve().parent.parent
CONTAINERS = ROOT / "docs" / "containers.md"


def readme_blocks() -> list[str]:
    return blocks("README.md")


def readme_commands() -> list[str]:
    return readme_blocks()[:2]


def test_ci_runs_the_readme_commands_verbatim() -> None:
    install_and_demo, test_suite = readme_commands()
    assert "examples/demo.sh" in install_and_demo and "pytest" in test_suite
    ci = (ROOT / ".ci" / "run").read_text()
    assert install_and_demo in ci.splitlines()
    assert test_suite in ci.splitlines()
    assert "set -euo pipefail" in ci


def test_ci_installs_the_container_tools_the_docs_name_before_the_tests() -> None:
    install = next(block for block in blocks("docs/development.md") if "apt-get install" in block)
    assert "podman" in install and "mmdebstrap" in install and "busybox-static" in install
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install in lines, "docs/development.md's install command, verbatim"
    _, test_suite = readme_commands()
    assert lines.index(install) < lines.index(test_suite), "installed before the tests run"
    guard = " ".join(lines[: lines.index(install)])
    for tool in ("podman", "buildah", "skopeo", "runc", "mmdebstrap", "curl"):
        assert f"command -v {tool}" in guard, f"installed only when {tool} is absent"


def test_demo_shows_credentials_without_printing_them() -> None:
    env = {"PATH": f"{BIN_DIR}:{os.environ['PATH']}", "HOME": os.environ.get("HOME", "/root")}
    done = subprocess.run(
        ["sh", str(ROOT / "examples" / "demo.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "STRIPE_SECRET_KEY       (environment): sk_test_..." in done.stdout
    assert "STRONGHOLD_* variables visible to the app: none" in done.stdout
    assert "ok: 2 reference(s) resolved and revoked" in done.stdout
    # The dev secret's full value never shows, only its 8-character preview.
    assert "sk_test_devonly_4eC39HqLyjWDarjtT1zdp7dc" not in done.stdout + done.stderr


def test_documented_container_commands_are_the_ones_the_container_tests_run() -> None:
    podman = next(block for block in blocks("docs/containers.md") if "podman run" in block)
    build = next(block for block in blocks("docs/containers.md") if "--secret id=" in block)
    harness = (ROOT / "tests" / "container_app.py").read_text() + (ROOT / "testkit" / "containers.py").read_text()
    for flag in ("--network=host", "/run/stronghold:mode=0700,U", ":/run/secrets/stronghold-bootstrap:ro"):
        assert flag in podman and flag in harness, flag
    assert "--secret id=npm_token,src=" in build and '"--secret", f"id={name},src={path}"' in harness
    for page in (ROOT / "README.md", CONTAINERS):
        assert "uid=1000,gid=1000,mode" not in page.read_text(), "podman refuses uid= on --tmpfs"
    docker_tmpfs = "--tmpfs /run/stronghold:mode=0700,uid=1000,gid=1000"
    assert docker_tmpfs in CONTAINERS.read_text()
    assert docker_tmpfs in (ROOT / "examples" / "Dockerfile").read_text()
