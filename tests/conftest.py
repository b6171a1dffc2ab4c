"""Shared fixtures: the real binary, a real proxy on loopback, real tmpfs.

Tests run the installed `stronghold-init` as a subprocess and talk HTTP to a
test proxy in a thread on port 0.  The test proxy *is* the dev proxy's code
(`injector.devproxy.DevProxy`) with two additions: every request is
recorded, and answers can be scripted per path to inject faults.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from injector.devproxy import Answer, DevProxy, Handler, make_server, server_url
from testkit.servers import free_port  # noqa: F401 - re-exported for the tests
from testkit.waiting import read_line, tell, wait_for, wait_for_line, wait_for_log  # noqa: F401 - re-exported

BIN_DIR = Path(sys.executable).parent
# The binary under test: the pip-installed command next to this interpreter, or,
# with STRONGHOLD_INIT_BIN=PATH, any other build of it (the Python-free bundle:
# STRONGHOLD_INIT_BIN=dist/stronghold-init/stronghold-init), so the same
# black-box tests prove both behave alike.
BUNDLE_BIN = os.environ.get("STRONGHOLD_INIT_BIN", "")
if BUNDLE_BIN:
    STRONGHOLD: str | None = str(Path(BUNDLE_BIN).resolve())
    assert os.access(STRONGHOLD, os.X_OK), f"STRONGHOLD_INIT_BIN={BUNDLE_BIN} is not an executable file"
else:
    STRONGHOLD = shutil.which("stronghold-init", path=str(BIN_DIR)) or shutil.which("stronghold-init")
assert STRONGHOLD, "stronghold-init is not installed in this environment: pip install '.[test]'"
PYTHON = sys.executable
SECRETS = {"stripe/live": "sk_live_TESTSECRET", "postgres/app": "pg_TESTSECRET", "npm/publish": "npm_TESTSECRET"}
RESET = "reset"  # a scripted answer that drops the connection without a response


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: object
    at: float  # time.monotonic() when it arrived


class TestProxy(DevProxy):
    """DevProxy plus a request log and scripted answers."""

    __test__ = False  # not a pytest test class

    def __init__(self, **kwargs: object) -> None:
        # Rotation on: every issue is a distinct value, so the refresh and
        # rotation tests can tell one token from the next (the dev proxy's CLI
        # default is verbatim values, SPEC section 8).
        kwargs.setdefault("rotate", True)
        super().__init__(dict(SECRETS), token="boot-" + uuid.uuid4().hex, **kwargs)  # type: ignore[arg-type]
        self.requests: list[Recorded] = []
        self.scripted: dict[str, deque[Answer | str | Callable[[], Answer | str]]] = {}
        self.issued_values: list[str] = []
        self.leases_issued: list[str] = []
        self.issued_at: dict[str, float] = {}  # value -> time.monotonic() when issued
        self.session_tokens: list[str] = []
        self.down = False  # every request is dropped while True (an outage)
        self.url = ""

    def script(self, path: str, *answers: Answer | str | Callable[[], Answer | str]) -> None:
        self.scripted.setdefault(path, deque()).extend(answers)

    def answer(self, method: str, path: str, headers: dict[str, str], body: object) -> Answer | str:  # type: ignore[override]
        with self.lock:
            self.requests.append(Recorded(method, path, headers, body, time.monotonic()))
        if self.down:
            return RESET
        queue = self.scripted.get(path)
        if queue:
            item = queue.popleft()
            return item() if callable(item) else item
        result = super().answer(method, path, headers, body)
        if isinstance(result.body, dict):
            for credential in result.body.get("credentials", []):
                self.issued_values.append(credential["value"])
                self.leases_issued.append(credential["lease_id"])
                self.issued_at[credential["value"]] = time.monotonic()
            if "session_token" in result.body:
                self.session_tokens.append(result.body["session_token"])
        return result

    def paths(self) -> list[str]:
        with self.lock:
            return [r.path for r in self.requests]

    def bodies(self, path: str) -> list[object]:
        with self.lock:
            return [r.body for r in self.requests if r.path == path]

    def secrets_seen(self) -> list[str]:
        """Everything secret this proxy handed out or accepted."""
        return [self.token, *self.issued_values, *self.session_tokens]


class ScriptedHandler(Handler):
    def _send(self, answer: Answer | str) -> None:  # type: ignore[override]
        if answer == RESET:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        super()._send(answer)  # type: ignore[arg-type]


@pytest.fixture
def make_proxy() -> Iterator[Callable[..., TestProxy]]:
    servers = []

    def factory(*, tls=None, **kwargs: object) -> TestProxy:
        """A TestProxy served in a thread on port 0; with `tls`, over HTTPS as https://localhost."""
        proxy = TestProxy(**kwargs)
        server = make_server(proxy, "127.0.0.1:0", handler=ScriptedHandler)
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        proxy.url = server_url(server) if tls is None else f"https://localhost:{server.server_address[1]}"
        servers.append(server)
        return proxy

    yield factory
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy(make_proxy: Callable[..., TestProxy]) -> TestProxy:
    return make_proxy()


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A path on real tmpfs that does not exist yet; removed afterwards."""
    path = Path("/dev/shm") / f"stronghold-test-{uuid.uuid4().hex[:12]}"
    yield path
    if path.is_symlink() or path.is_file():  # a test may have put a file (or a link) in its place
        path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def base_env(proxy: TestProxy | None = None, **extra: str) -> dict[str, str]:
    """A minimal environment for the binary: PATH, plus proxy settings."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    if proxy is not None:
        env["STRONGHOLD_PROXY_URL"] = proxy.url
        env["STRONGHOLD_BOOTSTRAP_TOKEN"] = proxy.token
    env.update(extra)
    return env


