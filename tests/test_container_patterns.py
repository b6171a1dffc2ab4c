"""The sidecar and init-container (fetch) patterns, as two real containers sharing a tmpfs volume.

The runs are made from examples/compose.yaml: its tmpfs volume options, its
services' users, environments, commands, secrets, volumes and healthcheck are
translated to podman commands (the proxy URL and listen ports are the test's).
The app is the example's own server.js, which answers 200 {"ready": true} only
when it read both credential files; the stronghold service is
examples/sidecar.Dockerfile built for real (the `sidecar_image` fixture).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import TestProxy, wait_for
from testkit.containers import ContainerEnv
from testkit.servers import free_port

pytestmark = pytest.mark.container

COMPOSE = yaml.safe_load((Path(__file__).resolve().parent.parent / "examples" / "compose.yaml").read_text())
VOLUME = "stronghold-tokens"
STARTUP = 120


def http_get(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except OSError:
        return 0, None


class Compose:
    """examples/compose.yaml as podman commands, with this test's names, proxy and ports."""

    def __init__(self, env: ContainerEnv, images: tuple[str, str], proxy: TestProxy, bootstrap: Path) -> None:
        self.env, self.proxy, self.bootstrap = env, proxy, bootstrap
        self.sidecar_image, self.app_image = images
        self.suffix = uuid.uuid4().hex[:8]
        self.volume = f"{VOLUME}-{self.suffix}"
        self.containers: list[str] = []
        self.health_port = free_port()
        self.app_port = free_port()

    def create_volume(self) -> None:
        options = COMPOSE["volumes"][VOLUME]["driver_opts"]
        args = ["volume", "create", "--driver", COMPOSE["volumes"][VOLUME]["driver"]]
        for key, value in options.items():
            args += ["--opt", f"{key}={value}"]
        self.env.podman(*args, self.volume)

    def volumes(self, service: dict) -> list[str]:
        args = []
        for volume in service.get("volumes", []):
            source, _, target = volume.partition(":")
            assert source == VOLUME
            args += ["--volume", f"{self.volume}:{target}"]
        for secret in service.get("secrets", []):
            assert COMPOSE["secrets"][secret]["file"] == "./bootstrap-token"
            args += ["--volume", f"{self.bootstrap}:/run/secrets/{secret}:ro"]
        return args

    def environment(self, service: dict, **overrides: str) -> list[str]:
        args = []
        for key, value in {**service.get("environment", {}), **overrides}.items():
            args += ["--env", f"{key}={value}"]
        return args

    def stronghold_args(self, *, detach: bool, command: list[str] | None = None) -> list[str]:
        service = COMPOSE["services"]["stronghold"]
        name = f"stronghold-{self.suffix}-{len(self.containers)}"
        self.containers.append(name)
        command = command or [
            f"127.0.0.1:{self.health_port}" if word == "0.0.0.0:8099" else word for word in service["command"]
        ]
        return [
            "run",
            *(["--detach"] if detach else []),
            "--name",
            name,
            "--network=host",
            "--user",
            service["user"],
            *self.environment(service, STRONGHOLD_PROXY_URL=self.proxy.url),
            *self.volumes(service),
            self.sidecar_image,
            *command,
        ]

    def start_sidecar(self) -> str:
        self.env.podman(*self.stronghold_args(detach=True), timeout=STARTUP)
        return self.containers[-1]

    def run_fetch(self) -> subprocess.CompletedProcess[str]:
        return self.env.podman(*self.stronghold_args(detach=False, command=["fetch"]), check=False, timeout=STARTUP)

    def start_app(self) -> str:
        service = COMPOSE["services"]["app"]
        name = f"app-{self.suffix}"
        self.containers.append(name)
        self.env.podman(
            "run",
            "--detach",
            "--name",
            name,
            "--network=host",
            "--user",
            service["user"],
            *self.environment(service, PORT=str(self.app_port)),
            *self.volumes(service),
            "--entrypoint",
            json.dumps(service["entrypoint"]),
            self.app_image,
            timeout=STARTUP,
        )
        return name

    def healthy(self, container: str) -> bool:
        test = COMPOSE["services"]["stronghold"]["healthcheck"]["test"]
        assert test[0] == "CMD"
        return self.env.podman("exec", container, *test[1:], check=False, timeout=60).returncode == 0

    def app_ready(self) -> tuple[int, object]:
        return http_get(f"http://127.0.0.1:{self.app_port}/")

    def cleanup(self) -> None:
        self.env.rm(*self.containers)
        self.env.podman("volume", "rm", "--force", self.volume, check=False)


