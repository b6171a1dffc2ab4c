"""Refresh and rotation with real processes and a proxy granting 2-second tokens (SPEC section 5).

Tokens are re-issued at 60-75% of their ttl; a file is replaced atomically;
env tokens restart the command; --on-rotate signal:SIG and none; outages;
--on-expiry exit; revoke at exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import threading
import time

import pytest

from conftest import PYTHON, TestProxy, base_env, issues, read_line, run, start, wait_for, wait_for_log
from injector.devproxy import Answer
from proctools import proc_state

TTL = 2

# Prints its token (env) on start and on SIGHUP, its pid, and exits 0 on SIGTERM.
ENV_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    say = lambda *parts: os.write(1, (" ".join(map(str, parts)) + "\\n").encode())  # reentrant-safe, unlike print
    def show(*_):
        say(os.getpid(), os.environ["A"])
    signal.signal(signal.SIGHUP, show)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    show()
    while True:
        signal.pause()
    """
)

# Prints every signal it gets, with the file's content, and exits 0 on SIGTERM.
FILE_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    say = lambda *parts: os.write(1, (" ".join(map(str, parts)) + "\\n").encode())  # reentrant-safe, unlike print
    def show(signum, _):
        say(signal.Signals(signum).name, open(os.environ["A_FILE"]).read())
        if signum == signal.SIGTERM:
            sys.exit(0)
    for s in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM):
        signal.signal(s, show)
    say("ready", os.getpid())
    while True:
        signal.pause()
    """
)


@pytest.fixture
def short_proxy(make_proxy) -> TestProxy:
    return make_proxy(ttl=TTL)


def file_env(proxy: TestProxy) -> dict[str, str]:
    return base_env(proxy, A_FILE="stronghold://stripe/live")


def test_file_token_rotates_before_expiry_and_is_never_missing_or_partial(short_proxy, shm_dir, processes) -> None:
    process = start(["--dir", str(shm_dir), "--", PYTHON, "-c", FILE_CHILD], file_env(short_proxy))
    processes.append(process)
    assert read_line(process).startswith("ready")
    path = shm_dir / "A"
    seen: list[str] = []
    problems: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                data = path.read_text()
            except FileNotFoundError:
                problems.append("missing")
                continue
            read_at = time.monotonic()
            if data not in short_proxy.issued_at:
                problems.append("partial or unknown content")
            elif read_at - short_proxy.issued_at[data] >= TTL:
                problems.append("an expired token was in place")
            if not seen or seen[-1] != data:
                seen.append(data)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        wait_for(lambda: len(seen) >= 4, timeout=30, what="three rotations")
    finally:
        stop.set()
        thread.join()
    assert problems == []
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert not shm_dir.exists(), "files are removed at exit"


def test_env_token_rotation_restarts_the_command_with_the_new_value(short_proxy, processes) -> None:
    process = start(
        ["--grace", "5", "--", PYTHON, "-c", ENV_CHILD], base_env(short_proxy, A="stronghold://stripe/live")
    )
    processes.append(process)
    first_pid, first_token = read_line(process).split()
    second_pid, second_token = read_line(process, timeout=30).split()
    assert second_pid != first_pid, "a new process, restarted"
    assert second_token != first_token
    assert second_token == short_proxy.issued_values[-1]
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 0, "the exit code is the final child's"


def test_on_rotate_signal_sends_it_to_the_same_child(short_proxy, shm_dir, processes) -> None:
    env = file_env(short_proxy)
    process = start(["--dir", str(shm_dir), "--on-rotate", "signal:SIGUSR2", "--", PYTHON, "-c", FILE_CHILD], env)
    processes.append(process)
    assert read_line(process).startswith("ready")
    first = short_proxy.issued_values[0]
    name, content = read_line(process, timeout=30).split()
    assert name == "SIGUSR2"
    assert content != first and content in short_proxy.issued_values, "the file was replaced before the signal"
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_on_rotate_none_leaves_the_child_alone(short_proxy, shm_dir, processes) -> None:
    process = start(["--dir", str(shm_dir), "--", PYTHON, "-c", FILE_CHILD], file_env(short_proxy))
    processes.append(process)
    assert read_line(process).startswith("ready")
    wait_for(lambda: issues(short_proxy) >= 3, timeout=30, what="two refreshes")
    os.kill(process.pid, signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    assert [line.split()[0] for line in out.splitlines()] == ["SIGTERM"], "only our SIGTERM reached it"


def test_401_mid_life_logs_in_again(short_proxy, shm_dir, processes) -> None:
    process = start(["--dir", str(shm_dir), "--", PYTHON, "-c", FILE_CHILD], file_env(short_proxy))
    processes.append(process)
    assert read_line(process).startswith("ready")
    short_proxy.script("/v1/credentials", Answer(401, {"error": "session revoked"}))
    wait_for(lambda: issues(short_proxy) >= 3, timeout=30, what="the refresh after a 401")
    assert short_proxy.paths().count("/v1/auth/login") == 2
    wait_for(lambda: (shm_dir / "A").read_text() == short_proxy.issued_values[-1], what="the new token in place")
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_short_outage_is_survived_without_expiry(short_proxy, shm_dir, processes) -> None:
    args = ["--dir", str(shm_dir), "--on-expiry", "exit", "--", PYTHON, "-c", FILE_CHILD]
    process = start(args, file_env(short_proxy))
    processes.append(process)
    assert read_line(process).startswith("ready")
    short_proxy.down = True
    before = len(short_proxy.requests)
    wait_for(lambda: len(short_proxy.requests) >= before + 2, timeout=10, what="a failed refresh and a retry")
    short_proxy.down = False
    wait_for(lambda: len(short_proxy.issued_values) >= 2, timeout=10, what="a successful refresh")
    assert process.poll() is None, "still running"
    os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 0
    assert "expired" not in err


def test_outage_past_expiry_with_on_expiry_exit_stops_with_69(short_proxy, shm_dir, processes) -> None:
    env = file_env(short_proxy)
    process = start(["--dir", str(shm_dir), "--on-expiry", "exit", "--", PYTHON, "-c", FILE_CHILD], env)
    processes.append(process)
    assert read_line(process).startswith("ready")
    short_proxy.down = True
    assert process.wait(timeout=30) == 69
    out = process.stdout.read()  # type: ignore[union-attr]
    assert out.startswith("SIGTERM"), "the command was stopped as on SIGTERM"
    assert "token expired" in process.stderr.read()  # type: ignore[union-attr]
    assert not shm_dir.exists()


def test_outage_past_expiry_with_keep_keeps_running_and_recovers(short_proxy, shm_dir, processes) -> None:
    process = start(["--dir", str(shm_dir), "--", PYTHON, "-c", FILE_CHILD], file_env(short_proxy))
    processes.append(process)
    assert read_line(process).startswith("ready")
    short_proxy.down = True
    expired = wait_for_log(process, "token expired", timeout=60)  # the event, not a guess at the time
    assert "token expired without a successful refresh" in expired
    assert process.poll() is None, "--on-expiry keep: the command keeps running"
    short_proxy.down = False
    wait_for(lambda: len(short_proxy.issued_values) >= 2, timeout=40, what="recovery")
    os.kill(process.pid, signal.SIGTERM)
    process.communicate(timeout=20)
    assert process.returncode == 0


@pytest.mark.slow
def test_retry_after_is_honoured_during_refresh(make_proxy, shm_dir, processes) -> None:
    proxy = make_proxy(ttl=12)  # long enough that a quarter of the time left exceeds Retry-After
    process = start(["--dir", str(shm_dir), "--", PYTHON, "-c", FILE_CHILD], file_env(proxy))
    processes.append(process)
    assert read_line(process).startswith("ready")
    proxy.script("/v1/credentials", Answer(503, {"error": "later"}, {"Retry-After": "1"}))
    wait_for(lambda: issues(proxy) >= 3, timeout=30, what="the retried refresh")
    refused, retried = [r.at for r in proxy.requests if r.path == "/v1/credentials"][1:3]
    assert retried - refused >= 0.7, "at least Retry-After, unless a quarter of the time left is shorter"
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_revoke_once_with_every_live_lease_at_exit(short_proxy, shm_dir, processes) -> None:
    process = start(["--dir", str(shm_dir), "--", PYTHON, "-c", FILE_CHILD], file_env(short_proxy))
    processes.append(process)
    assert read_line(process).startswith("ready")
    wait_for(lambda: len(short_proxy.leases_issued) >= 2, timeout=30, what="a rotation")
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    revokes = short_proxy.bodies("/v1/leases/revoke")
    assert len(revokes) == 1
    revoked = revokes[0]["lease_ids"]
    assert short_proxy.leases_issued[-1] in revoked
    assert short_proxy.leases_issued[-2] in revoked, "the superseded, unexpired lease too"
    assert set(revoked) <= set(short_proxy.leases_issued)
    assert not shm_dir.exists()


# Prints "start <pid> <A> <B>"; on SIGTERM prints "term" and exits 7 only on SIGUSR1.
STUBBORN_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    say = lambda *parts: os.write(1, (" ".join(map(str, parts)) + "\\n").encode())  # reentrant-safe, unlike print
    signal.signal(signal.SIGTERM, lambda *_: say("term"))
    signal.signal(signal.SIGUSR1, lambda *_: sys.exit(7))
    say("start", os.getpid(), os.environ["A"], os.environ["B"])
    while True:
        signal.pause()
    """
)


