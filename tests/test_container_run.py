"""The example image runs under podman with stronghold-init as PID 1.

Each test starts the built example image (one per session) the way docs/containers.md
says: --network=host to reach the test proxy on 127.0.0.1 (port 0), a tmpfs
for /run/stronghold (`mode=0700,U`), the bootstrap token bind-mounted
read-only, the image's non-root USER. The app is a probe (testkit/container_probe.js
mounted read-only) that reports hashes of what it got, never the values.
Where a test must see the token directory after the container is gone, the
directory is a host tmpfs (/dev/shm) bind-mounted in its place.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from conftest import TestProxy, wait_for
from container_app import APP_UID, STARTUP, digest
from testkit.servers import free_port

pytestmark = pytest.mark.container


def issued_digests(proxy: TestProxy) -> set[str]:
    return {digest(value) for value in proxy.issued_values}


def test_env_and_file_delivery_app_is_child_of_pid1(launch_app, proxy: TestProxy) -> None:
    app = launch_app()
    ready = app.event("ready")
    assert ready["ppid"] == 1, "the app is the child of PID 1"
    # The bundle's executable is argv[0] (a venv install would show its python first).
    assert any(word.endswith("stronghold-init") for word in ready["pid1"].split()[:2]), ready["pid1"]
    assert ready["uid"] == APP_UID, "the image's non-root USER"
    assert ready["env"]["STRIPE_SECRET_KEY"] in issued_digests(proxy)
    assert ready["env"]["DATABASE_PASSWORD_FILE"] == "/run/stronghold/DATABASE_PASSWORD"
    assert ready["files"]["DATABASE_PASSWORD_FILE"]["sha256"] in issued_digests(proxy)
    assert ready["files"]["DATABASE_PASSWORD_FILE"]["mode"] == "400"
    assert not [name for name in ready["env_names"] if name.startswith("STRONGHOLD_")]
    listing = app.exec("sh", "-c", "stat -c '%a %u' /run/stronghold; grep ' /run/stronghold ' /proc/mounts")
    mode_owner, mount = listing.stdout.strip().splitlines()
    assert mode_owner == f"700 {APP_UID}"
    assert mount.split()[2] == "tmpfs"


def test_stop_delivers_sigterm_and_the_container_exits_with_the_apps_code(
    launch_app, container_env, proxy: TestProxy, host_token_dir: Path
) -> None:
    app = launch_app(env={"PROBE_EXIT_CODE": "42"}, token_dir=host_token_dir)
    app.event("ready")
    assert (host_token_dir / "DATABASE_PASSWORD").exists()
    stop = container_env.podman("stop", "--time", "5", app.name, timeout=STARTUP)
    assert stop.returncode == 0, stop.stderr
    code, out, _ = app.finish()
    assert '"event":"SIGTERM"' in out, "the app got SIGTERM from podman stop, through PID 1"
    assert code == 42, "podman run returns the app's own exit code (137 would mean SIGKILL after -t 5)"
    wait_for(lambda: set(proxy.leases_issued) <= set(proxy.revoked), timeout=10, what="every lease revoked")
    assert list(host_token_dir.iterdir()) == [], "no token file left on the tmpfs"


def test_hup_is_forwarded(launch_app, container_env) -> None:
    app = launch_app()
    app.event("ready")
    container_env.podman("kill", "--signal", "HUP", app.name)
    app.event("SIGHUP")
    container_env.podman("stop", "--time", "5", app.name, timeout=STARTUP)
    app.finish()


def test_orphans_are_reaped(launch_app, container_env) -> None:
    app = launch_app(env={"PROBE_ORPHANS": "1"})
    orphans = app.event("orphans")["pids"]
    assert orphans

    def parent_of(pid: int) -> str:
        stat = app.exec("cat", f"/proc/{pid}/stat").stdout
        return stat.rsplit(")", 1)[1].split()[1] if stat else "gone"

    assert {parent_of(pid) for pid in orphans} <= {"1", "gone"}, "orphans are re-parented to PID 1"

    def all_gone() -> bool:
        states = app.exec("sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null").stdout
        return not any(line.split()[0] in {str(pid) for pid in orphans} for line in states.splitlines())

    wait_for(all_gone, timeout=60, interval=0.5, what="the orphans to exit and be reaped (no zombie left)")
    container_env.podman("stop", "--time", "5", app.name, timeout=STARTUP)
    app.finish()


@pytest.mark.slow
def test_ttl_rotation_restarts_the_app_inside_the_container(launch_app, container_env, proxy: TestProxy) -> None:
    app = launch_app(env={"STRIPE_SECRET_KEY": "stronghold://stripe/live?ttl=3s"})
    first = app.event("ready")
    second = app.event("ready", timeout=60)
    assert first["env"]["STRIPE_SECRET_KEY"] != second["env"]["STRIPE_SECRET_KEY"]
    assert second["env"]["STRIPE_SECRET_KEY"] in issued_digests(proxy)
    assert second["ppid"] == 1 and second["pid"] != first["pid"], "restarted by PID 1"
    container_env.podman("stop", "--time", "5", app.name, timeout=STARTUP)
    app.finish()


def test_proxy_down_exits_69_after_startup_timeout_app_never_ran(launch_app, host_token_dir: Path) -> None:
    app = launch_app(
        token_dir=host_token_dir,
        proxy_url=f"http://127.0.0.1:{free_port()}",
        entrypoint=["stronghold-init", "--startup-timeout", "3", "--"],
    )
    code, out, err = app.finish()
    assert code == 69, err
    assert '"event"' not in out, "the app never ran"
    assert list(host_token_dir.iterdir()) == []


def test_unreadable_bootstrap_token_exits_78_naming_file_and_fix(launch_app, container_env, proxy: TestProxy) -> None:
    unreadable = container_env.scratch / f"root-only-{uuid.uuid4().hex[:8]}"
    unreadable.write_text(proxy.token)
    unreadable.chmod(0o600)  # root's; the container runs as uid 1000
    app = launch_app(bootstrap=unreadable)
    code, out, err = app.finish()
    assert code == 78, err
    assert '"event"' not in out
    line = next(line for line in err.splitlines() if "/run/secrets/stronghold-bootstrap" in line)
    assert "--user" in line and ("mode" in line or "chmod" in line), line
    assert proxy.token not in err
    assert proxy.paths() == [], "nothing was asked of the proxy"


def test_logs_never_hold_a_value(launch_app, container_env, proxy: TestProxy) -> None:
    app = launch_app(env={"STRONGHOLD_LOG_LEVEL": "debug"})
    app.event("ready")
    container_env.podman("stop", "--time", "5", app.name, timeout=STARTUP)
    _, out, err = app.finish()
    for value in proxy.secrets_seen():
        assert value not in out + err
