"""Whole process trees (issue 16, findings 1 and 5), through the real binary.

The command runs in a process group of its own.  A rotation restart, or a
stop that stronghold-init starts itself (--on-expiry exit), ends that whole
group before going on: no process of the old instance keeps running with the
old token or holding its ports.  --signal-group sends every forwarded signal
to the whole group and, when the command exits, SIGTERM to the rest of it
(dumb-init's setsid mode); without it the rest of the group is left alone.
"""

from __future__ import annotations

import os
import signal

import pytest

from conftest import TestProxy, base_env, read_line, wait_for, wait_for_log
from proctools import Ready, command_name, descendants, launch, proc_state, signal_child, supervisor_pid

TTL = 2


def sleeps_below(pid: int) -> list[int]:
    return [child for child in descendants(pid) if command_name(child) == "sleep"]


def shells_below(pid: int) -> list[int]:
    return [child for child in descendants(pid) if command_name(child) == "sh"]


@pytest.mark.parametrize(
    ("script", "grace"),
    [("sleep 1000 & wait", "10"), ("trap '' TERM; sleep 1000 & wait", "1")],
    ids=["tree-stops-on-sigterm", "tree-ignores-sigterm-so-sigkill"],
)
def test_a_rotation_restart_ends_the_whole_old_tree_first(make_proxy, processes, script: str, grace: str) -> None:
    """Issue 16, finding 1: at ttl 4 s, 12 s left five `sleep 1000` of old instances running."""
    proxy = make_proxy(ttl=TTL)
    env = base_env(proxy, A="stronghold://stripe/live")
    process = launch(["--grace", grace, "--", "sh", "-c", script], env, processes)
    old_sleeps: set[int] = set()
    for restart in range(2):
        shell = wait_for(lambda: shells_below(process.pid), what="the command's shell")[0]  # type: ignore[index]
        sleep = wait_for(lambda: sleeps_below(process.pid), what="its background sleep")[0]  # type: ignore[index]
        assert os.getpgid(sleep) == os.getpgid(shell) == shell, "the command leads a group holding its tree"
        old_sleeps.add(sleep)
        wait_for_log(process, "restarting the command", timeout=30)

        def new_shell(old: int = shell) -> list[int]:
            return [pid for pid in shells_below(process.pid) if pid != old]

        wait_for(new_shell, what=f"restart {restart + 1} to start a new instance")
        # The new instance starts only once the old group is empty: no sleep of it is left, not even a zombie.
        left = [pid for pid in old_sleeps if proc_state(pid) is not None]
        assert not left, f"old instances' processes still there: {left}"
    assert len(sleeps_below(process.pid)) <= 1
    os.kill(process.pid, signal.SIGKILL if grace == "1" else signal.SIGTERM)


def test_on_expiry_exit_ends_the_whole_group(make_proxy, processes) -> None:
    proxy = make_proxy(ttl=TTL)
    env = base_env(proxy, A="stronghold://stripe/live")
    process = launch(["--on-expiry", "exit", "--", "sh", "-c", "sleep 1000 & wait"], env, processes)
    sleep = wait_for(lambda: sleeps_below(process.pid), what="the background sleep")[0]  # type: ignore[index]
    proxy.down = True  # every refresh fails from now on, so the token expires
    assert process.wait(timeout=60) == 69
    assert proc_state(sleep) is None, "the stop ended the whole group, not just the shell"


@pytest.mark.parametrize("as_pid1", [False, True], ids=["parent", "pid1"])
def test_signal_group_forwards_to_the_whole_group(proxy: TestProxy, processes, as_pid1: bool) -> None:
    """`sh -c 'worker & wait'`: without --signal-group the worker never gets SIGTERM."""
    worker = " ".join(signal_child("--pause", "--exit-on", "TERM"))
    env = base_env(proxy, A="stronghold://stripe/live")
    process = launch(["--signal-group", "--", "sh", "-c", f"{worker} & wait"], env, processes, as_pid1=as_pid1)
    ready = Ready(read_line(process))
    os.kill(supervisor_pid(process, as_pid1), signal.SIGWINCH)  # the shell ignores it; the worker reports it
    assert read_line(process).strip() == f"got {int(signal.SIGWINCH)}"
    os.kill(supervisor_pid(process, as_pid1), signal.SIGTERM)
    assert read_line(process).strip() == f"got {int(signal.SIGTERM)}"
    assert process.wait(timeout=30) == 128 + signal.SIGTERM, "the shell's own status"
    if not as_pid1:  # (as PID 1 the pid is the namespace's; the namespace is gone with it)
        assert proc_state(ready.pid) is None


def test_signal_group_sends_sigterm_to_the_rest_of_the_group_when_the_command_exits(
    proxy: TestProxy, processes
) -> None:
    worker = " ".join(signal_child("--pause", "--exit-on", "TERM"))
    env = base_env(proxy, A="stronghold://stripe/live")
    process = launch(["--signal-group", "--", "sh", "-c", f"{worker} & read line; exit 3"], env, processes)
    Ready(read_line(process))
    process.stdin.write("go\n")
    process.stdin.flush()
    assert read_line(process).strip() == f"got {int(signal.SIGTERM)}"
    assert process.wait(timeout=30) == 3


def test_signal_group_reaps_the_rest_of_the_group_before_exiting(proxy: TestProxy, processes) -> None:
    """A worker that ignores SIGTERM outlives the shell: it gets SIGKILL after --grace and is
    reaped before stronghold-init exits (CI once saw it left a zombie of an init that never reaped)."""
    worker = " ".join(signal_child("--pause", "--ignore", "TERM"))
    env = base_env(proxy, A="stronghold://stripe/live")
    process = launch(
        ["--signal-group", "--grace", "1", "--", "sh", "-c", f"{worker} & read line; exit 3"], env, processes
    )
    ready = Ready(read_line(process))
    process.stdin.write("go\n")
    process.stdin.flush()
    wait_for_log(process, "grace period", timeout=60)
    assert process.wait(timeout=60) == 3, "the command's own status"
    assert proc_state(ready.pid) is None, "the worker was killed and reaped, not left behind"


def test_without_signal_group_only_the_command_gets_signals_and_the_rest_is_left_alone(
    proxy: TestProxy, processes
) -> None:
    """tini's default: the signal goes to the command alone; its group is not touched when it exits."""
    worker = " ".join(signal_child("--pause"))
    env = base_env(proxy, A="stronghold://stripe/live")
    process = launch(["--", "sh", "-c", f"{worker} & wait"], env, processes)
    ready = Ready(read_line(process))
    try:
        os.kill(process.pid, signal.SIGTERM)  # the shell dies of it
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
        assert proc_state(ready.pid) not in (None, "Z"), "the worker was left alone"
        os.kill(ready.pid, signal.SIGUSR2)  # the worker still reports on the shared pipe
        assert read_line(process).strip() == f"got {int(signal.SIGUSR2)}", "and got no signal before this one"
    finally:
        os.kill(ready.pid, signal.SIGKILL)
