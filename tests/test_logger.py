"""The logger on a stderr the app can break (docs/threat-model.md): it never raises.

The app shares stderr with stronghold-init: a Node app sets O_NONBLOCK on it
and fills the pipe, or the log reader goes away (EPIPE).  A full pipe is
waited on briefly, then the line dropped; the refresher keeps refreshing.  A
variable's name with a line break cannot forge a log line.  Real binary, real
pipes.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from conftest import PYTHON, TestProxy, base_env, issues, read_line, run, start, tell, wait_for

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


def test_a_nonblocking_full_stderr_does_not_stop_refreshing(make_proxy, shm_dir: Path, processes) -> None:
    proxy = make_proxy(ttl=2)
    env = base_env(proxy, K_FILE="stronghold://stripe/live?ttl=2")
    args = ["--log-level", "debug", "--dir", str(shm_dir), "--", PYTHON, "-c", FILLING_CHILD]
    process = start(args, env, stdin=subprocess.PIPE)
    processes.append(process)
    assert read_line(process).strip() == "full"
    issued = issues(proxy)
    wait_for(lambda: issues(proxy) >= issued + 3, timeout=60, what="refreshes with stderr full")
    tell(process)
    assert process.wait(timeout=30) == 0


def test_the_log_reader_gone_does_not_stop_refreshing(make_proxy, shm_dir: Path, processes) -> None:
    proxy = make_proxy(ttl=2)
    env = base_env(proxy, K_FILE="stronghold://stripe/live?ttl=2")
    child = "import sys; print('ready', flush=True); sys.stdin.readline()"
    process = start(
        ["--log-level", "debug", "--dir", str(shm_dir), "--", PYTHON, "-c", child], env, stdin=subprocess.PIPE
    )
    processes.append(process)
    assert read_line(process).strip() == "ready"
    process.stderr.close()  # type: ignore[union-attr]  # every later log line meets EPIPE
    issued = issues(proxy)
    wait_for(lambda: issues(proxy) >= issued + 3, timeout=60, what="refreshes with no log reader")
    tell(process)
    assert process.wait(timeout=30) == 0


def test_a_newline_in_a_variable_name_cannot_forge_a_log_line(proxy: TestProxy) -> None:
    env = base_env(proxy)
    env["BAD\nstronghold-init: error: FORGED_FILE"] = "stronghold://stripe/live"
    result = run(["--", "true"], env)
    assert not any(line.startswith("stronghold-init: error: FORGED") for line in result.stderr.splitlines())
