"""docs/containers.md's walk-through, run as written: bundle image, app image, dev proxy, run, stop.

The blocks of "Step 0" and "Steps 1 to 5" run in order in one bash, in a fresh
copy of the checkout (the files git knows of, as a clone holds them), as root,
with podman configured by testkit/containers.py (runc, a scratch storage:
the CONTAINERS_* variables, as a user's containers.conf would). Only what
must differ on a test machine differs:

- free ports for the fixed 8787 (dev proxy) and 8080 (the app);
- step 0's mmdebstrap block runs once per machine, as written, and its tar is
  cached with the other test bases, keyed on the block's text and the mirror
  (otherwise 3 minutes and 270 MB each run); `podman import` and everything
  after run every time;
- the machine's Debian mirror is appended to that block when it is not
  mmdebstrap's default (the page says to do so);
- HOME is a directory in the tests' cache, so `--cache ~/.cache/...` reuses a
  bundle build of identical inputs, as it does for a user (the first build
  compiles for minutes).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from docblocks import ROOT, blocks
from testkit import containers
from testkit.servers import free_port
from testkit.waiting import wait_for

pytestmark = pytest.mark.container

PAGE = "docs/containers.md"
STEP_0 = "### Step 0, offline only: a Node base image"
STEPS = "### Steps 1 to 5"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
TOOLS = ("podman", "runc", "mmdebstrap", "gcc", "patchelf", "curl", "git")


def fresh_copy(dest: Path) -> Path:
    """The checkout's files as a clone has them (tracked and new, nothing ignored), in a git index of its own."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a deleted tracked file is still listed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    # An index holding every copied file (no commit: the bundle's cache key would then change with each
    # copy's commit time): `git status` then names what the walk-through adds or changes beyond "A ".
    for command in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", "-C", str(dest), *command], check=True, capture_output=True)
    return dest


def node_base_tar(block: str) -> Path:
    """Step 0's mmdebstrap block, run as written once per machine; its node-base.tar from the cache after."""
    mirror = containers.debian_mirror().rstrip("/")
    if mirror != DEFAULT_MIRROR:
        block += f" {mirror}"

    def make(out: Path) -> None:
        scratch = out.with_name(out.name + ".work")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        try:
            done = subprocess.run(
                ["bash", "-euc", block],
                cwd=scratch,
                capture_output=True,
                text=True,
                timeout=3600,
                start_new_session=True,
            )
            assert done.returncode == 0, f"step 0 failed ({done.returncode}): {done.stderr[-3000:]}"
            os.replace(scratch / "node-base.tar", out)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    return containers._cached("walkthrough-node-base", (block,), make)


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_the_walkthrough_runs_as_written(tmp_path) -> None:
    absent = [tool for tool in TOOLS if not shutil.which(tool)]
    if absent:
        pytest.skip(f"the walk-through needs {', '.join(absent)} (.ci/run installs them)")
    if os.geteuid() != 0:
        pytest.skip("the walk-through is written for rootful podman: run it as root (as .ci/run does)")
    (import_block,) = [b for b in blocks(PAGE, STEP_0) if b.startswith("podman import")]
    (mmdebstrap_block,) = [b for b in blocks(PAGE, STEP_0) if b.startswith("mmdebstrap")]
    (steps,) = blocks(PAGE, STEPS)
    for fixed in ("127.0.0.1:8787", "127.0.0.1:8080", "PORT=8080"):
        assert fixed in steps, fixed
    proxy_port, app_port = free_port(), free_port()
    script = "\n".join([import_block, steps]).replace("8787", str(proxy_port)).replace("8080", str(app_port))

    clone = fresh_copy(tmp_path / "clone")
    clone.chmod(0o755)
    shutil.copy2(node_base_tar(mmdebstrap_block), clone / "node-base.tar")  # what step 0's first block leaves
    home = containers.CACHE_DIR / "walkthrough-home"
    home.mkdir(parents=True, exist_ok=True)
    podman = containers.ContainerEnv(tmp_path / "podman")
    shell = subprocess.Popen(
        ["bash", "-euc", script],
        cwd=clone,
        env={**podman.environment, "HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = shell.communicate(timeout=3600)
        assert shell.returncode == 0, f"exit {shell.returncode}: {err[-4000:]}"
        assert '{"ready":true}' in out.splitlines(), out[-2000:]
        assert "credentials issued" in out + err, "podman logs shows stronghold-init's start"
        secrets = (clone / "examples" / "dev-secrets.env").read_text().splitlines()
        planted = [line.split("=", 1)[1] for line in secrets if "=" in line and not line.startswith("#")]
        planted.append((clone / "bootstrap-token").read_text())
        for value in planted:
            assert value not in out + err, "a credential in the walk-through's output"
        # `podman stop` returns once the container has exited; --rm's removal follows from conmon's cleanup
        # process, which a loaded machine may run much later: an exited container is as good as gone.
        left = podman.podman("ps", "--all", "--filter", "name=^shop-api$", "--format", "{{.Status}}").stdout.strip()
        assert left == "" or left.startswith("Exited (0)"), f"after podman stop: {left}"
        wait_for(lambda: not answers(proxy_port), timeout=30, what="the dev proxy to stop after `kill %1`")
        status = subprocess.run(
            ["git", "-C", str(clone), "status", "--porcelain", "--untracked-files=all"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        # "A  " is a copied file, unchanged since the copy; "??" a new file .gitignore misses, "AM" a changed one.
        made = [line for line in status.splitlines() if not line.startswith("A  ")]
        assert made == [], "files the walk-through made that .gitignore does not cover, or changed:\n" + "\n".join(made)
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait(timeout=30)
        try:
            os.killpg(shell.pid, signal.SIGKILL)  # a dev proxy left behind by a failed run
        except ProcessLookupError:
            pass
        podman.teardown()