def test_credentials_rotating_together_cause_one_restart(short_proxy, processes) -> None:
    env = base_env(short_proxy, A="stronghold://stripe/live", B="stronghold://postgres/app")
    child = STUBBORN_CHILD.replace('say("term")', "sys.exit(0)")
    process = start(["--", PYTHON, "-c", child], env)
    processes.append(process)
    starts = [read_line(process).split()]
    wait_for(lambda: issues(short_proxy) >= 3, timeout=30, what="two refreshes")
    starts.append(read_line(process, timeout=30).split())
    starts.append(read_line(process, timeout=30).split())
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert len({s[1] for s in starts}) == 3, "each start is a new process"
    assert all(s[0] == "start" for s in starts)
    # Both tokens change at each restart: they were refreshed in one batch.
    assert starts[0][2] != starts[1][2] and starts[0][3] != starts[1][3]
    restarts_seen = process.stderr.read().count("restarting the command")  # type: ignore[union-attr]
    assert restarts_seen >= 2


def test_sigterm_during_a_restart_ends_it(short_proxy, processes) -> None:
    env = base_env(short_proxy, A="stronghold://stripe/live", B="stronghold://postgres/app")
    process = start(["--grace", "30", "--", PYTHON, "-c", STUBBORN_CHILD], env)
    processes.append(process)
    assert read_line(process).startswith("start")
    assert read_line(process, timeout=30).strip() == "term", "a rotation began a restart"
    os.kill(process.pid, signal.SIGTERM)
    assert read_line(process).strip() == "term", "our SIGTERM was forwarded"
    os.kill(process.pid, signal.SIGUSR1)
    assert process.wait(timeout=20) == 7, "exit with the child's code"
    assert process.stdout.read() == "", "the command was not started again"  # type: ignore[union-attr]


