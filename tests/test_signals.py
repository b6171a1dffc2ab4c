"""Signals, as tini and dumb-init handle them (issue 16), through the real binary.

Every signal a process can catch, bar SIGCHLD, reaches the command, whether
stronghold-init is PID 1 of a fresh PID namespace or not, and stronghold-init
survives each one (SIGTSTP, SIGTTIN and SIGTTOU included: they never stop it).
On a real pty: a hangup reaches the command, the command owns the terminal
(Ctrl-Z stops the command, not stronghold-init), and kill-sent stop signals
stop the command until a SIGCONT.  Then --rewrite-signal, --remap-exit and
--grace on a stop.  The child reports each signal on a line; tests sync on
lines, never sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from conftest import STRONGHOLD, TestProxy, base_env, read_line, run, wait_for
from proctools import Ready, launch, proc_state, signal_child, supervisor_pid, take_terminal

# 1..64 but for the two no process can catch and the one that is ours (and glibc's internal 32, 33).
MATRIX = sorted(int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD))
MODES = ["parent", "pid1", "pid1-no-references"]


def supervised(proxy: TestProxy) -> dict[str, str]:
    return base_env(proxy, A="stronghold://stripe/live")


def mode_env(mode: str, proxy: TestProxy) -> dict[str, str]:
    return base_env() if mode == "pid1-no-references" else supervised(proxy)


def test_the_matrix_is_every_catchable_signal() -> None:
    assert len(MATRIX) == 59 and MATRIX[0] == 1 and MATRIX[-1] == 64
    assert int(signal.SIGRTMIN) in MATRIX, "the real-time signal that used to be the internal wake-up"


@pytest.mark.parametrize("mode", MODES)
def test_every_catchable_signal_reaches_the_command_and_stronghold_init_survives(
    proxy: TestProxy, processes, mode: str
) -> None:
    as_pid1 = mode.startswith("pid1")
    process = launch(["--", *signal_child()], mode_env(mode, proxy), processes, as_pid1=as_pid1)
    ready = Ready(read_line(process))
    target = supervisor_pid(process, as_pid1)
    assert ready.ppid == (1 if as_pid1 else target), "stronghold-init stays as the command's parent"
    for signum in MATRIX:
        os.kill(target, signum)
        assert read_line(process).strip() == f"got {signum}", f"signal {signum} was not forwarded"
        assert proc_state(target) not in (None, "T", "Z"), f"signal {signum} stopped or ended stronghold-init"
    process.stdin.close()  # the child exits 0 at end of input
    assert process.wait(timeout=30) == 0, process.stderr.read()


def test_an_outside_sigrtmin_is_forwarded_while_rotations_use_the_internal_wake_up(make_proxy, processes) -> None:
    """Rotation requests wake the main thread with SIGRTMIN too; an outside one is not mistaken for one."""
    proxy = make_proxy(ttl=2)
    env = base_env(proxy, A_FILE="stronghold://stripe/live")
    process = launch(["--on-rotate", "signal:SIGUSR1", "--", *signal_child()], env, processes)
    Ready(read_line(process))
    assert read_line(process, timeout=30).strip() == f"got {int(signal.SIGUSR1)}", "a rotation woke the supervisor"
    os.kill(process.pid, signal.SIGRTMIN)
    # Rotations may interleave: skip their SIGUSR1s, but only a few (one per ttl); a lost SIGRTMIN fails here.
    for _ in range(3):
        line = read_line(process, timeout=30).strip()
        if line == f"got {int(signal.SIGRTMIN)}":
            break
        assert line == f"got {int(signal.SIGUSR1)}", line
    else:
        raise AssertionError("the outside SIGRTMIN was swallowed")
    process.stdin.close()
    assert process.wait(timeout=30) == 0


class Terminal:
    """A real pty whose slave is stronghold-init's controlling terminal and stdin."""

    def __init__(self, args: list[str], env: dict[str, str], processes: list) -> None:
        self.master, slave = os.openpty()
        try:
            self.process = launch(args, env, processes, stdin=slave, preexec_fn=take_terminal)
        finally:
            os.close(slave)
        self.ready = Ready(read_line(self.process))

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


@pytest.fixture
def terminals():
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        terminal.close()


