"""Security round 2 (docs/threat-model.md): each test is named for the
finding it reproduces and runs the real binary where the attack is end to end.

Tests that switch users need root and skip otherwise (CI runs as root).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import PYTHON, ScriptedHandler, TestProxy, base_env, nobody_command, read_line, run, start, tell, wait_for
from conftest import STRONGHOLD as STRONGHOLD_BIN
from injector.devproxy import Answer, make_server, server_url

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
NOBODY_UID = 65534
NOBODY_PREFIX = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]

# Run as nobody (--user 65534): swap the token directory for a symlink into a
# root-only directory, as a hostile app would, then wait for the test.
SWAPPING_CHILD = textwrap.dedent(
    """
    dir=$(dirname "$A_FILE")
    mv "$dir" "$dir-moved" && ln -s "$SECRET_DIR" "$dir" && echo swapped || echo swap-failed
    read line
    """
)


def credential_requests(proxy: TestProxy) -> int:
    return proxy.paths().count("/v1/credentials")


@needs_root
def test_finding1_dir_swapped_for_symlink_cannot_steer_root_writes_or_deletes(
    make_proxy, shm_dir: Path, tmp_path: Path, processes
) -> None:
    """The app (--user 65534) owns its --dir, renames it and leaves a symlink to
    a root-only directory: the next refresh must not write there, and cleanup
    at exit must not delete the root-owned file of the same name there."""
    proxy = make_proxy(ttl=2)
    secret_dir = tmp_path / "root-only"
    secret_dir.mkdir(mode=0o700)
    victim = secret_dir / "B"
    victim.write_text("root's own file")
    victim.chmod(0o600)
    moved = Path(f"{shm_dir}-moved")
    env = base_env(
        proxy,
        A_FILE="stronghold://stripe/live?ttl=2",
        B_FILE="stronghold://postgres/app?ttl=3600",
        SECRET_DIR=str(secret_dir),
    )
    args = ["--user", str(NOBODY_UID), "--dir", str(shm_dir), "--", "sh", "-c", SWAPPING_CHILD]
    process = start(args, env, stdin=subprocess.PIPE)
    processes.append(process)
    try:
        assert read_line(process).strip() == "swapped"
        issued = credential_requests(proxy)
        wait_for(lambda: credential_requests(proxy) >= issued + 2, timeout=60, what="two refreshes after the swap")
        assert not (secret_dir / "A").exists(), "a refresh wrote the token through the symlink"
        assert [p.name for p in secret_dir.iterdir() if p.name.endswith(".tmp")] == []
        tell(process)
        assert process.wait(timeout=30) == 0
        assert victim.read_text() == "root's own file", "cleanup deleted a root-owned file through the symlink"
        assert sorted(p.name for p in secret_dir.iterdir()) == ["B"]
        assert list(moved.iterdir()) == [], "the files in the directory that was checked are removed"
    finally:
        if shm_dir.is_symlink():
            shm_dir.unlink()
        shutil.rmtree(moved, ignore_errors=True)


# As nobody, in a 0777 non-sticky parent: wait for `tokens` to appear, then
# exchange it with root's file `victim` once (renameat2 RENAME_EXCHANGE).
EXCHANGING_ATTACKER = textwrap.dedent(
    """
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    parent = sys.argv[1].encode()
    print("ready", flush=True)
    while libc.renameat2(-100, parent + b"/tokens", -100, parent + b"/victim", 2) != 0:
        pass
    print("swapped", flush=True)
    """
)


@needs_root
def test_finding1_exchange_race_at_creation_cannot_make_root_chown_a_file(proxy: TestProxy, shm_dir: Path) -> None:
    """Someone who can write the parent swaps the new --dir for root's 0600 file
    between mkdir and chown: root must never chown or chmod that file."""
    shm_dir.mkdir()
    shm_dir.chmod(0o777)  # an emptyDir-like root: writable by all, not sticky
    env = base_env(proxy, K_FILE="stronghold://stripe/live")
    for _ in range(12):
        victim = shm_dir / "victim"
        victim.write_text("root's own file")
        victim.chmod(0o600)
        inode = victim.stat().st_ino
        attacker = subprocess.Popen(
            [*NOBODY_PREFIX, os.path.realpath(PYTHON), "-c", EXCHANGING_ATTACKER, str(shm_dir)],  # reachable by nobody
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert attacker.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
            run(["--user", str(NOBODY_UID), "--dir", str(shm_dir / "tokens"), "--", "true"], env)
        finally:
            attacker.kill()
            attacker.wait(timeout=10)
        (found,) = [p for p in shm_dir.iterdir() if p.lstat().st_ino == inode]
        info = found.lstat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600), "root chowned or chmodded the swapped-in file"
        for entry in shm_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def test_also_group_writable_dir_is_refused(proxy: TestProxy, shm_dir: Path) -> None:
    shm_dir.mkdir()
    shm_dir.chmod(0o770)
    result = run(["--dir", str(shm_dir), "--", "true"], base_env(proxy, K_FILE="stronghold://stripe/live"))
    assert result.code == 78 and "writable by its group" in result.stderr
    assert proxy.issued_values == []


@needs_root
def test_issue15_check_and_run_share_one_dir_owner_rule(proxy: TestProxy, shm_dir: Path) -> None:
    """`check --user 65534` accepts the --dir owned by 65534 that `run --user 65534` accepts."""
    shm_dir.mkdir(mode=0o700)
    os.chown(shm_dir, NOBODY_UID, NOBODY_UID)
    env = base_env(proxy, K_FILE="stronghold://stripe/live")
    checked = run(["check", "--user", str(NOBODY_UID), "--dir", str(shm_dir)], env)
    ran = run(["--user", str(NOBODY_UID), "--dir", str(shm_dir), "--", "true"], env)
    assert (checked.code, ran.code) == (0, 0), checked.stderr + ran.stderr
    os.chown(shm_dir, 12345, 12345)
    checked = run(["check", "--user", str(NOBODY_UID), "--dir", str(shm_dir)], env)
    ran = run(["--user", str(NOBODY_UID), "--dir", str(shm_dir), "--", "true"], env)
    assert (checked.code, ran.code) == (78, 78)
    assert "owned by uid 12345" in checked.stderr and "owned by uid 12345" in ran.stderr


# -- finding 2: a static credential with a line break -------------------------


@pytest.mark.parametrize("variable", ["VAULT_TOKEN", "BAO_TOKEN", "STRONGHOLD_VAULT_TOKEN"])
def test_finding2_vault_token_with_trailing_newline_is_78_and_never_printed(variable: str) -> None:
    token = "hvs.TRAILINGNEWLINE0123456789"
    env = base_env(None, STRONGHOLD_VAULT_ADDR="http://127.0.0.1:9", K="vault://secret/data/app#K")
    env[variable] = token + "\n"
    result = run(["--log-level", "debug", "--", "true"], env)
    assert result.code == 78, result.stderr
    assert variable in result.stderr and "newline" in result.stderr
    assert "TRAILINGNEWLINE" not in result.stderr + result.stdout


def test_finding2_bootstrap_token_file_with_a_second_line_is_78(proxy: TestProxy, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(proxy.token + "\nsecond-line-SECRET\n")
    env = base_env(None, STRONGHOLD_PROXY_URL=proxy.url, K="stronghold://stripe/live")
    result = run(["--log-level", "debug", "--bootstrap-token-file", str(token_file), "--", "true"], env)
    assert result.code == 78 and str(token_file) in result.stderr
    assert proxy.token not in result.stderr and "second-line" not in result.stderr
    assert proxy.requests == []


def test_finding2_bootstrap_token_env_with_newline_is_78(proxy: TestProxy) -> None:
    env = base_env(proxy, K="stronghold://stripe/live")
    env["STRONGHOLD_BOOTSTRAP_TOKEN"] = proxy.token + "\r\n"
    result = run(["--log-level", "debug", "--", "true"], env)
    assert result.code == 78 and "STRONGHOLD_BOOTSTRAP_TOKEN" in result.stderr
    assert proxy.token not in result.stderr and proxy.requests == []


def test_finding2_redactor_catches_escaped_forms() -> None:
    import io

    from injector.log import Logger

    stream = io.StringIO()
    logger = Logger(stream)
    secret = 'tok"en\\with\nnewline-é'
    logger.protect(secret)
    logger.error(f"repr {secret!r}", json=json.dumps(secret), raw=secret, data=repr(secret.encode()))
    assert "tok" not in stream.getvalue() and "newline" not in stream.getvalue()


# -- finding 3: the logger never raises, the refresher never dies -------------

# Sets O_NONBLOCK on the stderr it shares with stronghold-init (as Node does)
# and fills the pipe, then waits.
FILLING_CHILD = textwrap.dedent(
    """
    import fcntl, os, sys
    flags = fcntl.fcntl(2, fcntl.F_GETFL)
    fcntl.fcntl(2, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        while True:
            os.write(2, b"x" * 4096)
    except BlockingIOError:
        pass
    print("full", flush=True)
    sys.stdin.readline()
    """
)


def test_finding3_nonblocking_full_stderr_does_not_stop_refreshing(make_proxy, shm_dir: Path, processes) -> None:
    proxy = make_proxy(ttl=2)
    env = base_env(proxy, K_FILE="stronghold://stripe/live?ttl=2")
    args = ["--log-level", "debug", "--dir", str(shm_dir), "--", PYTHON, "-c", FILLING_CHILD]
    process = start(args, env, stdin=subprocess.PIPE)
    processes.append(process)
    assert read_line(process).strip() == "full"
    issued = credential_requests(proxy)
    wait_for(lambda: credential_requests(proxy) >= issued + 3, timeout=60, what="refreshes with stderr full")
    tell(process)
    assert process.wait(timeout=30) == 0


def test_finding3_log_reader_gone_does_not_stop_refreshing(make_proxy, shm_dir: Path, processes) -> None:
    proxy = make_proxy(ttl=2)
    env = base_env(proxy, K_FILE="stronghold://stripe/live?ttl=2")
    child = "import sys; print('ready', flush=True); sys.stdin.readline()"
    process = start(
        ["--log-level", "debug", "--dir", str(shm_dir), "--", PYTHON, "-c", child], env, stdin=subprocess.PIPE
    )
    processes.append(process)
    assert read_line(process).strip() == "ready"
    process.stderr.close()  # type: ignore[union-attr]  # every later log line meets EPIPE
    issued = credential_requests(proxy)
    wait_for(lambda: credential_requests(proxy) >= issued + 3, timeout=60, what="refreshes with no log reader")
    tell(process)
    assert process.wait(timeout=30) == 0


# -- finding 8: redact first, then truncate and format ------------------------


def test_finding8_padded_echo_of_the_bootstrap_token_is_redacted_before_the_cut(proxy: TestProxy) -> None:
    proxy.script("/v1/auth/login", Answer(403, {"error": "x" * 180 + " " + proxy.token}))
    result = run(["--", "true"], base_env(proxy, K="stronghold://stripe/live"))
    assert result.code == 77, result.stderr
    token_body = proxy.token.removeprefix("boot-")
    assert token_body[:8] not in result.stderr


def test_finding8_json_escaping_does_not_hide_a_token_from_the_redactor(proxy: TestProxy) -> None:
    token = 'boot-quote"back\\slash-é-' + os.urandom(6).hex()
    proxy.token = token
    proxy.script("/v1/auth/login", Answer(403, {"error": f"refused {token}"}))
    env = base_env(proxy, K="stronghold://stripe/live")
    result = run(["--log-format", "json", "--", "true"], env)
    assert result.code == 77, result.stderr
    tail = token.split("-")[-1]
    assert tail not in result.stderr and "quote" not in result.stderr


def test_also_newline_in_a_variable_name_cannot_forge_a_log_line(proxy: TestProxy) -> None:
    env = base_env(proxy)
    env["BAD\nstronghold-init: error: FORGED_FILE"] = "stronghold://stripe/live"
    result = run(["--", "true"], env)
    assert not any(line.startswith("stronghold-init: error: FORGED") for line in result.stderr.splitlines())


# -- finding 9: no libc search that runs gcc/ld from PATH ---------------------


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_finding9_no_compiler_from_path_sees_the_environment(proxy: TestProxy, shm_dir: Path, tmp_path: Path) -> None:
    """With `ldconfig -p` failing (musl, stripped images), ctypes.util.find_library
    runs `gcc`/`cc`/`ld` from PATH with our environment.  A fake compiler first
    in PATH must never run."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    seen = tmp_path / "seen"
    for name in ("gcc", "cc", "ld", "objdump"):
        tool = fake_bin / name
        tool.write_text(f"#!/bin/sh\nenv >> {seen}\nexit 1\n")
        tool.chmod(0o755)
    ldconfig = os.path.realpath(shutil.which("ldconfig") or "/sbin/ldconfig")
    env = base_env(proxy, K_FILE="stronghold://stripe/live", VAULT_TOKEN="hvs.SEENBYGCC0123")
    env["PATH"] = f"{fake_bin}:{env['PATH']}"
    script = f'mount --bind /bin/false {ldconfig} && exec "$@"'
    for mode in (["--dir", str(shm_dir), "--", "true"], ["check", "--dir", str(shm_dir)]):
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", STRONGHOLD_BIN, *mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert not seen.exists(), "a compiler from PATH ran with our environment"


# -- finding 11: bad input is 78 before any request; nothing left behind -----

HUGE = 10**400


def revoked_leases(proxy: TestProxy) -> list[str]:
    return [lease for body in proxy.bodies("/v1/leases/revoke") for lease in body["lease_ids"]]  # type: ignore[index]


def test_finding11_huge_credential_ttl_is_capped_and_the_lease_revoked(proxy: TestProxy) -> None:
    answer = {"credentials": [{"name": "K", "value": "v-HUGETTL-SECRET", "ttl": HUGE, "lease_id": "lease-huge"}]}
    proxy.script("/v1/credentials", Answer(200, answer))
    result = run(["--", "sh", "-c", 'test "$K" = v-HUGETTL-SECRET'], base_env(proxy, K="stronghold://stripe/live"))
    assert result.code == 0, result.stderr
    assert "lease-huge" in revoked_leases(proxy)


def test_finding11_huge_session_ttl_is_capped(proxy: TestProxy) -> None:
    import time

    with proxy.lock:
        proxy.sessions["s.fixed-session-HUGE"] = time.monotonic() + 3600
    proxy.script("/v1/auth/login", Answer(200, {"session_token": "s.fixed-session-HUGE", "ttl": HUGE}))
    result = run(["--", "true"], base_env(proxy, K="stronghold://stripe/live"))
    assert result.code == 0, result.stderr
    assert revoked_leases(proxy) == proxy.leases_issued


def test_finding11_lone_surrogate_value_is_never_delivered(proxy: TestProxy, shm_dir: Path) -> None:
    bad = {"credentials": [{"name": "K", "value": "bad\ud800value", "ttl": 60, "lease_id": "lease-bad"}]}
    proxy.script("/v1/credentials", Answer(200, bad))
    env = base_env(proxy, K="stronghold://stripe/live")
    result = run(["--mask-output", "--", "sh", "-c", 'echo "$K"'], env)
    assert result.code == 0, result.stderr
    assert "broken" in result.stderr or "surrogate" in result.stderr
    assert set(proxy.leases_issued) <= set(revoked_leases(proxy))


@pytest.mark.parametrize("user", ["²", "4294967295", "99999999999999999999", "1:99999999999999999999"])
def test_finding11_bad_user_is_78_before_any_request(proxy: TestProxy, shm_dir: Path, user: str) -> None:
    env = base_env(proxy, K_FILE="stronghold://stripe/live")
    result = run(["--user", user, "--no-refresh", "--dir", str(shm_dir), "--", "true"], env)
    assert result.code == 78, result.stderr
    assert "--user" in result.stderr
    assert proxy.requests == []
    assert not shm_dir.exists() or list(shm_dir.iterdir()) == []


def test_finding11_bad_file_group_is_78(proxy: TestProxy, shm_dir: Path) -> None:
    env = base_env(proxy, K_FILE="stronghold://stripe/live")
    result = run(["--file-group", "4294967295", "--dir", str(shm_dir), "--", "true"], env)
    assert result.code == 78 and proxy.requests == []


def test_finding11_overlong_file_name_is_78_before_any_request(proxy: TestProxy, shm_dir: Path) -> None:
    env = base_env(proxy)
    env["A" * 250 + "_FILE"] = "stronghold://stripe/live"
    result = run(["--dir", str(shm_dir), "--", "true"], env)
    assert result.code == 78 and "longer than" in result.stderr
    assert proxy.requests == []


# -- finding 7: a timeout bounds the whole request ---------------------------

DRIP = "drip"  # a scripted answer: a status line, then one header byte every 0.2 s, for ever


class DripHandler(ScriptedHandler):
    def _send(self, answer) -> None:  # type: ignore[override]
        if answer != DRIP:
            super()._send(answer)
            return
        self.close_connection = True
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            while not self.server.stopping.is_set():  # type: ignore[attr-defined]
                self.wfile.write(b"a")
                self.wfile.flush()
                self.server.stopping.wait(0.2)  # type: ignore[attr-defined]  # the attacker's pace, not a sync
        except OSError:
            pass  # the client gave up: what the test wants


@pytest.fixture
def drip_proxy():
    import threading

    proxy = TestProxy()
    server = make_server(proxy, "127.0.0.1:0", handler=DripHandler)
    server.stopping = threading.Event()  # type: ignore[attr-defined]
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    proxy.url = server_url(server)
    yield proxy
    server.stopping.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_finding7_dripping_proxy_cannot_stretch_startup_past_its_timeout(drip_proxy: TestProxy) -> None:
    """One byte every 0.2 s used to keep each read alive: start-up ran 111 s with --startup-timeout 2."""
    import time

    drip_proxy.script("/v1/auth/login", *[DRIP] * 50)
    started = time.monotonic()
    result = run(["--startup-timeout", "2", "--", "true"], base_env(drip_proxy, K="stronghold://stripe/live"))
    elapsed = time.monotonic() - started
    assert result.code == 69, result.stderr
    assert "timed out" in result.stderr
    assert elapsed < 30, f"start-up ran {elapsed:.0f}s with --startup-timeout 2"


def test_finding7_slow_revoke_at_exit_is_cut_and_files_removed(drip_proxy: TestProxy, shm_dir: Path) -> None:
    """A revoke answered one byte at a time took 22 s against the promised 2 s, token files in place meanwhile."""
    import time

    drip_proxy.script("/v1/leases/revoke", DRIP, DRIP)
    env = base_env(drip_proxy, K_FILE="stronghold://stripe/live")
    started = time.monotonic()
    result = run(["--dir", str(shm_dir), "--", "true"], env)
    elapsed = time.monotonic() - started
    assert result.code == 0, result.stderr
    assert "revoking leases failed" in result.stderr
    assert elapsed < 15, f"exit took {elapsed:.0f}s with a dripping revoke"
    assert not shm_dir.exists()


# -- finding 5: the health endpoint cannot be starved -------------------------


def test_finding5_idle_connection_flood_neither_starves_refresh_nor_hangs_healthz(
    make_proxy, shm_dir: Path, processes
) -> None:
    """150 idle connections under `ulimit -n 100`: refreshes went EMFILE and /healthz hung."""
    import resource
    import socket
    import urllib.request

    from test_sidecar import get_health, health_url

    proxy = make_proxy(ttl=2)
    env = base_env(proxy, A_FILE="stronghold://stripe/live?ttl=2")
    process = start(
        ["sidecar", "--dir", str(shm_dir), "--health-listen", "127.0.0.1:0"],
        env,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100)),
    )
    processes.append(process)
    url = health_url(process, [])
    host, port = urllib.request.urlparse(url).netloc.split(":")
    flood = []
    try:
        for _ in range(150):
            flood.append(socket.create_connection((host, int(port)), timeout=10))
        issued = credential_requests(proxy)
        wait_for(lambda: credential_requests(proxy) >= issued + 3, timeout=60, what="refreshes during the flood")

        def healthy() -> bool:
            try:
                return get_health(url)[0] == 200
            except OSError:
                return False  # refused while the cap is full: the probe tries again, as a kubelet does

        wait_for(healthy, timeout=30, interval=0.2, what="/healthz to answer during the flood")
    finally:
        for sock in flood:
            sock.close()
    process.send_signal(__import__("signal").SIGTERM)
    assert process.wait(timeout=30) == 0


