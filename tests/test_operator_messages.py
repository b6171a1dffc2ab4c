"""What an operator reads (issue 19, found by a new user): the exit line, and failures that say where to look.

- At exit, one info line: how it ended, leases revoked, files removed.
- A refused bootstrap token names the file or variable it came from.
- As PID 1 (a container's entrypoint) an unreachable loopback proxy URL gets the hint that
  127.0.0.1 is the container itself.
- A proxy that is down, hung, not speaking TLS or that lacks a secret: one line naming the URL,
  where the setting came from (variable, flag, env file), and how long it waited.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading

import pytest

from conftest import TestProxy, base_env, free_port, one_error, run
from proctools import UNSHARE, require_pid_namespaces


def test_the_exit_is_one_info_line_with_the_exit_code_leases_revoked_and_files_removed(
    proxy: TestProxy, shm_dir
) -> None:
    env = base_env(proxy, A="stronghold://stripe/live", B_FILE="stronghold://postgres/app")
    result = run(["--dir", str(shm_dir), "--", "sh", "-c", "exit 3"], env)
    assert result.code == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == "stronghold-init: info: exiting exit_code=3 leases_revoked=2 files_removed=1", result.stderr
    assert len(proxy.revoked) == 2


def test_a_refused_bootstrap_token_names_the_file_it_came_from(proxy: TestProxy, tmp_path) -> None:
    token_file = tmp_path / "bootstrap-token"
    token_file.write_text("not-the-right-token-123456\n")
    env = base_env(proxy, A="stronghold://stripe/live", STRONGHOLD_BOOTSTRAP_TOKEN_FILE=str(token_file))
    del env["STRONGHOLD_BOOTSTRAP_TOKEN"]
    result = run(["--", "true"], env)
    assert result.code == 77, result.stderr
    assert "login refused" in result.stderr
    assert f"from STRONGHOLD_BOOTSTRAP_TOKEN_FILE ({token_file})" in result.stderr, result.stderr
    assert "not-the-right-token" not in result.stderr


def test_a_refused_bootstrap_token_names_the_variable_it_came_from(proxy: TestProxy) -> None:
    env = base_env(proxy, A="stronghold://stripe/live", STRONGHOLD_BOOTSTRAP_TOKEN="wrong-token-abcdefgh")
    result = run(["--", "true"], env)
    assert result.code == 77, result.stderr
    assert "the bootstrap token from STRONGHOLD_BOOTSTRAP_TOKEN" in result.stderr, result.stderr
    assert "wrong-token" not in result.stderr


def unreachable_env() -> dict[str, str]:
    return base_env(
        STRONGHOLD_PROXY_URL=f"http://127.0.0.1:{free_port()}",
        STRONGHOLD_BOOTSTRAP_TOKEN="t" * 24,
        STRONGHOLD_STARTUP_TIMEOUT="0.5",
        A="stronghold://stripe/live",
    )


def test_as_pid1_an_unreachable_loopback_proxy_says_loopback_is_the_container_itself() -> None:
    from conftest import STRONGHOLD

    require_pid_namespaces()
    done = subprocess.run(
        [*UNSHARE, STRONGHOLD, "--", "true"], env=unreachable_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 69, done.stderr
    assert "inside a container is the container itself" in done.stderr, done.stderr


def test_not_pid1_an_unreachable_loopback_proxy_gets_no_container_hint() -> None:
    result = run(["--", "true"], unreachable_env())
    assert result.code == 69, result.stderr
    assert "container itself" not in result.stderr


def test_proxy_down_names_the_url_its_setting_the_wait_and_the_timeout(proxy: TestProxy) -> None:
    port = free_port()
    env = base_env(proxy, KEY="stronghold://stripe/live", STRONGHOLD_PROXY_URL=f"http://127.0.0.1:{port}")
    result = run(["--startup-timeout", "1", "--", "true"], env)
    assert result.code == 69
    line = one_error(result)
    assert f"http://127.0.0.1:{port}" in line and "STRONGHOLD_PROXY_URL" in line
    assert "connection refused" in line
    assert "s waited" in line and "--startup-timeout 1" in line


def test_proxy_down_from_a_flag_says_so(proxy: TestProxy) -> None:
    port = free_port()
    env = base_env(proxy, KEY="stronghold://stripe/live")
    result = run(["--proxy", f"http://localhost:{port}/base/", "--startup-timeout", "0.5", "--", "true"], env)
    assert result.code == 69
    line = one_error(result)
    assert f"http://localhost:{port}/base (from --proxy)" in line


def test_proxy_down_from_an_env_file_names_the_file(tmp_path) -> None:
    port = free_port()
    env_file = tmp_path / "dev.env"
    env_file.write_text(
        f"STRONGHOLD_PROXY_URL=http://127.0.0.1:{port}\nSTRONGHOLD_BOOTSTRAP_TOKEN=dev-token-xyz\n"
        "KEY=stronghold://stripe/live\n"
    )
    result = run(["--env-file", str(env_file), "--startup-timeout", "0.5", "--", "true"], base_env())
    assert result.code == 69
    assert f"from STRONGHOLD_PROXY_URL in {env_file}" in one_error(result)


@pytest.fixture
def hung_server():
    """Accepts connections and reads, but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()
    for connection in held:
        connection.close()


def test_hung_proxy_says_it_timed_out_and_after_how_long(hung_server: str) -> None:
    env = base_env(None, STRONGHOLD_PROXY_URL=hung_server, STRONGHOLD_BOOTSTRAP_TOKEN="boot-x-123456")
    env["KEY"] = "stronghold://stripe/live"
    result = run(["--startup-timeout", "0.5", "--", "true"], env, timeout=120)
    assert result.code == 69
    line = one_error(result)
    assert re.search(r"timed out after [0-9.]+ ?s", line), line
    assert "cannot reach" not in line


def test_unknown_secret_names_the_path_the_variable_and_the_env_file(proxy: TestProxy, tmp_path) -> None:
    env_file = tmp_path / "project.env"
    env_file.write_text("PAYMENTS_KEY=stronghold://stripe/typo\n")
    result = run(["--env-file", str(env_file), "--", "true"], base_env(proxy))
    assert result.code == 78
    line = one_error(result)
    assert "PAYMENTS_KEY" in line and "'stripe/typo'" in line and str(env_file) in line


def test_https_to_a_plain_http_server_says_it_does_not_speak_tls(proxy: TestProxy) -> None:
    env = base_env(proxy, KEY="stronghold://stripe/live")
    env["STRONGHOLD_PROXY_URL"] = proxy.url.replace("http://", "https://")
    result = run(["--startup-timeout", "2", "--", "true"], env)
    assert result.code == 69
    line = one_error(result)
    assert "does not speak TLS" in line and "WRONG_VERSION_NUMBER" not in line
