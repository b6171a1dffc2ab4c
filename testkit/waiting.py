"""Waiting on the processes and servers a test starts: every wait has a deadline, none is a sleep.

`wait_for` is the one polling helper (for states no event announces: a
process gone from /proc, a server answering); everything a process says is
read line by line with a deadline instead.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable


def tell(process: subprocess.Popen[str], line: str = "") -> None:
    """Write one line to the process's stdin (the test children wait on `read`)."""
    process.stdin.write(line + "\n")  # type: ignore[union-attr]
    process.stdin.flush()  # type: ignore[union-attr]


def wait_for(
    condition: Callable[[], object], timeout: float = 20.0, interval: float = 0.02, what: str = "condition"
) -> object:
    """Poll `condition` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def read_line(process: subprocess.Popen[str], timeout: float = 20.0, stream: str = "stdout") -> str:
    """One line of the process's stdout (or stderr), with a deadline (no fixed sleeps)."""
    result: list[str] = []
    pipe = getattr(process, stream)
    reader = threading.Thread(target=lambda: result.append(pipe.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result:
        raise AssertionError("timed out waiting for a line from the process")
    return result[0]


def wait_for_log(process: subprocess.Popen[str], fragment: str, timeout: float = 20.0) -> str:
    """Read stderr lines until one contains `fragment`; fail at the deadline or at EOF."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for a log line with {fragment!r}")
        line = read_line(process, left, stream="stderr")
        if fragment in line:
            return line
        if not line:
            raise AssertionError(f"stderr closed before a line with {fragment!r}")


def wait_for_line(process: subprocess.Popen[str], expected: str, timeout: float = 60) -> None:
    """Read stdout lines until `expected` (a restart in between may print an intermediate state)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        line = read_line(process, timeout=left)
        assert line, f"stdout ended before {expected!r}"
        if line.strip() == expected:
            return
    raise AssertionError(f"timed out waiting for {expected!r}")