@pytest.fixture
def compose(container_env, example_image, sidecar_image, proxy: TestProxy) -> Iterator[Compose]:
    bootstrap = container_env.scratch / f"bootstrap-token-{uuid.uuid4().hex[:8]}"
    bootstrap.write_text(proxy.token)
    bootstrap.chmod(0o444)  # a Compose file secret keeps the host file's mode
    project = Compose(container_env, (sidecar_image, example_image.tag), proxy, bootstrap)
    project.create_volume()
    yield project
    project.cleanup()


def test_sidecar_keeps_files_the_app_reads_after_ready(compose: Compose, container_env, proxy: TestProxy) -> None:
    sidecar = compose.start_sidecar()
    wait_for(lambda: compose.healthy(sidecar), timeout=STARTUP, interval=0.5, what="the compose healthcheck (.ready)")
    assert http_get(f"http://127.0.0.1:{compose.health_port}/healthz") == (200, {"status": "ok"})
    compose.start_app()
    status = wait_for(lambda: compose.app_ready()[0], timeout=STARTUP, interval=0.5, what="the app to answer")
    assert (status, compose.app_ready()[1]) == (200, {"ready": True}), "server.js read both files"
    files = container_env.podman("exec", sidecar, "ls", "-A", "/run/stronghold").stdout.split()
    assert sorted(files) == [".ready", "DATABASE_PASSWORD", "STRIPE_SECRET_KEY"]
    container_env.podman("stop", "--time", "10", sidecar, timeout=STARTUP)
    assert container_env.exit_code(sidecar) == 0
    wait_for(lambda: set(proxy.leases_issued) <= set(proxy.revoked), timeout=10, what="the sidecar's leases revoked")
    left = container_env.podman("exec", compose.containers[-1], "ls", "-A", "/run/stronghold").stdout.split()
    assert left == [], "the sidecar removed its files and .ready from the shared volume"


def test_fetch_in_a_first_container_then_the_app_in_a_second(compose: Compose, container_env) -> None:
    # Podman unmounts a tmpfs volume when its last container stops, which would lose the files
    # between the two: a holder keeps it mounted, as a pod (or Kubernetes' emptyDir) does.
    holder = f"holder-{compose.suffix}"
    compose.containers.append(holder)
    container_env.podman(
        "run",
        "--detach",
        "--name",
        holder,
        "--network=none",
        "--volume",
        f"{compose.volume}:/run/stronghold:ro",
        container_env.base("busybox"),
        "sleep",
        "3600",
    )
    fetch = compose.run_fetch()
    assert fetch.returncode == 0, fetch.stderr[-800:]
    compose.start_app()
    status = wait_for(lambda: compose.app_ready()[0], timeout=STARTUP, interval=0.5, what="the app to answer")
    assert (status, compose.app_ready()[1]) == (200, {"ready": True})
    listing = container_env.podman("exec", holder, "ls", "-A", "/run/stronghold").stdout.split()
    assert sorted(listing) == [".ready", "DATABASE_PASSWORD", "STRIPE_SECRET_KEY"]


def test_sidecar_image_is_the_bundle_on_a_base_without_python(container_env, sidecar_image) -> None:
    """examples/sidecar.Dockerfile copies the Python-free bundle in: no interpreter, no venv, one directory."""
    probe = container_env.run(
        sidecar_image,
        "-c",
        "command -v python3 python; ls -d /usr/bin/python* /usr/lib/python3* /opt/stronghold/bin 2>/dev/null",
        options=["--network=none", "--entrypoint", "sh"],
    )
    assert probe.returncode != 0 and probe.stdout.strip() == "", f"Python in the sidecar image: {probe.stdout}"
    version = container_env.run(sidecar_image, "--version", options=["--network=none"])
    assert version.returncode == 0 and version.stdout.startswith("stronghold-init "), version.stderr
    config = json.loads(container_env.podman("image", "inspect", sidecar_image).stdout)[0]["Config"]
    assert config["User"] == "1000:1000" and config["Entrypoint"] == ["stronghold-init"]
