"""The example image under podman as a test app: the probe, its container, the fixtures to start it.

Imported by tests/test_container_run.py and tests/test_container_pid1.py. The probe
(testkit/container_probe.js, mounted read-only at /probe/probe.js) reports hashes of
what it got as JSON lines, never the values. Containers run the way docs/containers.md
says: --network=host to reach the test proxy on 127.0.0.1 (port 0), a tmpfs for
/run/stronghold (`mode=0700,U`), the bootstrap token bind-mounted read-only, the
image's non-root USER. `host_token_dir` is a host tmpfs directory (/dev/shm) to
bind-mount in its place when a test must see the directory after the container.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TestProxy, read_line
from testkit.containers import ContainerEnv

PROBE = Path(__file__).resolve().parent.parent / "testkit" / "container_probe.js"
APP_UID = 1000  # the image's USER node
STARTUP = 120  # seconds: a container start on a loaded 2-core machine


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class App:
    """One container of the example image running the probe, attached (podman run --rm)."""

    def __init__(self, env: ContainerEnv, process: subprocess.Popen[str], name: str) -> None:
        self.env, self.process, self.name = env, process, name

    def event(self, kind: str, timeout: float = STARTUP) -> dict:
        """The next probe line of this kind (earlier lines of other kinds are skipped)."""
        while True:
            line = read_line(self.process, timeout)
            assert line, f"the container ended before the probe said {kind!r}: {self.stderr_tail()}"
            if line.startswith("{"):
                message = json.loads(line)
                if message["event"] == kind:
                    return message

    def stderr_tail(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        return (self.process.stderr.read() or "")[-2000:]  # type: ignore[union-attr]

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return self.env.podman("exec", self.name, *command, check=False, timeout=60)

    def finish(self, timeout: float = STARTUP) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


def owned_bootstrap_file(container_env: ContainerEnv, text: str, uid: int = APP_UID) -> Path:
    """`text` (a bootstrap token) in a file the container user owns, mode 0400 (mounted read-only)."""
    path = container_env.scratch / f"bootstrap-{uuid.uuid4().hex[:8]}"
    path.write_text(text)
    os.chown(path, uid, uid)
    path.chmod(0o400)
    return path


def owned_tmpfs_dir(prefix: str, uid: int = APP_UID) -> Iterator[Path]:
    """A directory on the host's tmpfs owned by the container user, removed afterwards (for a fixture)."""
    path = Path("/dev/shm") / f"{prefix}-{uuid.uuid4().hex[:12]}"
    path.mkdir(mode=0o700)
    os.chown(path, uid, uid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def app_bootstrap_file(container_env, proxy: TestProxy) -> Path:
    """The bootstrap token with a trailing newline (as a Kubernetes secret has), owned by the app user."""
    return owned_bootstrap_file(container_env, proxy.token + "\n")


@pytest.fixture
def host_token_dir() -> Iterator[Path]:
    """A directory on the host's tmpfs, owned by the container user, to bind-mount as /run/stronghold."""
    yield from owned_tmpfs_dir("stronghold-ctest")


@pytest.fixture
def launch_app(container_env, example_image, proxy, app_bootstrap_file) -> Iterator:
    names: list[str] = []
    processes: list[subprocess.Popen[str]] = []

    def start(
        *,
        env: dict[str, str] | None = None,
        token_dir: Path | None = None,
        options: tuple[str, ...] = (),
        entrypoint: list[str] | None = None,
        command: tuple[str, ...] = ("node", "/probe/probe.js"),
        proxy_url: str | None = None,
        bootstrap: Path | None = None,
        no_tmpfs: bool = False,
    ) -> App:
        """Start the image; `token_dir` bind-mounts a host tmpfs directory, `no_tmpfs` mounts nothing there."""
        name = f"shtest-{uuid.uuid4().hex[:10]}"
        names.append(name)
        args = [
            "run",
            "--rm",
            "--name",
            name,
            "--network=host",
            "--volume",
            f"{bootstrap or app_bootstrap_file}:/run/secrets/stronghold-bootstrap:ro",
            "--volume",
            f"{PROBE}:/probe/probe.js:ro",
            "--env",
            f"STRONGHOLD_PROXY_URL={proxy_url or proxy.url}",
        ]
        if no_tmpfs:
            pass
        elif token_dir is None:
            args += ["--tmpfs", "/run/stronghold:mode=0700,U"]
        else:
            args += ["--volume", f"{token_dir}:/run/stronghold"]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        if entrypoint is not None:
            args += ["--entrypoint", json.dumps(entrypoint)]
        process = container_env.popen(*args, *options, example_image.tag, *command)
        processes.append(process)
        return App(container_env, process, name)

    yield start
    container_env.rm(*names)
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
