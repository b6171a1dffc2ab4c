"""Hardening (docs/threat-model.md): the app reaches its tokens and nothing more;
bad input and a hostile file system cannot hurt.

Tests that switch users or mount file systems need root and skip otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import (
    NOBODY,
    STRONGHOLD,
    TestProxy,
    base_env,
    needs_root,
    read_line,
    run,
    start,
    tell,
    wait_for,
    wait_for_log,
)
from injector.devproxy import Answer

# A child (run as `sh`, which any user can execute) that reports who it is,
# whether it can read its parent's environ and its token file, and waits.
IDENTITY_CHILD = textwrap.dedent(
    """
    echo "id $(id -u) $(id -g) $(id -G | tr ' ' ,)"
    echo "home $HOME"
    if cat /proc/$PPID/environ > /dev/null 2>&1; then echo "parent-environ readable"
    else echo "parent-environ denied"; fi
    if [ -n "$K_FILE" ] && cat "$K_FILE" > /dev/null 2>&1; then echo "token readable"; else echo "token unreadable"; fi
    echo "stronghold-vars $(env | grep -c '^STRONGHOLD_')"
    read line
    """
)


def identity_report(process) -> dict[str, str]:
    lines = [read_line(process).strip() for _ in range(5)]
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines}


@needs_root
def test_child_runs_as_nobody_and_cannot_read_the_supervisor(proxy: TestProxy, shm_dir, processes) -> None:
    env = base_env(proxy, K_FILE="stronghold://stripe/live")
    args = ["--user", "nobody", "--dir", str(shm_dir), "--", "sh", "-c", IDENTITY_CHILD]
    process = start(args, env, stdin=subprocess.PIPE)
    processes.append(process)
    report = identity_report(process)
    nobody = __import__("pwd").getpwnam("nobody")
    assert report["id"].split()[:2] == [str(nobody.pw_uid), str(nobody.pw_gid)]
    assert report["home"] == nobody.pw_dir
    assert report["parent-environ"] == "denied"
    assert report["token"] == "readable"
    assert report["stronghold-vars"] == "0"
    info = (shm_dir / "K").stat()
    assert (info.st_uid, info.st_gid, oct(info.st_mode & 0o777)) == (nobody.pw_uid, nobody.pw_gid, "0o400")
    assert shm_dir.stat().st_uid == nobody.pw_uid and oct(shm_dir.stat().st_mode & 0o777) == "0o700"
    tell(process)
    assert process.wait(timeout=20) == 0
    assert not shm_dir.exists()


@needs_root
def test_numeric_user_without_entry_uses_its_number_as_group(proxy: TestProxy) -> None:
    result = run(
        ["--user", "54321", "--", "sh", "-c", 'echo "$(id -u) $(id -g) $(id -G) $HOME"'],
        base_env(proxy, K="stronghold://stripe/live"),
    )
    assert result.code == 0, result.stderr
    assert result.stdout.split() == ["54321", "54321", "54321", "/"]


@needs_root
def test_user_and_group_in_exec_mode(proxy: TestProxy) -> None:
    result = run(
        ["--user", "nobody:daemon", "--no-refresh", "--", "sh", "-c", 'echo "$(id -un) $(id -gn)"'],
        base_env(proxy, K="stronghold://stripe/live"),
    )
    assert result.code == 0, result.stderr
    assert result.stdout.split() == ["nobody", "daemon"]


@pytest.mark.parametrize("spec", ["no-such-user-xyz", "nobody:no-such-group-xyz", ":root"])
def test_unknown_user_is_78_before_any_request(proxy: TestProxy, spec: str) -> None:
    result = run(["--user", spec, "--", "true"], base_env(proxy, K="stronghold://stripe/live"))
    assert result.code == 78, result.stderr
    assert "--user" in result.stderr
    assert proxy.requests == []


def test_no_token_in_any_cmdline(proxy: TestProxy, shm_dir, processes) -> None:
    """While a supervised run is live, no process on the machine has a token in its argv."""
    env = base_env(proxy, A="stronghold://stripe/live", B_FILE="stronghold://postgres/app")
    process = start(["--dir", str(shm_dir), "--", "sh", "-c", "echo ready; read line"], env)
    process.stdin = None
    processes.append(process)
    assert read_line(process).strip() == "ready"
    secrets = [s for s in proxy.secrets_seen() if s]
    assert len(secrets) >= 4
    seen = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        seen += 1
        for secret in secrets:
            assert secret not in cmdline, f"a token is in the argv of pid {entry.name}"
    assert seen > 3
    process.send_signal(signal.SIGTERM)


def test_one_time_bootstrap_token_file_is_removed_and_still_logs_in_again(proxy: TestProxy, tmp_path) -> None:
    token_file = tmp_path / "bootstrap"
    token_file.write_text(proxy.token)
    proxy.script("/v1/credentials", Answer(401, {"error": "session expired"}))
    env = base_env(None, STRONGHOLD_PROXY_URL=proxy.url, STRONGHOLD_BOOTSTRAP_TOKEN_FILE=str(token_file))
    env["K"] = "stronghold://stripe/live"
    result = run(["--remove-bootstrap-token-file", "--", "sh", "-c", 'echo "$K"'], env)
    assert result.code == 0, result.stderr
    assert not token_file.exists()
    assert proxy.paths().count("/v1/auth/login") == 2, "logged in again from memory after the 401"
    assert result.stdout.strip() == proxy.issued_values[-1]


def test_dir_that_is_a_file_is_78(proxy: TestProxy, shm_dir) -> None:
    shm_dir.write_text("I am a file")
    result = run(["--dir", str(shm_dir), "--", "true"], base_env(proxy, K_FILE="stronghold://stripe/live"))
    assert result.code == 78 and "not a directory" in result.stderr
    assert shm_dir.read_text() == "I am a file"


@needs_root
def test_dir_owned_by_another_user_is_78(proxy: TestProxy, shm_dir) -> None:
    shm_dir.mkdir(mode=0o700)
    os.chown(shm_dir, 12345, 12345)
    result = run(["--dir", str(shm_dir), "--", "true"], base_env(proxy, K_FILE="stronghold://stripe/live"))
    assert result.code == 78 and "owned by uid 12345" in result.stderr
    assert list(shm_dir.iterdir()) == []


def test_existing_file_at_token_path_is_replaced_whole(proxy: TestProxy, shm_dir) -> None:
    shm_dir.mkdir(mode=0o700)
    (shm_dir / "K").write_text("stale token from a previous run")
    result = run(
        ["--dir", str(shm_dir), "--no-refresh", "--", "cat", str(shm_dir / "K")],
        base_env(proxy, K_FILE="stronghold://stripe/live"),
    )
    assert result.code == 0, result.stderr
    assert result.stdout == proxy.issued_values[0]


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 64 KiB tmpfs mount (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(mount_point)])
    if done.returncode != 0:
        pytest.skip("mount is not permitted here")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)])


def fill(mount_point: Path, leave: int = 0) -> Path:
    """Fill the file system, leaving about `leave` bytes."""
    filler = mount_point / ".filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)  # unbuffered: ENOSPC shows here, not at close
    except OSError:
        pass
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_full_tmpfs_at_start_is_a_clear_error_and_leaves_nothing(make_proxy, tiny_tmpfs) -> None:
    proxy = make_proxy()
    proxy.secrets["big/secret"] = "x" * 16_000
    fill(tiny_tmpfs, leave=4096)
    marker = tiny_tmpfs.parent / "ran"
    result = run(
        ["--dir", str(tiny_tmpfs), "--", "touch", str(marker)], base_env(proxy, K_FILE="stronghold://big/secret")
    )
    assert result.code == 78, result.stderr
    assert "No space left on device" in result.stderr
    assert not marker.exists()
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == [".filler"], "no token and no temporary file left"


def test_full_tmpfs_during_refresh_keeps_the_old_token_whole(make_proxy, tiny_tmpfs, processes) -> None:
    proxy = make_proxy(ttl=2)
    proxy.secrets["big/secret"] = "y" * 8_000
    env = base_env(proxy, K_FILE="stronghold://big/secret")
    process = start(["sidecar", "--dir", str(tiny_tmpfs)], env)
    processes.append(process)
    wait_for(lambda: (tiny_tmpfs / ".ready").exists(), what=".ready")
    first = (tiny_tmpfs / "K").read_text()
    filler = fill(tiny_tmpfs)
    wait_for_log(process, "No space left on device")
    assert (tiny_tmpfs / "K").read_text() == first, "the old token stays, whole"
    assert not [p for p in tiny_tmpfs.iterdir() if p.name.endswith(".tmp")], "no temporary file left behind"
    filler.unlink()
    wait_for(lambda: (tiny_tmpfs / "K").read_text() != first, timeout=20, what="a rotation once there is room")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
@pytest.mark.parametrize("mode", ["sidecar", "run"])
def test_every_mode_is_non_dumpable(proxy: TestProxy, processes, mode: str) -> None:
    """Run as nobody: its /proc files turn root-owned, so no same-user process reads its environ."""
    directory = f"/dev/shm/stronghold-test-dump-{mode}-{os.getpid()}"
    tail = ["sidecar", "--dir", directory] if mode == "sidecar" else ["--dir", directory, "--", "sh", "-c", "read x"]
    process = start(tail, base_env(proxy, K_FILE="stronghold://stripe/live"), prefix=NOBODY, stdin=subprocess.PIPE)
    processes.append(process)
    try:
        wait_for(lambda: os.path.exists(f"{directory}/K"), what="the token file")
        assert os.stat(f"/proc/{process.pid}/environ").st_uid == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        subprocess.run(["rm", "-rf", directory])


READER = 'if cat "$0" > /dev/null 2>&1; then echo readable; else echo denied; fi'


def read_as(path: Path, *ids: str) -> str:
    """Try to read `path` as another user: `setpriv` with the given uid/gid options."""
    done = subprocess.run(["setpriv", *ids, "--", "sh", "-c", READER, str(path)], capture_output=True, text=True)
    return done.stdout.strip()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_file_group_lets_that_group_read_and_nobody_else(proxy: TestProxy, shm_dir) -> None:
    """The sidecar case: the app runs as another uid that shares a group with the token files."""
    result = run(
        ["fetch", "--dir", str(shm_dir), "--file-group", "4242"], base_env(proxy, K_FILE="stronghold://stripe/live")
    )
    assert result.code == 0, result.stderr
    token = shm_dir / "K"
    info = token.stat()
    assert (info.st_gid, oct(info.st_mode & 0o777)) == (4242, "0o440")
    assert (shm_dir.stat().st_gid, oct(shm_dir.stat().st_mode & 0o777)) == (4242, "0o750")
    in_group = ["--reuid=5000", "--regid=5000", "--groups=4242"]
    outsider = ["--reuid=5001", "--regid=5001", "--clear-groups"]
    assert read_as(token, *in_group) == "readable"
    assert read_as(token, *outsider) == "denied"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_without_file_group_only_the_owner_reads(proxy: TestProxy, shm_dir) -> None:
    result = run(["fetch", "--dir", str(shm_dir), "--user", "5000"], base_env(proxy, K_FILE="stronghold://stripe/live"))
    assert result.code == 0, result.stderr
    assert read_as(shm_dir / "K", "--reuid=5000", "--regid=5000", "--clear-groups") == "readable"
    assert read_as(shm_dir / "K", "--reuid=5001", "--regid=5000", "--groups=5000") == "denied"


def test_unknown_file_group_is_78(proxy: TestProxy, shm_dir) -> None:
    result = run(
        ["fetch", "--dir", str(shm_dir), "--file-group", "no-such-group-xyz"],
        base_env(proxy, K_FILE="stronghold://stripe/live"),
    )
    assert result.code == 78 and "--file-group" in result.stderr
    assert not shm_dir.exists()


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_no_compiler_from_path_sees_the_environment(proxy: TestProxy, shm_dir: Path, tmp_path: Path) -> None:
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
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", STRONGHOLD, *mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert not seen.exists(), "a compiler from PATH ran with our environment"


@pytest.mark.parametrize("user", ["²", "4294967295", "99999999999999999999", "1:99999999999999999999"])
def test_a_bad_user_id_is_78_before_any_request(proxy: TestProxy, shm_dir: Path, user: str) -> None:
    env = base_env(proxy, K_FILE="stronghold://stripe/live")
    result = run(["--user", user, "--no-refresh", "--dir", str(shm_dir), "--", "true"], env)
    assert result.code == 78, result.stderr
    assert "--user" in result.stderr
    assert proxy.requests == []
    assert not shm_dir.exists() or list(shm_dir.iterdir()) == []


def test_a_bad_file_group_id_is_78(proxy: TestProxy, shm_dir: Path) -> None:
    env = base_env(proxy, K_FILE="stronghold://stripe/live")
    result = run(["--file-group", "4294967295", "--dir", str(shm_dir), "--", "true"], env)
    assert result.code == 78 and proxy.requests == []


def test_an_overlong_file_name_is_78_before_any_request(proxy: TestProxy, shm_dir: Path) -> None:
    env = base_env(proxy)
    env["A" * 250 + "_FILE"] = "stronghold://stripe/live"
    result = run(["--dir", str(shm_dir), "--", "true"], env)
    assert result.code == 78 and "longer than" in result.stderr
    assert proxy.requests == []