def test_the_command_owns_the_terminal_so_ctrl_z_stops_it_and_not_stronghold_init(
    proxy: TestProxy, processes, terminals
) -> None:
    terminal = Terminal(["--", *signal_child("--default", "TSTP", "--exit-on", "TERM")], supervised(proxy), processes)
    terminals.append(terminal)
    process, ready = terminal.process, terminal.ready
    assert ready.pgid == ready.pid != process.pid, "the command leads a process group of its own"
    assert os.tcgetpgrp(terminal.master) == ready.pgid, "and that group is the terminal's foreground (tcsetpgrp)"
    os.write(terminal.master, b"\x1a")  # ^Z
    wait_for(lambda: proc_state(ready.pid) == "T", what="the command to stop")
    assert proc_state(process.pid) not in ("T", None), "stronghold-init is not stopped by the terminal"
    os.kill(process.pid, signal.SIGUSR1)  # still forwarding: queued for the stopped command
    os.kill(process.pid, signal.SIGCONT)
    got = {read_line(process).strip(), read_line(process).strip()}
    assert got == {f"got {int(signal.SIGUSR1)}", f"got {int(signal.SIGCONT)}"}
    assert proc_state(ready.pid) != "T"
    os.kill(process.pid, signal.SIGTERM)
    assert read_line(process).strip() == f"got {int(signal.SIGTERM)}"
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize("name", ["SIGTSTP", "SIGTTIN", "SIGTTOU"])
def test_kill_sent_stop_signals_stop_the_command_not_stronghold_init(
    proxy: TestProxy, processes, terminals, name: str
) -> None:
    """tini's behaviour: forwarded; stronghold-init keeps running, and a later SIGCONT is forwarded too."""
    terminal = Terminal(["--", *signal_child("--default", name, "--exit-on", "TERM")], supervised(proxy), processes)
    terminals.append(terminal)
    process, ready = terminal.process, terminal.ready
    os.kill(process.pid, getattr(signal, name))
    wait_for(lambda: proc_state(ready.pid) == "T", what=f"the command to stop on {name}")
    assert proc_state(process.pid) not in ("T", None)
    os.kill(process.pid, signal.SIGCONT)
    assert read_line(process).strip() == f"got {int(signal.SIGCONT)}"
    wait_for(lambda: proc_state(ready.pid) != "T", what="the command to continue")
    os.kill(process.pid, signal.SIGTERM)
    assert read_line(process).strip() == f"got {int(signal.SIGTERM)}"
    assert process.wait(timeout=30) == 0


def test_a_terminal_hangup_reaches_the_command(proxy: TestProxy, processes, terminals) -> None:
    """`ssh -t` drops: the kernel sends SIGHUP to the session leader (stronghold-init) alone."""
    terminal = Terminal(["--", *signal_child("--exit-on", "HUP")], supervised(proxy), processes)
    terminals.append(terminal)
    process = terminal.process
    assert terminal.ready.sid == process.pid, "stronghold-init leads the terminal's session"
    terminal.close()  # closing the master hangs the terminal up
    assert read_line(process).strip() == f"got {int(signal.SIGHUP)}"
    assert process.wait(timeout=30) == 0


def test_rewrite_signal_changes_what_the_command_gets_and_zero_drops_it(proxy: TestProxy, processes) -> None:
    args = ["--rewrite-signal", "TERM:QUIT", "--rewrite-signal", "SIGUSR1:0", "--rewrite-signal", "RTMIN+3:USR2"]
    process = launch([*args, "--", *signal_child("--exit-on", "QUIT")], supervised(proxy), processes)
    Ready(read_line(process))
    os.kill(process.pid, signal.SIGUSR1)  # dropped
    os.kill(process.pid, signal.SIGRTMIN + 3)
    assert read_line(process).strip() == f"got {int(signal.SIGUSR2)}", "SIGUSR1 dropped, RTMIN+3 became USR2"
    os.kill(process.pid, signal.SIGTERM)
    assert read_line(process).strip() == f"got {int(signal.SIGQUIT)}"
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize(("command", "remap", "expected"), [("exit 3", "3:0", 0), ("kill -TERM $$", "143:0", 0)])
def test_remap_exit(proxy: TestProxy, command: str, remap: str, expected: int) -> None:
    result = run(["--remap-exit", remap, "--remap-exit", "7:8", "--", "sh", "-c", command], supervised(proxy))
    assert result.code == expected, result.stderr
    result = run(["--remap-exit", "7:8", "--", "sh", "-c", "exit 9"], supervised(proxy))
    assert result.code == 9, "other codes pass through"


