"""What an operator reads (issue 19, found by a new user): the exit line, and failures that say where to look.

- At exit, one info line: how it ended, leases revoked, files removed.
- A refused bootstrap token names the file or variable it came from.
- As PID 1 (a container's entrypoint) an unreachable loopback proxy URL gets the hint that
  127.0.0.1 is the container itself.
"""

from __future__ import annotations

import subprocess

from conftest import TestProxy, base_env, free_port, run
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
