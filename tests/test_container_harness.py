"""The container harness itself: a busybox container runs and hands back its exit code.

If these fail, every other container test would fail for a reason that has
nothing to do with stronghold-init: they come first.
"""

from __future__ import annotations

import os

import pytest

from testkit import containers

pytestmark = pytest.mark.container


def test_busybox_container_runs_and_returns_its_exit_code(container_env) -> None:
    image = container_env.base("busybox")
    done = container_env.run(image, "sh", "-c", "echo hello from $(id -u); exit 7", options=["--network=none"])
    assert done.returncode == 7, done.stderr
    assert done.stdout.strip() == "hello from 0"


def test_user_and_tmpfs_options_the_examples_rely_on(container_env) -> None:
    image = container_env.base("busybox")
    done = container_env.run(
        image,
        "sh",
        "-c",
        "id -u; stat -c '%a %u' /run/stronghold; grep ' /run/stronghold ' /proc/mounts",
        options=["--network=none", "--user", "1000:1000", "--tmpfs", "/run/stronghold:mode=0700,U"],
    )
    assert done.returncode == 0, done.stderr
    uid, mode_owner, mount = done.stdout.strip().splitlines()
    assert uid == "1000"
    assert mode_owner == "700 1000"
    assert mount.startswith("tmpfs /run/stronghold tmpfs")


def test_no_container_left_behind_and_test_environment_untouched(container_env) -> None:
    image = container_env.base("busybox")
    container_env.run(image, "true", options=["--network=none"])
    assert container_env.podman("ps", "--all", "--quiet").stdout.strip() == ""
    assert not any(name.startswith("CONTAINERS_") for name in os.environ)


def test_mirror_comes_from_apt_sources() -> None:
    mirror = containers.debian_mirror()
    assert mirror.startswith(("http://", "https://", "file:/")), mirror


def test_python_free_debian_base_has_no_python(container_env) -> None:
    """The base for Python-free images: Debian minbase, user node, and no python3 anywhere."""
    image = container_env.base("debian-nopy")
    done = container_env.run(
        image,
        "sh",
        "-c",
        "id -u node; command -v python3 || ls /usr/bin/python3* /usr/lib/python3* 2>/dev/null || echo no-python",
        options=["--network=none"],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1000", "no-python"]
