"""The bundle's core scenarios inside real containers whose images hold no Python at all.

The image is the Debian minbase `debian-nopy` (testkit/containers.py; python3
absent, asserted here too) plus the bundle copied from the image that
examples/stronghold-init.Dockerfile builds, exactly as the README and docs/bundle.md tell users
to: `COPY --from=stronghold-init /opt/stronghold /opt/stronghold`. The app is
a POSIX sh script (the base has no Node or Python) that reports SHA-256
digests of what it received, never the values. Containers reach the test
proxy on 127.0.0.1 through --network=host.

Also here: examples/go.Dockerfile built for real on a distroless-style base
that holds nothing but glibc (libc6's libraries and its C.UTF-8 locale, as
distroless/base has) and a passwd file, with
a Go app compiled by Debian's Go toolchain.
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

from conftest import TestProxy, read_line, wait_for
from container_app import owned_bootstrap_file, owned_tmpfs_dir
from testkit.containers import ContainerEnv, bundle_image

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parent.parent
STARTUP = 120  # seconds: a container start on a loaded 2-core machine
UID = 1000  # the base's user `node`
# The app: one JSON line per event. $1 names the _FILE variable to watch.
REPORTER = r"""
digest() { sha256sum | cut -d' ' -f1; }
file_digest() { if [ -r "$1" ]; then digest < "$1"; else echo none; fi; }
eval "path=\${$1:-}"
printf '{"event":"start","pid":%s,"ppid":%s,"uid":%s,"env":"%s","file":"%s","mode":"%s","stronghold_vars":%s}\n' \
  $$ "$PPID" "$(id -u)" "$(printf %s "${STRIPE_KEY:-}" | digest)" "$(file_digest "$path")" \
  "$(stat -c %a "$path" 2>/dev/null || echo none)" "$(env | grep -c '^STRONGHOLD_')"
trap 'echo "{\"event\":\"TERM\"}"; exit ${EXIT_CODE:-0}' TERM
trap 'echo "{\"event\":\"HUP\",\"file\":\"$(file_digest "$path")\"}"' HUP
last=""
while :; do
  now=$(file_digest "$path")
  if [ "$now" != "$last" ]; then echo "{\"event\":\"file\",\"file\":\"$now\"}"; last=$now; fi
  sleep 0.2 & wait $!
