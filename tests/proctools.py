"""Helpers for the process and signal tests: the signal child, PID 1 in a fresh namespace, /proc.

stronghold-init runs as PID 1 through `unshare --pid --fork --mount-proc`
(root only): unshare forks, and its child execs stronghold-init, which is then
PID 1 of the new namespace.  Signals are sent to its pid as seen from here.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import termios
from pathlib import Path

import pytest

from conftest import PYTHON, start

CHILDREN = Path(__file__).resolve().parent / "children"
SIGNAL_CHILD = str(CHILDREN / "signals.py")
ORPHANS_CHILD = str(CHILDREN / "orphans.py")
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


def signal_child(*args: str) -> list[str]:
    return [PYTHON, SIGNAL_CHILD, *args]


def orphans_child(*args: str) -> list[str]:
    return [PYTHON, ORPHANS_CHILD, *args]


def require_pid_namespaces() -> None:
    if os.geteuid() != 0:
        pytest.skip("unshare --pid needs root")
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare --pid is not permitted here")


def launch(args: list[str], env: dict[str, str], processes: list, *, as_pid1: bool = False, **kwargs: object):
    """Start the binary (stdin a pipe unless given), as PID 1 of a new PID namespace if asked."""
    if as_pid1:
        require_pid_namespaces()
    kwargs.setdefault("stdin", subprocess.PIPE)
    process = start(args, env, prefix=UNSHARE if as_pid1 else None, **kwargs)  # type: ignore[arg-type]
    processes.append(process)
    return process


def supervisor_pid(process: subprocess.Popen, as_pid1: bool) -> int:
    """stronghold-init's pid from here: the process itself, or unshare's only child."""
    if not as_pid1:
        return process.pid
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


class Ready:
    """The signal child's `ready <pid> <pgid> <ppid> <sid>` line."""

    def __init__(self, line: str) -> None:
        word, *numbers = line.split()
        assert word == "ready", line
        self.pid, self.pgid, self.ppid, self.sid = map(int, numbers)


def proc_state(pid: int) -> str | None:
    """The one-letter state (R, S, T, Z...) or None once the process is gone (reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """Every live process below `root` (zombies included, since they are not reaped yet)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = parent_of(int(entry))
            if parent is not None:
                parents[int(entry)] = parent
    found: list[int] = []
    frontier = [root]
    while frontier:
        current = frontier.pop()
        children = [pid for pid, parent in parents.items() if parent == current]
        found.extend(children)
        frontier.extend(children)
    return found


def take_terminal() -> None:
    """preexec_fn, in the child's new session: make its stdin (a pty) the controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