@pytest.mark.parametrize("as_pid1", [False, True])
def test_grace_applies_to_a_stop(proxy: TestProxy, processes, as_pid1: bool) -> None:
    """A command that ignores SIGTERM gets SIGKILL --grace seconds after stronghold-init got SIGTERM."""
    process = launch(["--grace", "1", "--", *signal_child()], supervised(proxy), processes, as_pid1=as_pid1)
    Ready(read_line(process))
    os.kill(supervisor_pid(process, as_pid1), signal.SIGTERM)
    assert read_line(process).strip() == f"got {int(signal.SIGTERM)}", "the child catches it and carries on"
    assert process.wait(timeout=30) == 128 + signal.SIGKILL
    assert "did not stop within the grace period" in process.stderr.read()


@pytest.mark.parametrize(
    "args",
    [
        ["--rewrite-signal", "TERM"],
        ["--rewrite-signal", "KILL:TERM"],
        ["--rewrite-signal", "TERM:NOPE"],
        ["--remap-exit", "143"],
        ["--remap-exit", "256:0"],
        ["--remap-exit", "a:b"],
    ],
)
def test_bad_signal_options_are_usage_errors(args: list[str]) -> None:
    done = subprocess.run([STRONGHOLD, *args, "--", "true"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 64, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def _fill(pipe_write_end: int) -> None:
    """Fill a pipe to the brim, then make it blocking again: the next write to it blocks."""
    os.set_blocking(pipe_write_end, False)
    try:
        while True:
            os.write(pipe_write_end, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(pipe_write_end, True)


def _catches(pid: int, signum: int) -> bool:
    with open(f"/proc/{pid}/status") as status:
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _blocked_writing_to_a_pipe(pid: int) -> bool:
    try:
        return "pipe_write" in open(f"/proc/{pid}/wchan").read()
    except OSError:
        return False


def test_a_stop_signal_while_a_log_line_blocks_on_a_full_stderr_is_not_lost(tmp_path) -> None:
    """The SIGTERM raised inside the logger's write must unwind start-up: the command never starts, 143."""
    marker = tmp_path / "started"
    read_end, write_end = os.pipe()
    _fill(write_end)
    process = subprocess.Popen(
        [STRONGHOLD, "--log-level", "debug", "--", "touch", str(marker)],
        env=base_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=write_end,
        start_new_session=True,
    )
    os.close(write_end)
    try:
        # Our handler is installed and the first log line is stuck in write(2) on the full pipe.
        wait_for(
            lambda: _catches(process.pid, signal.SIGTERM) and _blocked_writing_to_a_pipe(process.pid),
            timeout=60,
            what="stronghold-init blocked on its stderr with its SIGTERM handler installed",
        )
        os.kill(process.pid, signal.SIGTERM)
        drained = bytearray()
        with os.fdopen(read_end, "rb") as reader:  # let everything after the signal through
            while chunk := reader.read(65536):
                drained += chunk
        assert process.wait(timeout=30) == 128 + signal.SIGTERM, drained[-400:]
        assert not marker.exists(), "the command was started after the stop signal"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("spelling", "number"),
    [("RTMIN+3", int(signal.SIGRTMIN) + 3), ("1", int(signal.SIGHUP)), ("usr2", int(signal.SIGUSR2))],
)
def test_on_rotate_takes_every_spelling_rewrite_signal_takes(make_proxy, processes, spelling: str, number: int) -> None:
    """One signal parser: `--on-rotate signal:RTMIN+3` and `signal:1` work as `--rewrite-signal RTMIN+3:TERM` does."""
    proxy = make_proxy(ttl=2)
    env = base_env(proxy, A_FILE="stronghold://stripe/live")
    process = launch(["--on-rotate", f"signal:{spelling}", "--", *signal_child()], env, processes)
    Ready(read_line(process))
    assert read_line(process, timeout=30).strip() == f"got {number}", "a rotation sends the signal as spelled"
    process.stdin.close()
    assert process.wait(timeout=30) == 0


def test_a_rotation_signal_is_logged_by_a_name_that_reads_back() -> None:
    """RTMIN+3 is no member of signal.Signals: the log line still names it, as the flag spells it."""
    from injector.process.signal_names import parse_signal, signal_name
    from injector.settings.actions import parse_on_rotate, parse_rewrite_signal

    assert str(parse_on_rotate("signal:RTMIN+3")) == "signal:SIGRTMIN+3"
    for number in sorted(signal.valid_signals()):
        if number not in (32, 33):  # glibc's own, no name
            assert parse_signal(signal_name(number)) == number
    assert parse_rewrite_signal("RTMIN+3:1") == (int(signal.SIGRTMIN) + 3, int(signal.SIGHUP))