done
"""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(scope="module")
def nopy_image(container_env: ContainerEnv) -> str:
    """debian-nopy + the bundle at /opt/stronghold, built with podman from the bundle image."""
    base = container_env.base("debian-nopy")
    context = container_env.scratch / "nopy-context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir()
    (context / "reporter.sh").write_text(REPORTER)
    (context / "Dockerfile").write_text(
        f"FROM {bundle_image(container_env, ROOT)} AS stronghold-init\n"
        f"FROM {base}\n"
        "COPY --from=stronghold-init /opt/stronghold /opt/stronghold\n"
        "COPY reporter.sh /app/reporter.sh\n"
        f"USER {UID}:{UID}\n"
        'ENTRYPOINT ["/opt/stronghold/stronghold-init", "--"]\n'
        'CMD ["sh", "/app/reporter.sh", "DB_PASSWORD_FILE"]\n'
    )
    return container_env.build(context, "localhost/stronghold-bundle-nopy:test")


@pytest.fixture
def token_dir() -> Iterator[Path]:
    """A host tmpfs directory mounted as /run/stronghold, so a test can look after the container is gone."""
    yield from owned_tmpfs_dir("stronghold-btest", UID)


class Container:
    def __init__(self, env: ContainerEnv, process: subprocess.Popen[str], name: str) -> None:
        self.env, self.process, self.name = env, process, name

    def event(self, kind: str, timeout: float = STARTUP) -> dict:
        while True:
            line = read_line(self.process, timeout)
            assert line, f"the container ended before the app said {kind!r}: {self.process.stderr.read()[-2000:]}"  # type: ignore[union-attr]
            if line.startswith("{") and json.loads(line)["event"] == kind:
                return json.loads(line)

    def finish(self, timeout: float = STARTUP) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


@pytest.fixture
def launch(container_env: ContainerEnv, nopy_image: str, proxy: TestProxy) -> Iterator:
    """Start the image attached; `target` is the proxy to use (default `proxy`), `login_to` whose token to mount."""
    started: list[Container] = []

    def start(
        *args: str,
        env: dict[str, str] | None = None,
        mount: Path | None = None,
        target: TestProxy | None = None,
        login_to: TestProxy | None = None,
    ) -> Container:
        name = f"shbundle-{uuid.uuid4().hex[:10]}"
        token = owned_bootstrap_file(container_env, (login_to or target or proxy).token, UID)
        options = ["run", "--rm", "--name", name, "--network=host"]
        options += ["--volume", f"{token}:/run/secrets/stronghold-bootstrap:ro"]
        options += ["--env", f"STRONGHOLD_PROXY_URL={(target or proxy).url}"]
        options += ["--env", "STRONGHOLD_BOOTSTRAP_TOKEN_FILE=/run/secrets/stronghold-bootstrap"]
        if mount is None:
            options += ["--tmpfs", "/run/stronghold:mode=0700,U"]
        else:
            options += ["--volume", f"{mount}:/run/stronghold"]
        for key, value in (env or {}).items():
            options += ["--env", f"{key}={value}"]
        if args:  # a whole argv of its own (options, a subcommand), not a command after the image's `--`
            options += ["--entrypoint", json.dumps(["/opt/stronghold/stronghold-init"])]
        container = Container(container_env, container_env.popen(*options, nopy_image, *args), name)
        started.append(container)
        return container

    yield start
    container_env.rm(*(container.name for container in started))
    for container in started:
        if container.process.poll() is None:
            container.process.kill()
        container.process.wait(timeout=60)


REFERENCES = {"STRIPE_KEY": "stronghold://stripe/live", "DB_PASSWORD_FILE": "stronghold://postgres/app"}


def test_the_image_has_no_python(container_env: ContainerEnv, nopy_image: str) -> None:
    done = container_env.run(
        nopy_image,
        "-c",
        "command -v python3 python python3.11; ls /usr/bin/python* /usr/lib/python3*",
        options=["--entrypoint", "sh"],
    )
    assert done.returncode != 0 and done.stdout.strip() == "", done.stdout
    version = container_env.run(nopy_image, options=["--entrypoint", "/opt/stronghold/stronghold-init"], timeout=60)
    assert version.returncode == 64, "no command: a usage error from the real program, not a loader failure"


def test_env_and_file_delivery_as_pid1(launch, proxy: TestProxy) -> None:
    app = launch(env=REFERENCES)
    start = app.event("start")
    issued = {digest(value) for value in proxy.issued_values}
    assert start["ppid"] == 1, "the app is the child of the bundle running as PID 1"
    assert start["uid"] == UID
    assert start["env"] in issued and start["file"] in issued
    assert start["mode"] == "400"
    assert start["stronghold_vars"] == 0, "no STRONGHOLD_* variable reaches the app"


def test_file_rotates_and_env_reference_restarts_the_app(launch, make_proxy) -> None:
    short = make_proxy(ttl=2)
    app = launch(env={**REFERENCES, "STRONGHOLD_LOG_LEVEL": "debug"}, target=short)
    first = app.event("start")
    second = app.event("start", timeout=60)  # an env token can only reach a running app by a restart
    assert second["pid"] != first["pid"] and second["env"] != first["env"]
    issued = {digest(value) for value in short.issued_values}
    assert {first["env"], second["env"], first["file"], second["file"]} <= issued


def test_file_rotation_with_signal_leaves_the_app_running(launch, make_proxy) -> None:
    short = make_proxy(ttl=2)
    app = launch(
        "--on-rotate",
        "signal:SIGHUP",
        "--",
        "sh",
        "/app/reporter.sh",
        "DB_PASSWORD_FILE",
        env={"DB_PASSWORD_FILE": "stronghold://postgres/app"},
        target=short,
    )
    first = app.event("start")
    hup = app.event("HUP", timeout=60)
    assert hup["file"] != first["file"]
    assert hup["file"] in {digest(value) for value in short.issued_values}


def test_sigterm_reaches_the_app_and_its_exit_code_comes_back(
    launch, container_env: ContainerEnv, proxy: TestProxy, token_dir: Path
) -> None:
    app = launch(env={**REFERENCES, "EXIT_CODE": "42"}, mount=token_dir)
    app.event("start")
    assert (token_dir / "DB_PASSWORD").exists()
    container_env.podman("stop", "--time", "10", app.name, timeout=STARTUP)
    code, out, _ = app.finish()
    assert '"event":"TERM"' in out
    assert code == 42
    wait_for(lambda: set(proxy.leases_issued) <= set(proxy.revoked), timeout=20, what="every lease revoked")
    assert list(token_dir.iterdir()) == [], "the token files are gone"


@pytest.mark.parametrize(
    ("command", "expected"),
    [(["sh", "-c", "kill -KILL $$"], 128 + 9), (["/no/such/app"], 127), (["/etc/passwd"], 126)],
)
def test_exit_codes(launch, command: list[str], expected: int) -> None:
    code, _, err = launch("--", *command, env=REFERENCES).finish()
    assert code == expected, err


def test_a_refused_login_is_77_and_the_app_never_starts(launch, proxy: TestProxy, make_proxy) -> None:
    other = make_proxy()  # a proxy that does not know `proxy`'s bootstrap token
    code, out, err = launch(env=REFERENCES, target=other, login_to=proxy).finish()
    assert code == 77, err
    assert '"event":"start"' not in out


def test_sidecar_writes_ready_and_cleans_up_on_stop(
    launch, container_env: ContainerEnv, proxy: TestProxy, token_dir: Path
) -> None:
    app = launch("sidecar", env={"DB_PASSWORD_FILE": "stronghold://postgres/app"}, mount=token_dir)
    container = app.name
    wait_for(lambda: (token_dir / ".ready").exists(), timeout=STARTUP, what="the sidecar's .ready")
    assert (token_dir / "DB_PASSWORD").read_text() in proxy.issued_values
    container_env.podman("stop", "--time", "10", container, timeout=STARTUP)
    code, _, err = app.finish()
    assert code == 0, err
    assert list(token_dir.iterdir()) == []
    assert set(proxy.leases_issued) <= set(proxy.revoked)


# --- examples/go.Dockerfile -----------------------------------------------------------------------

GLIBC_ONLY = """\
FROM {debian} AS glibc
RUN mkdir -p /base/etc /base/tmp /base/lib64 /base/lib/x86_64-linux-gnu /base/usr/lib/locale \\
 && cp -a /lib64/ld-linux-x86-64.so.2 /base/lib64/ && cp -a /usr/lib/locale/C.utf8 /base/usr/lib/locale/ \\
 && cp -aL $(dpkg -L libc6 | grep -E '^/lib/x86_64-linux-gnu/[^/]+[.]so[.0-9]*$') /base/lib/x86_64-linux-gnu/ \\
 && echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' > /base/etc/passwd \\
 && echo 'nonroot:x:65532:' > /base/etc/group && chmod 1777 /base/tmp
