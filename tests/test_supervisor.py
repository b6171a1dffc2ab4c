"""stronghold-init as a dependable parent (SPEC section 6), like tini.

With a reference and no --no-refresh it stays as the command's parent. The
child prints a ready line and every test syncs on lines, never on sleeps.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import termios
import textwrap
import time

import pytest

from conftest import NOBODY, PYTHON, STRONGHOLD, TestProxy, base_env, read_line, run, start, tell, wait_for
from proctools import orphans_child, signal_child

FORWARDED = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH"]


def supervised(proxy: TestProxy, **extra: str) -> dict[str, str]:
    return base_env(proxy, A="stronghold://stripe/live", **extra)


@pytest.mark.parametrize("code", [0, 1, 2, 42, 64, 69, 77, 78, 125, 126, 127, 128, 200, 254, 255])
def test_exit_codes_pass_through(proxy: TestProxy, code: int) -> None:
    result = run(["--", "sh", "-c", f"exit {code}"], supervised(proxy))
    assert result.code == code, result.stderr


@pytest.mark.parametrize("signame", ["SIGKILL", "SIGTERM", "SIGSEGV"])
def test_child_killed_by_signal_gives_128_plus_n(proxy: TestProxy, signame: str) -> None:
    signum = int(getattr(signal, signame))
    result = run(["--", PYTHON, "-c", f"import os; os.kill(os.getpid(), {signum})"], supervised(proxy))
    assert result.code == 128 + signum, result.stderr


@pytest.mark.parametrize("signame", FORWARDED)
def test_each_signal_reaches_the_child(proxy: TestProxy, processes, signame: str) -> None:
    process = start(["--", *signal_child("--pause", "--exit-on", signame)], supervised(proxy))  # exits on it
    processes.append(process)
    assert read_line(process).startswith("ready")
    os.kill(process.pid, getattr(signal, signame))
    assert read_line(process).strip() == f"got {int(getattr(signal, signame))}"
    assert process.wait(timeout=20) == 0


def test_several_signals_in_order(proxy: TestProxy, processes) -> None:
    process = start(["--", *signal_child("--pause", "--exit-on", "SIGTERM")], supervised(proxy))
    processes.append(process)
    assert read_line(process).startswith("ready")
    for signum in (signal.SIGHUP, signal.SIGUSR1, signal.SIGTERM):
        os.kill(process.pid, signum)
        assert read_line(process).strip() == f"got {int(signum)}"
    assert process.wait(timeout=20) == 0


def test_supervisor_stays_parent_and_child_has_clean_signal_state(proxy: TestProxy, processes) -> None:
    probe = "grep -E '^(SigBlk|SigIgn)' /proc/self/status; echo \"PPid:\t$PPID\""  # the shell's parent
    process = start(["--", "sh", "-c", probe], supervised(proxy))
    processes.append(process)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    fields = dict(line.split(":\t") for line in out.splitlines() if ":\t" in line)
    assert int(fields["PPid"]) == process.pid, "the command is stronghold-init's child: it was not exec'd over"
    assert fields["SigBlk"] == "0000000000000000"
    assert fields["SigIgn"] == "0000000000000000"


def test_exec_mode_child_has_clean_signal_state(proxy: TestProxy) -> None:
    result = run(["--no-refresh", "--", "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"], supervised(proxy))
    assert result.code == 0, result.stderr
    assert result.stdout.split() == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_supervisor_is_not_dumpable(proxy: TestProxy, processes) -> None:
    """Run as nobody: its /proc files turn root-owned, so a same-user child cannot read its environ."""
    reader = (
        "if cat /proc/$PPID/environ > /dev/null 2>&1; then echo read; "
        "else echo denied $(stat -c %u /proc/$PPID/environ); fi; read line"
    )
    process = start(["--", "sh", "-c", reader], supervised(proxy), prefix=NOBODY, stdin=subprocess.PIPE)
    processes.append(process)
    assert read_line(process).strip() == "denied 0"
    assert os.stat(f"/proc/{process.pid}/environ").st_uid == 0
    tell(process)
    assert process.wait(timeout=20) == 0


def take_terminal() -> None:
    """preexec_fn, in the child's new session: make its stdin (a pty) the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_ctrl_c_on_a_terminal_reaches_the_child_once(proxy: TestProxy, processes) -> None:
    """The kernel sends ^C to the whole foreground group; forwarding it too would double it."""
    counter = textwrap.dedent(
        """
        import os, signal, sys
        say = lambda *parts: os.write(1, (" ".join(map(str, parts)) + "\\n").encode())  # reentrant-safe, unlike print
        count = 0
        def on_int(signum, frame):
            global count
            count += 1
            say("INT", count)
        def on_usr1(signum, frame):
            say("total", count)
            sys.exit(0)
        signal.signal(signal.SIGINT, on_int)
        signal.signal(signal.SIGUSR1, on_usr1)
        say("ready")
        while True:
            signal.pause()
        """
    )
    master, slave = os.openpty()

    process = start(["--", PYTHON, "-c", counter], supervised(proxy), stdin=slave, preexec_fn=take_terminal)
    processes.append(process)
    os.close(slave)
    try:
        assert read_line(process).strip() == "ready"
        os.write(master, b"\x03")  # ^C
        assert read_line(process).strip() == "INT 1"
        # Standard signals are taken lowest number first, so a doubled SIGINT
        # would be forwarded before this SIGUSR1.
        os.kill(process.pid, signal.SIGUSR1)
        assert read_line(process).strip() == "total 1"
        assert process.wait(timeout=20) == 0
    finally:
        os.close(master)


