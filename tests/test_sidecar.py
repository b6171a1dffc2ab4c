"""`sidecar` and `fetch` (SPEC section 6): files only, .ready last, cleanup on stop.

Real processes, a real test proxy, real tmpfs under /dev/shm.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request

import pytest

from conftest import TestProxy, base_env, run, start, wait_for, wait_for_log

REFS = {"A_FILE": "stronghold://stripe/live", "B_FILE": "stronghold://postgres/app"}


def health_url(process, lines: list[str]) -> str:
    """Read stderr until the health endpoint's address is logged."""

    def found() -> str | None:
        line = process.stderr.readline()
        lines.append(line)
        if "health endpoint listening" in line:
            return line.split("url=")[1].strip()
        return None

    return str(wait_for(found, what="the health endpoint"))


def get_health(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_sidecar_writes_files_then_ready_and_cleans_up_on_sigterm(proxy: TestProxy, shm_dir, processes) -> None:
    process = start(["sidecar", "--dir", str(shm_dir)], base_env(proxy, **REFS))
    processes.append(process)
    wait_for(lambda: (shm_dir / ".ready").exists(), what=".ready")
    assert (shm_dir / "A").read_text() in proxy.issued_values
    assert (shm_dir / "B").read_text() in proxy.issued_values
    assert oct((shm_dir / "A").stat().st_mode & 0o777) == "0o400"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert not shm_dir.exists(), "the directory is left as it was before: absent"
    assert proxy.bodies("/v1/leases/revoke") == [{"lease_ids": proxy.leases_issued}]


def test_existing_directory_is_left_in_place_and_emptied(proxy: TestProxy, shm_dir, processes) -> None:
    shm_dir.mkdir(mode=0o700)
    (shm_dir / "unrelated").write_text("keep me")
    process = start(["sidecar", "--dir", str(shm_dir)], base_env(proxy, **REFS))
    processes.append(process)
    wait_for(lambda: (shm_dir / ".ready").exists(), what=".ready")
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
    assert sorted(p.name for p in shm_dir.iterdir()) == ["unrelated"]


def test_ready_appears_only_after_every_file(make_proxy, shm_dir, processes) -> None:
    proxy = make_proxy()
    from injector.devproxy import Answer

    proxy.script("/v1/credentials", Answer(503, {"error": "warming up"}))
    process = start(["sidecar", "--dir", str(shm_dir)], base_env(proxy, **REFS))
    processes.append(process)

    def ready_implies_files() -> bool:
        if (shm_dir / ".ready").exists():
            assert (shm_dir / "A").exists() and (shm_dir / "B").exists(), ".ready before every file"
            return True
        return False

    wait_for(ready_implies_files, what=".ready")
    assert proxy.paths().count("/v1/credentials") == 2, "the first answer (503) wrote nothing and was retried"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_sidecar_rotates_files(make_proxy, shm_dir, processes) -> None:
    proxy = make_proxy(ttl=2)
    process = start(["sidecar", "--dir", str(shm_dir)], base_env(proxy, **REFS))
    processes.append(process)
    wait_for(lambda: (shm_dir / ".ready").exists(), what=".ready")
    first = (shm_dir / "A").read_text()
    wait_for(lambda: (shm_dir / "A").read_text() != first, timeout=20, what="a rotation")
    assert (shm_dir / "A").read_text() in proxy.issued_values[2:], "a token from a later issue"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_healthz_goes_503_past_expiry_and_recovers(make_proxy, shm_dir, processes) -> None:
    proxy = make_proxy(ttl=2)
    env = base_env(proxy, **REFS)
    process = start(["sidecar", "--dir", str(shm_dir), "--health-listen", "127.0.0.1:0"], env)
    processes.append(process)
    lines: list[str] = []
    url = health_url(process, lines)
    assert get_health(url) == (200, {"status": "ok"})
    proxy.down = True
    _, body = wait_for(lambda: (h := get_health(url))[0] == 503 and h, timeout=20, what="503")  # type: ignore[misc]
    assert body == {"status": "expired", "expired": ["A_FILE", "B_FILE"]}
    assert process.poll() is None, "the sidecar keeps running through the outage"
    proxy.down = False
    wait_for(lambda: get_health(url)[0] == 200, timeout=30, what="recovery to 200")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert not shm_dir.exists()
    output = "".join(lines) + process.stderr.read()  # type: ignore[union-attr]
    for secret in proxy.secrets_seen():
        assert secret not in output


def test_sidecar_refuses_env_references(proxy: TestProxy, shm_dir) -> None:
    result = run(
        ["sidecar", "--dir", str(shm_dir)], base_env(proxy, A_FILE="stronghold://stripe/live", KEY="stronghold://b")
    )
    assert result.code == 78
    assert "KEY: sidecar delivers files only" in result.stderr
    assert proxy.requests == []


def test_fetch_writes_files_and_ready_and_exits(proxy: TestProxy, shm_dir) -> None:
    result = run(["fetch", "--dir", str(shm_dir)], base_env(proxy, **REFS))
    assert result.code == 0, result.stderr
    assert sorted(p.name for p in shm_dir.iterdir()) == [".ready", "A", "B"]
    assert (shm_dir / "A").read_text() in proxy.issued_values
    assert "/v1/leases/revoke" not in proxy.paths(), "the tokens are for the app that comes next"


@pytest.mark.parametrize(
    ("extra", "code"),
    [({"KEY": "stronghold://stripe/live"}, 78), ({"A_FILE": "stronghold://no/such"}, 78)],
)
def test_fetch_failures_leave_nothing(proxy: TestProxy, shm_dir, extra, code) -> None:
    result = run(["fetch", "--dir", str(shm_dir)], base_env(proxy, **{**REFS, **extra}))
    assert result.code == code, result.stderr
    assert not shm_dir.exists()


def test_fetch_refused_login_is_77_and_leaves_nothing(proxy: TestProxy, shm_dir) -> None:
    env = base_env(proxy, **REFS)
    env["STRONGHOLD_BOOTSTRAP_TOKEN"] = "not-the-token"
    result = run(["fetch", "--dir", str(shm_dir)], env)
    assert result.code == 77
    assert not shm_dir.exists()
    assert not os.path.exists(shm_dir / ".ready")


def test_health_endpoint_on_ipv6_loopback(proxy: TestProxy, shm_dir, processes) -> None:
    import socket

    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    process = start(["sidecar", "--dir", str(shm_dir), "--health-listen", "[::1]:0"], base_env(proxy, **REFS))
    processes.append(process)
    url = health_url(process, [])
    assert url.startswith("http://[::1]:")
    assert get_health(url) == (200, {"status": "ok"})
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_bad_health_listen_is_78(proxy: TestProxy, shm_dir) -> None:
    result = run(["sidecar", "--dir", str(shm_dir), "--health-listen", "nonsense"], base_env(proxy, **REFS))
    assert result.code == 78 and "--health-listen" in result.stderr
    assert not shm_dir.exists()
    assert proxy.requests == [], "checked before any credential is asked for"


def test_an_outside_sigrtmin_does_not_stop_the_sidecar(proxy: TestProxy, shm_dir, processes) -> None:
    """SIGRTMIN is the internal wake-up; the sidecar took any sender's as "stop", the supervisor checks it."""
    process = start(["sidecar", "--log-level", "debug", "--dir", str(shm_dir)], base_env(proxy, **REFS))
    processes.append(process)
    wait_for_log(process, "sidecar ready")
    process.send_signal(signal.SIGRTMIN)
    wait_for_log(process, "ignoring a SIGRTMIN from another process")  # taken, and not as a stop
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    stopping = [line for line in process.stderr.read().splitlines() if "stopping" in line]
    assert stopping == ["stronghold-init: info: stopping signal=SIGTERM"], stopping