FROM scratch
COPY --from=glibc /base/ /
"""


@pytest.fixture(scope="module")
def go_image(container_env: ContainerEnv, tmp_path_factory) -> str:
    """examples/go.Dockerfile on a base holding only glibc (no shell, no Python), with a Go-built app."""
    go = shutil.which("go")
    assert go, "the Go toolchain is missing: apt-get install golang-go (.ci/run installs it)"
    work = tmp_path_factory.mktemp("go")
    env = {**os.environ, "GOCACHE": str(work / "cache"), "GOPATH": str(work / "gopath"), "GOFLAGS": "-mod=mod"}
    env.update(CGO_ENABLED="0", GOPROXY="off", HOME=str(work))
    shutil.copytree(ROOT / "examples" / "go-app", work / "src")
    binary = work / "out" / "go-app"
    build = [go, "build", "-trimpath", "-o", str(binary), "."]
    subprocess.run(build, cwd=work / "src", env=env, check=True, timeout=600)
    # The builder stage's stand-in: the same /out/go-app the golang image would produce, already built.
    builder_context = work / "builder"
    (builder_context / "out").mkdir(parents=True)
    shutil.copy2(binary, builder_context / "out" / "go-app")
    (builder_context / "Dockerfile").write_text(f"FROM {container_env.base('busybox')}\nCOPY out/ /out/\n")
    builder = container_env.build(builder_context, "localhost/go-builder:test")
    base_context = work / "base"
    base_context.mkdir()
    (base_context / "Dockerfile").write_text(GLIBC_ONLY.format(debian=container_env.base("debian-nopy")))
    base = container_env.build(base_context, "localhost/glibc-only:test")
    context = work / "context"
    (context / "examples").mkdir(parents=True)
    shutil.copy2(ROOT / "examples" / "go.Dockerfile", context / "examples")
    shutil.copytree(ROOT / "examples" / "go-app", context / "examples" / "go-app")
    return container_env.build(
        context,
        "localhost/go-app:test",
        dockerfile=context / "examples" / "go.Dockerfile",
        build_args={"GO_BUILDER": builder, "BASE": base, "STRONGHOLD_IMAGE": bundle_image(container_env, ROOT)},
    )


def test_go_app_on_a_glibc_only_base(container_env: ContainerEnv, go_image: str, proxy: TestProxy) -> None:
    bootstrap = owned_bootstrap_file(container_env, proxy.token, uid=65532)
    name = f"shgo-{uuid.uuid4().hex[:10]}"
    process = container_env.popen(
        "run",
        "--rm",
        "--name",
        name,
        "--network=host",
        "--tmpfs",
        "/run/stronghold:mode=0700,U",
        "--volume",
        f"{bootstrap}:/run/secrets/stronghold-bootstrap:ro",
        "--env",
        f"STRONGHOLD_PROXY_URL={proxy.url}",
        go_image,
    )
    try:
        app = Container(container_env, process, name)
        ready = app.event("ready")
        issued = {digest(value) for value in proxy.issued_values}
        assert ready["ppid"] == 1 and ready["key"] in issued and ready["password"] in issued
        listing = container_env.run(go_image, options=["--entrypoint", "/bin/sh"])
        assert listing.returncode != 0, "the base has no shell"
        container_env.podman("stop", "--time", "10", name, timeout=STARTUP)
        code, out, _ = app.finish()
        assert code == 0 and "terminated" in out
    finally:
        container_env.rm(name)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