def test_grace_period_ends_with_sigkill(short_proxy, processes) -> None:
    env = base_env(short_proxy, A="stronghold://stripe/live", B="stronghold://postgres/app")
    process = start(["--grace", "0.5", "--", PYTHON, "-c", STUBBORN_CHILD], env)
    processes.append(process)
    first = read_line(process).split()
    assert read_line(process, timeout=30).strip() == "term"
    second = read_line(process, timeout=30).split()
    assert second[0] == "start" and second[1] != first[1], "killed after the grace period, then restarted"
    os.kill(process.pid, signal.SIGUSR1)
    assert process.wait(timeout=20) == 7


def test_a_refresh_in_flight_at_stop_is_waited_for_and_its_lease_revoked(make_proxy, shm_dir, processes) -> None:
    """The proxy stalls the first refresh past the command's exit: stop waits for it (within the
    revoke budget), its lease is revoked with the rest, and nothing is left on tmpfs."""
    proxy = make_proxy(ttl=6)  # the stalled lease must still be live (by our clock) when revoking
    plain = proxy.answer
    in_flight, child_gone = threading.Event(), threading.Event()
    issues_seen: list[str] = []

    def stalling(method: str, path: str, headers: dict[str, str], body: object):
        if path == "/v1/credentials":
            issues_seen.append(path)
            if len(issues_seen) == 2:  # the first refresh
                in_flight.set()
                child_gone.wait(60)
                time.sleep(1.5)  # the fault itself: answer past the old 1 s stop wait, inside the 3 s budget
        return plain(method, path, headers, body)

    proxy.answer = stalling  # type: ignore[method-assign]
    env = base_env(proxy, A_FILE="stronghold://stripe/live")
    argv = ["--dir", str(shm_dir), "--on-rotate", "none", "--", "sh", "-c", "echo $$; exec cat"]
    process = start(argv, env, stdin=subprocess.PIPE)
    processes.append(process)
    child = int(read_line(process))
    assert in_flight.wait(60), "no refresh was asked for"
    os.kill(process.pid, signal.SIGTERM)
    wait_for(lambda: proc_state(child) in (None, "Z"), timeout=60, what="the command to exit")
    child_gone.set()
    assert process.wait(timeout=60) == 128 + signal.SIGTERM, process.stderr.read()
    wait_for(lambda: len(proxy.leases_issued) == 2, timeout=30, what="the stalled refresh to be answered")
    assert set(proxy.leases_issued) <= set(proxy.revoked), "the lease the stalled refresh got is revoked too"
    assert not shm_dir.exists(), "nothing left on tmpfs"


