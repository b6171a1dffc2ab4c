"""PID 1 edge cases found by the first run in a real container (issue 11).

- With no reference (or --no-refresh), stronghold-init as PID 1 stays the
  parent, like tini: orphans are reaped and `podman stop` ends a shell app
  that installs no SIGTERM handler at once (an app exec'd as PID 1 ignores
  SIGTERM, so podman would wait for the timeout and SIGKILL: 137).
- A `podman pause` longer than the ttl is not a failed refresh: with
  --on-expiry exit the app keeps running once the container is unpaused.
- As PID 1, token files never fall back to /dev/shm: an unusable
  /run/stronghold is exit 78 naming the --tmpfs line that fixes it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from conftest import TestProxy, wait_for
from container_app import APP_UID, STARTUP

pytestmark = pytest.mark.container

NO_REFERENCES = {"STRIPE_SECRET_KEY": "", "DATABASE_PASSWORD_FILE": ""}
# A shell app: it leaves an orphan behind (the subshell exits, its sleep is re-parented to
# PID 1), reports it, then waits without any SIGTERM handler.
SHELL_APP = (
    "(sleep 2 </dev/null >/dev/null 2>&1 & echo $! > /tmp/orphan); "
    'echo "{\\"event\\":\\"orphans\\",\\"pids\\":[$(cat /tmp/orphan)]}"; '
    "while :; do sleep 1; done"
)


@pytest.mark.parametrize(
    ("entrypoint", "env"),
    [
        (["stronghold-init", "--"], NO_REFERENCES),
        (["stronghold-init", "--no-refresh", "--"], {}),
    ],
    ids=["no-reference", "no-refresh"],
)
def test_pid1_stays_parent_reaps_orphans_and_stop_ends_a_shell_app(launch_app, container_env, entrypoint, env) -> None:
    app = launch_app(env=env, entrypoint=entrypoint, command=("sh", "-c", SHELL_APP))
    orphan = app.event("orphans")["pids"][0]
    pid1 = app.exec("cat", "/proc/1/cmdline").stdout.split("\0")
    is_supervised = any(word.endswith("stronghold-init") for word in pid1[:2])  # venv: python + script; bundle: itself
    assert is_supervised, f"PID 1 is {pid1}: stronghold-init exec'd the app"

    def reaped() -> bool:
        return app.exec("test", "-e", f"/proc/{orphan}").returncode != 0

    wait_for(reaped, timeout=60, interval=0.5, what="the orphan to exit and be reaped (no zombie)")
    container_env.podman("stop", "--time", "10", app.name, timeout=STARTUP)
    code, _, err = app.finish()
    assert code == 143, f"the shell died of the forwarded SIGTERM (137 = SIGKILL after the timeout): {err[-500:]}"


@pytest.mark.slow
def test_pause_longer_than_ttl_is_not_a_failed_refresh(launch_app, container_env, proxy: TestProxy) -> None:
    app = launch_app(
        env={"STRIPE_SECRET_KEY": "", "DATABASE_PASSWORD_FILE": "stronghold://postgres/app?ttl=4s"},
        entrypoint=["stronghold-init", "--on-expiry", "exit", "--"],
    )
    ready = app.event("ready")
    container_env.podman("pause", app.name)
    paused_at = time.monotonic()
    issued_before = len(proxy.issued_values)
    # The stimulus is the length of the pause itself: twice the ttl, as in the report.
    wait_for(lambda: time.monotonic() - paused_at >= 8, timeout=30, interval=0.5, what="8 s of pause")
    container_env.podman("unpause", app.name)
    wait_for(lambda: len(proxy.issued_values) > issued_before, timeout=30, what="a refresh after the pause")
    running = app.process.poll() is None
    alive = app.exec("sh", "-c", f"test -d /proc/{ready['pid']} && echo alive").stdout.strip() == "alive"
    container_env.podman("stop", "--time", "10", app.name, timeout=STARTUP)
    code, _, err = app.finish()
    assert running and alive, f"the app was stopped after the pause (exit {code}): {err[-800:]}"
    assert code != 69, f"--on-expiry exit fired although the refresh succeeded: {err[-800:]}"
    assert "expired without a successful refresh" not in err


@pytest.mark.parametrize(
    "dir_options", [("--unsetenv", "STRONGHOLD_DIR"), ()], ids=["default-dir", "STRONGHOLD_DIR-from-the-image"]
)
def test_no_silent_fallback_to_dev_shm_as_pid1(launch_app, dir_options) -> None:
    # No --tmpfs: /run/stronghold is on the image's overlay (or absent). With --ipc=host the
    # container's /dev/shm is the host's, where a token file would outlive the container.
    host_fallback = Path(f"/dev/shm/stronghold-{APP_UID}")
    existed = host_fallback.exists()
    # The app reports and exits at once, so a run that wrongly starts it ends quickly too.
    quick_app = ("node", "-e", 'console.log(JSON.stringify({event: "ready"}))')
    try:
        app = launch_app(options=("--ipc=host", *dir_options), no_tmpfs=True, command=quick_app)
        code, out, err = app.finish()
        leaked = not existed and host_fallback.exists()
    finally:
        if not existed:
            shutil.rmtree(host_fallback, ignore_errors=True)  # what a fallback left on the host
    assert not leaked, "token files went to the host's /dev/shm"
    assert code == 78, err[-800:]
    assert '"event"' not in out, "the app never ran"
    assert "--tmpfs /run/stronghold" in err, f"the message names the line that fixes it: {err[-800:]}"
