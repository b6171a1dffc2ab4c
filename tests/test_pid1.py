"""Issue 11's process findings, on the host through the real binary.

- SPEC section 6 (changed): as PID 1, stronghold-init always stays as the
  command's parent, as tini does, even with no reference or --no-refresh
  (forwarding, reaping, exit status; nothing refreshed when nothing is to be).
  Not PID 1: unchanged (exec), see test_exec_mode.py.
- A pause longer than the ttl (SIGSTOP/SIGCONT, `podman pause`) is not a
  failed refresh: what is due is refreshed first, then expiry is judged, so
  --on-expiry exit does not stop the command when that refresh succeeds.
"""

from __future__ import annotations

import os
import signal
import time

from conftest import base_env, read_line, wait_for
from proctools import Ready, launch, orphans_child, proc_state, signal_child, supervisor_pid


def test_pid1_without_references_stays_the_parent_and_reaps(processes) -> None:
    process = launch(["--", *orphans_child()], base_env(PLAIN="x"), processes, as_pid1=True)
    word, pid, ppid = read_line(process, timeout=40).split()
    assert word == "reaped"
    assert int(ppid) == 1 and int(pid) != 1, "the command is PID 1's child, not PID 1 itself"
    assert process.wait(timeout=30) == 0


def test_pid1_without_references_ends_a_shell_that_has_no_sigterm_handler(processes) -> None:
    """`podman stop` on `sh -c ...`: as PID 1 the shell would ignore SIGTERM; as PID 1's child it dies of it."""
    process = launch(["--", "sh", "-c", "echo ready; read line"], base_env(), processes, as_pid1=True)
    assert read_line(process).strip() == "ready"
    os.kill(supervisor_pid(process, True), signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM


def test_pid1_with_no_refresh_stays_the_parent_without_refreshing(make_proxy, shm_dir, processes) -> None:
    proxy = make_proxy(ttl=2)
    env = base_env(proxy, A="stronghold://stripe/live", B_FILE="stronghold://postgres/app")
    show = 'echo "$A" "$(cat "$B_FILE")" $$ $PPID; read line'
    process = launch(["--no-refresh", "--dir", str(shm_dir), "--", "sh", "-c", show], env, processes, as_pid1=True)
    token, file_token, pid, ppid = read_line(process).split()
    assert [token, file_token] == proxy.issued_values
    assert int(ppid) == 1 and int(pid) != 1
    # No refresher thread was started: stronghold-init is one thread, waiting for signals.
    supervisor = supervisor_pid(process, True)
    assert os.listdir(f"/proc/{supervisor}/task") == [str(supervisor)], "no refresher thread with --no-refresh"
    process.stdin.write("done\n")
    process.stdin.flush()
    assert process.wait(timeout=30) == 0
    assert proxy.paths().count("/v1/credentials") == 1, "nothing refreshed with --no-refresh"
    assert not shm_dir.exists(), "files removed when the command exits"


def test_a_pause_longer_than_the_ttl_refreshes_first_and_does_not_stop_the_command(make_proxy, processes) -> None:
    """SIGSTOP stronghold-init until its token has expired, then SIGCONT: the refresh on waking wins."""
    ttl = 3
    proxy = make_proxy(ttl=ttl)
    env = base_env(proxy, A_FILE="stronghold://stripe/live")
    args = ["--on-expiry", "exit", "--on-rotate", "signal:SIGUSR1", "--", *signal_child("--exit-on", "TERM")]
    process = launch(args, env, processes)
    Ready(read_line(process))
    os.kill(process.pid, signal.SIGSTOP)
    wait_for(lambda: proc_state(process.pid) == "T", what="stronghold-init to stop")
    expires = max(proxy.issued_at.values()) + ttl  # the token in place now, whichever issue it was
    issues_before = proxy.paths().count("/v1/credentials")
    wait_for(lambda: time.monotonic() > expires + 0.5, timeout=60, what="the token in place to expire")
    os.kill(process.pid, signal.SIGCONT)
    lines = []
    while f"got {int(signal.SIGUSR1)}" not in lines:  # the rotation after the refresh on waking
        lines.append(read_line(process, timeout=30).strip())
        assert lines[-1] in (f"got {int(signal.SIGCONT)}", f"got {int(signal.SIGUSR1)}"), lines
    assert proxy.paths().count("/v1/credentials") > issues_before
    os.kill(process.pid, signal.SIGTERM)
    assert read_line(process).strip() == f"got {int(signal.SIGTERM)}"
    assert process.wait(timeout=30) == 0, "the command's own code, not 69"
    assert "expired" not in process.stderr.read()
