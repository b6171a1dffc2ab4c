"""The token directory (--dir) against a hostile app or neighbour (docs/threat-model.md).

The app (--user) may own its --dir and swap it for a symlink; someone who can
write the parent may race its creation: root never writes, deletes, chowns or
chmods through either.  A directory its group can write is refused; `check`
and `run` share one owner rule; the default chain (/run/stronghold, then
/dev/shm/stronghold-<uid>) says what it skipped and never falls back to
/dev/shm as PID 1.  Real binary, real users (tests that switch users need
root and skip otherwise; CI runs as root).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import pytest

from conftest import (
    NOBODY,
    PYTHON,
    TestProxy,
    base_env,
    issues,
    needs_root,
    nobody_command,
    read_line,
    run,
    start,
    tell,
    wait_for,
)

NOBODY_UID = 65534

# Run as nobody (--user 65534): swap the token directory for a symlink into a
# root-only directory, as a hostile app would, then wait for the test.
SWAPPING_CHILD = textwrap.dedent(
    """
    dir=$(dirname "$A_FILE")
    mv "$dir" "$dir-moved" && ln -s "$SECRET_DIR" "$dir" && echo swapped || echo swap-failed
    read line
    """
)


@needs_root
def test_a_dir_swapped_for_a_symlink_cannot_steer_root_writes_or_deletes(
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
        issued = issues(proxy)
        wait_for(lambda: issues(proxy) >= issued + 2, timeout=60, what="two refreshes after the swap")
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
def test_an_exchange_race_at_creation_cannot_make_root_chown_a_file(proxy: TestProxy, shm_dir: Path) -> None:
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
            [*NOBODY, os.path.realpath(PYTHON), "-c", EXCHANGING_ATTACKER, str(shm_dir)],  # reachable by nobody
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


def test_a_group_writable_dir_is_refused(proxy: TestProxy, shm_dir: Path) -> None:
    shm_dir.mkdir()
    shm_dir.chmod(0o770)
    result = run(["--dir", str(shm_dir), "--", "true"], base_env(proxy, K_FILE="stronghold://stripe/live"))
    assert result.code == 78 and "writable by its group" in result.stderr
    assert proxy.issued_values == []


@needs_root
def test_check_and_run_share_one_dir_owner_rule(proxy: TestProxy, shm_dir: Path) -> None:
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
def test_an_unusable_default_chain_names_every_candidate_and_the_squatter(
    proxy: TestProxy, nobody_fallback_dir: Path
) -> None:
    nobody_fallback_dir.mkdir(mode=0o700)
    os.chown(nobody_fallback_dir, 12345, 12345)  # another user got there first
    done = subprocess.run([*nobody_command(), "--", "true"], env=_nobody_env(proxy), capture_output=True, text=True)
    assert done.returncode == 78, done.stderr
    assert "/run/stronghold" in done.stderr and str(nobody_fallback_dir) in done.stderr
    assert "owned by uid 12345" in done.stderr
    assert proxy.requests == []


@needs_root
def test_the_fallback_to_dev_shm_is_logged_with_the_reason(proxy: TestProxy, nobody_fallback_dir: Path) -> None:
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
def test_as_pid_1_it_never_falls_back_to_dev_shm(proxy: TestProxy, nobody_fallback_dir: Path) -> None:
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