# A child that reports what it received as one JSON line on stdout.
REPORT_CHILD = r"""
import json, os, sys
names = sys.argv[1:]
out = {"env": {k: v for k, v in os.environ.items()}, "files": {}, "pid": os.getpid()}
for name in names:
    path = os.environ.get(name)
    if path and os.path.exists(path):
        st = os.stat(path)
        data = open(path).read()
        out["files"][name] = {"path": path, "data": data, "mode": oct(st.st_mode & 0o777), "uid": st.st_uid}
print(json.dumps(out), flush=True)
"""


def report_command(*file_vars: str) -> list[str]:
    return [PYTHON, "-c", REPORT_CHILD, *file_vars]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def report(self) -> dict:
        return json.loads(self.stdout.strip().splitlines()[-1])


def run(args: list[str], env: dict[str, str], timeout: float = 60, **kwargs: object) -> Result:
    """Run the binary to completion."""
    done = subprocess.run(
        [STRONGHOLD, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,  # type: ignore[arg-type]
    )
    return Result(done.returncode, done.stdout, done.stderr)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ": error: " in line]


def one_error(result: Result) -> str:
    """The one error line of a failed run, which must not be an internal error."""
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "internal error" not in errors[0] and "Traceback" not in result.stderr
    return errors[0]


def issues(proxy: TestProxy) -> int:
    """How many credential requests the proxy has answered."""
    return proxy.paths().count("/v1/credentials")


# The real cli.main with sys.platform faked: how a non-Linux machine runs it.
NON_LINUX = "import sys; sys.platform = 'darwin'; from injector.cli import main; main(sys.argv[1:])"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]  # a prefix: run as nobody
_NOBODY_BINARY: list[str] = []


def nobody_command() -> list[str]:
    """The binary under test as `nobody` runs it: [*NOBODY, a copy of it that nobody can reach].

    A checkout inside a directory other users cannot enter (root's home is
    0700, so is any `mktemp -d`) hides the venv, its binary and the package
    from nobody.  Then what runs is copied, once per session, into a
    world-readable temporary directory: the bundle directory, or the
    `injector` package and its start-path dependencies behind a launcher on
    the system interpreter.
    """
    if not _NOBODY_BINARY:
        _NOBODY_BINARY.append(_reachable_by_nobody())
    return [*NOBODY, *_NOBODY_BINARY]


def _reachable_by_nobody() -> str:
    assert STRONGHOLD
    probe = subprocess.run([*NOBODY, STRONGHOLD, "--version"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        return STRONGHOLD  # nothing to copy: the checkout is reachable
    import atexit
    import importlib
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="stronghold-nobody-"))
    atexit.register(shutil.rmtree, root, True)
    if BUNDLE_BIN:
        shutil.copytree(Path(STRONGHOLD).parent, root / "bundle", symlinks=True)
        binary = root / "bundle" / Path(STRONGHOLD).name
    else:
        lib = root / "lib"
        for name in ("injector", "dotenv", "tenacity", "shtab"):
            module = importlib.import_module(name)
            source = Path(module.__file__ or "")
            if source.name == "__init__.py":
                shutil.copytree(source.parent, lib / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                lib.mkdir(exist_ok=True)
                shutil.copy2(source, lib / source.name)
        binary = root / "stronghold-init"
        python = os.path.realpath(sys.executable)  # the system interpreter the venv links to
        binary.write_text(
            f"#!{python} -I\nimport sys\nsys.path.insert(0, {str(lib)!r})\nfrom injector.cli import main\nmain()\n"
        )
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o755)
        for file in files:
            path = os.path.join(directory, file)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.access(path, os.X_OK) or path == str(binary) else 0o644)
    return str(binary)


def start(
    args: list[str], env: dict[str, str], *, prefix: list[str] | None = None, **kwargs: object
) -> subprocess.Popen[str]:
    """Start the binary (after `prefix`, e.g. NOBODY) in its own session, so teardown can kill the whole tree.

    stdout and stderr are pipes; pass stdin=subprocess.PIPE to talk to the command (see `tell`).
    """
    command = nobody_command() if prefix is NOBODY else [*(prefix or []), STRONGHOLD]
    return subprocess.Popen(
        [*command, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes started by a test; their whole process groups are killed at teardown."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture(scope="session")
def bao(tmp_path_factory):  # -> openbao.OpenBao
    """One real OpenBao dev server for the session; tests use their own paths in it."""
    from testkit.servers import OpenBao

    server = OpenBao(tmp_path_factory.mktemp("openbao"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def container_env(tmp_path_factory):  # -> containers.ContainerEnv
    """One podman storage for the session (testkit/containers.py); skips with one reason when tools are missing."""
    from testkit import containers

    absent = containers.missing()
    if absent:
        pytest.skip(f"container tools missing: {', '.join(absent)}; install them with: {containers.INSTALL_HINT}")
    if os.geteuid() != 0:
        pytest.skip("container tests run rootful podman: run them as root (as .ci/run does)")
    env = containers.ContainerEnv(tmp_path_factory.mktemp("podman"))
    yield env
    env.teardown()


@pytest.fixture(scope="session")
def example_image(container_env):  # -> containers.ExampleImage
    """examples/Dockerfile built once per session on the local Debian base (testkit/containers.py)."""
    from testkit import containers

    return containers.build_example_image(container_env, Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="session")
def sidecar_image(container_env) -> str:
    """examples/sidecar.Dockerfile built once per session (just stronghold-init), offline."""
    from testkit import containers

    return containers.build_sidecar_image(container_env, Path(__file__).resolve().parent.parent)


# Fixtures that start the example image with a probe app (tests/container_app.py).
from container_app import app_bootstrap_file, host_token_dir, launch_app  # noqa: E402, F401