def audit_requests(bao, path: str) -> int:
    import json

    if not bao.audit_log.exists():
        return 0
    lines = bao.audit_log.read_text().splitlines()
    return sum(
        1
        for line in lines
        if json.loads(line).get("type") == "request" and json.loads(line).get("request", {}).get("path") == path
    )


def test_a_token_granted_with_ttl_0_is_not_reissued_in_a_loop(bao) -> None:
    """A root-policy token OpenBao mints has lease_duration 0: that means "never expires" (as for the
    client token), re-read on the static poll; it was ttl=0.0 and re-issued 20,000 times a second."""
    before = audit_requests(bao, "auth/token/renew-accessor") + audit_requests(bao, "auth/token/create")
    env = base_env(
        None, STRONGHOLD_VAULT_ADDR=bao.url, BAO_TOKEN=bao.root_token, APP_TOKEN="vault-token://?policies=root"
    )
    # The command's own second of work is the window in which a loop would show.
    result = run(["--", "sh", "-c", "sleep 1"], env)
    assert result.code == 0, result.stderr
    after = audit_requests(bao, "auth/token/renew-accessor") + audit_requests(bao, "auth/token/create")
    assert after - before == 1, f"{after - before} mints and renewals in one second for a token that never expires"


def test_no_refresh_is_due_sooner_than_the_floor() -> None:
    from injector.refresh.schedule import MIN_REFRESH_INTERVAL, poll_due, refresh_due

    assert refresh_due(100.0, 0.0, lambda: 0.0) >= 100.0 + MIN_REFRESH_INTERVAL
    assert poll_due(100.0, 0.0) >= 100.0 + MIN_REFRESH_INTERVAL, "--vault-poll 0 must not spin either"
    assert refresh_due(100.0, 600.0, lambda: 0.0) == 100.0 + 360.0, "a real ttl is unchanged"