# -- the default --dir chain (issues 11 and 14) -------------------------------

SQUAT = Path(f"/dev/shm/stronghold-{NOBODY_UID}")


@pytest.fixture
def nobody_fallback_dir():
    """/dev/shm/stronghold-65534, absent at the start and removed afterwards."""
    if SQUAT.exists():
        pytest.skip(f"{SQUAT} exists already")
    yield SQUAT
    shutil.rmtree(SQUAT, ignore_errors=True)


def _nobody_env(proxy: TestProxy) -> dict[str, str]:
    env = base_env(proxy, K_FILE="stronghold://stripe/live")
    env.pop("XDG_RUNTIME_DIR", None)
    return env


@needs_root
def test_issue14_unusable_default_chain_names_every_candidate_and_the_squatter(
    proxy: TestProxy, nobody_fallback_dir: Path
) -> None:
    nobody_fallback_dir.mkdir(mode=0o700)
    os.chown(nobody_fallback_dir, 12345, 12345)  # another user got there first
    done = subprocess.run(
        [*nobody_command(), "--", "true"], env=_nobody_env(proxy), capture_output=True, text=True
    )
    assert done.returncode == 78, done.stderr
    assert "/run/stronghold" in done.stderr and str(nobody_fallback_dir) in done.stderr
    assert "owned by uid 12345" in done.stderr
    assert proxy.requests == []