def test_kill_to_supervisor_still_forwards_sigint_with_a_terminal(proxy: TestProxy, processes) -> None:
    """Only terminal-generated signals are skipped; `kill -INT <pid>` is forwarded."""
    master, slave = os.openpty()
    process = start(
        ["--", *signal_child("--pause", "--exit-on", "SIGINT")],
        supervised(proxy),
        stdin=slave,
        preexec_fn=take_terminal,
    )
    processes.append(process)
    os.close(slave)
    try:
        assert read_line(process).startswith("ready")
        os.kill(process.pid, signal.SIGINT)
        assert read_line(process).strip() == f"got {int(signal.SIGINT)}"
        assert process.wait(timeout=20) == 0
    finally:
        os.close(master)


def proc_state(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/status") as handle:
            fields = dict(line.rstrip("\n").split(":\t", 1) for line in handle if ":\t" in line)
    except OSError:  # gone: ENOENT, or ESRCH when it vanished mid-read
        return None
    return fields["State"][0], int(fields["PPid"])


def test_orphans_are_reaped_as_subreaper(proxy: TestProxy, processes) -> None:
    process = start(["--", *orphans_child("--hold")], supervised(proxy), stdin=subprocess.PIPE)
    processes.append(process)
    orphan = int(read_line(process).split()[1])
    state = proc_state(orphan)
    assert state is not None and state[1] == process.pid, "the orphan is re-parented to stronghold-init"
    tell(process)
    assert read_line(process).strip() == "released"
    wait_for(lambda: proc_state(orphan) is None, what="the orphan to be reaped, not left a zombie")
    tell(process)
    assert process.wait(timeout=20) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="unshare --pid needs root")
def test_zombies_are_reaped_as_pid_1(proxy: TestProxy) -> None:
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare --pid is not permitted here")
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", STRONGHOLD, "--", *orphans_child()],
        env=supervised(proxy),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    word, _, ppid = done.stdout.split()
    assert (word, ppid) == ("reaped", "1"), "stronghold-init is PID 1 here and reaped the orphan"


def test_sigterm_during_startup_cleans_up(proxy: TestProxy, shm_dir, processes) -> None:
    """A stop signal while the proxy is still being retried: nothing left, 128+15."""
    from injector.devproxy import Answer

    proxy.script("/v1/credentials", *[Answer(503, {"error": "busy"})] * 1000)
    env = base_env(proxy, A_FILE="stronghold://stripe/live")
    process = start(["--dir", str(shm_dir), "--", "true"], env)
    processes.append(process)
    wait_for(lambda: proxy.paths().count("/v1/credentials") >= 2, what="a retry")
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 10
    assert not shm_dir.exists()