@needs_root
def test_issue11_fallback_to_dev_shm_is_logged_with_the_reason(proxy: TestProxy, nobody_fallback_dir: Path) -> None:
    child = 'test "$K_FILE" = ' + f"{nobody_fallback_dir}/K"
    done = subprocess.run(
        [*nobody_command(), "--", "sh", "-c", child],
        env=_nobody_env(proxy),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stderr.splitlines() if "token files go to" in line)
    assert str(nobody_fallback_dir) in line and "/run/stronghold" in line and "info" in line


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_issue11_as_pid_1_never_falls_back_to_dev_shm(proxy: TestProxy, nobody_fallback_dir: Path) -> None:
    """In a container /dev/shm may be the host's (--ipc=host): exit 78 naming the --tmpfs that fixes it."""
    done = subprocess.run(
        ["unshare", "--pid", "--fork", *nobody_command(), "--", "true"],
        env=_nobody_env(proxy),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 78, done.stderr
    assert "--tmpfs /run/stronghold:mode=0700,U" in done.stderr
    assert "--tmpfs /run/stronghold:uid=65534,gid=65534,mode=0700" in done.stderr
    assert not nobody_fallback_dir.exists() and proxy.requests == []


# -- the child's environment, exactly as given --------------------------------


@pytest.mark.parametrize("refs", [{}, {"K": "stronghold://stripe/live"}])
def test_also_no_lc_ctype_from_python_locale_coercion(proxy: TestProxy, refs: dict[str, str]) -> None:
    env = base_env(proxy, **refs)
    del env["LANG"]  # the C locale: Python would add LC_CTYPE=C.UTF-8 to its own environment
    result = run(["--", "env"], env)
    assert result.code == 0, result.stderr
    assert "LC_CTYPE" not in result.stdout
    env["LC_CTYPE"] = "C.UTF-8"  # given by the user: passed on
    assert "LC_CTYPE=C.UTF-8" in run(["--", "env"], env).stdout
