"""Every exit code of SPEC section 7, from the real binary.

A failed start never runs the command and leaves no file behind; stderr holds
one error line naming what was wrong: a forgotten `--` shows the corrected
command line, an unknown flag a suggestion; off Linux it is a clear 78.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import NON_LINUX, PYTHON, TestProxy, base_env, error_lines, free_port, one_error, run
from injector.devproxy import Answer

MARKER_CMD = ["sh", "-c", 'touch "$0"']  # the command leaves a marker if it ever runs


def assert_failed_cleanly(result, code: int, shm_dir, marker, fragment: str) -> None:
    assert result.code == code, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0], errors[0]
    assert not marker.exists(), "the command must not start"
    assert not shm_dir.exists() or list(shm_dir.iterdir()) == [], "no file may be left behind"


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "command-ran"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--no-such-flag", "--", "true"], "unrecognized arguments"),
        (["--on-rotate", "sometimes", "--", "true"], "--on-rotate"),
        (["--on-rotate", "signal:SIGNOPE", "--", "true"], "unknown signal"),
        (["--grace", "-1", "--", "true"], "--grace"),
        (["--log-format", "xml", "--", "true"], "--log-format"),
        ([], "no command given"),
        (["--"], "no command given"),
        (["check", "--", "true"], "takes no command"),
    ],
)
def test_usage_errors_exit_64(args: list[str], fragment: str) -> None:
    result = run(args, base_env())
    assert result.code == 64, result.stderr
    assert fragment in result.stderr


def test_help_exits_0_and_lists_modes() -> None:
    result = run(["--help"], base_env())
    assert result.code == 0
    for word in ("sidecar", "fetch", "check", "dev-proxy", "--on-rotate", "--no-refresh", "stronghold://"):
        assert word in result.stdout


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"K": "stronghold://a?colour=red"}, "K: unknown query key 'colour'"),
        ({"K": "stronghold://"}, "K: empty secret"),
        ({"K": "stronghold://a", "K_FILE": "stronghold://b"}, "K and K_FILE are both set"),
        ({"K": "stronghold://stripe/live", "STRONGHOLD_LOG_FORMAT": "xml"}, "STRONGHOLD_LOG_FORMAT"),
    ],
)
def test_configuration_errors_exit_78(proxy: TestProxy, shm_dir, marker, extra: dict[str, str], fragment: str) -> None:
    result = run(["--dir", str(shm_dir), "--", *MARKER_CMD, str(marker)], base_env(proxy, **extra))
    assert_failed_cleanly(result, 78, shm_dir, marker, fragment)
    assert proxy.requests == [], "a configuration error is found before any request"


def test_plain_http_to_remote_proxy_is_refused_without_connecting(shm_dir, marker) -> None:
    env = base_env(
        STRONGHOLD_PROXY_URL="http://proxy.example.invalid:8200", STRONGHOLD_BOOTSTRAP_TOKEN="b", K="stronghold://a"
    )
    result = run(["--dir", str(shm_dir), "--", *MARKER_CMD, str(marker)], env)
    assert_failed_cleanly(result, 78, shm_dir, marker, "plain http://")
    assert "cannot reach" not in result.stderr and "retrying" not in result.stderr


def test_missing_proxy_url_is_78(marker, shm_dir) -> None:
    result = run(["--", *MARKER_CMD, str(marker)], base_env(K="stronghold://a", STRONGHOLD_BOOTSTRAP_TOKEN="b"))
    assert_failed_cleanly(result, 78, shm_dir, marker, "STRONGHOLD_PROXY_URL")


def test_disk_dir_refused_unless_allowed(proxy: TestProxy, tmp_path, marker, shm_dir) -> None:
    disk_dir = tmp_path / "tokens"
    env = base_env(proxy, K_FILE="stronghold://stripe/live")
    result = run(["--dir", str(disk_dir), "--", *MARKER_CMD, str(marker)], env)
    assert_failed_cleanly(result, 78, shm_dir, marker, "not on tmpfs")
    assert not disk_dir.exists()
    allowed = run(["--dir", str(disk_dir), "--allow-disk", "--", "cat", str(disk_dir / "K")], env)
    assert allowed.code == 0, allowed.stderr
    assert allowed.stdout == proxy.issued_values[-1]


def test_unreadable_bootstrap_token_file_is_78(proxy: TestProxy, tmp_path, marker, shm_dir) -> None:
    env = base_env(None, STRONGHOLD_PROXY_URL=proxy.url, K="stronghold://stripe/live")
    env["STRONGHOLD_BOOTSTRAP_TOKEN_FILE"] = str(tmp_path / "missing")
    result = run(["--", *MARKER_CMD, str(marker)], env)
    assert_failed_cleanly(result, 78, shm_dir, marker, "bootstrap token file")


def test_unknown_secret_404_is_78(proxy: TestProxy, shm_dir, marker) -> None:
    env = base_env(proxy, A_FILE="stronghold://stripe/live", NOPE="stronghold://no/such")
    result = run(["--dir", str(shm_dir), "--", *MARKER_CMD, str(marker)], env)
    assert_failed_cleanly(result, 78, shm_dir, marker, "NOPE: unknown secret")


def test_login_refused_is_77(proxy: TestProxy, shm_dir, marker) -> None:
    env = base_env(proxy, K_FILE="stronghold://stripe/live")
    env["STRONGHOLD_BOOTSTRAP_TOKEN"] = "wrong-token"
    result = run(["--dir", str(shm_dir), "--", *MARKER_CMD, str(marker)], env)
    assert_failed_cleanly(result, 77, shm_dir, marker, "login refused")


def test_scope_refused_403_names_the_credential_and_is_77(proxy: TestProxy, shm_dir, marker) -> None:
    proxy.script("/v1/credentials", Answer(403, {"error": "scope not allowed", "name": "B_FILE"}))
    env = base_env(proxy, A_FILE="stronghold://stripe/live", B_FILE="stronghold://postgres/app")
    result = run(["--dir", str(shm_dir), "--", *MARKER_CMD, str(marker)], env)
    assert_failed_cleanly(result, 77, shm_dir, marker, "B_FILE: refused by the proxy (403: scope not allowed)")


def test_other_4xx_is_69_without_retrying(proxy: TestProxy, shm_dir, marker) -> None:
    proxy.script("/v1/credentials", Answer(422, {"error": "bad request"}))
    env = base_env(proxy, A_FILE="stronghold://stripe/live")
    result = run(["--dir", str(shm_dir), "--", *MARKER_CMD, str(marker)], env)
    assert_failed_cleanly(result, 69, shm_dir, marker, "incompatible (422")
    assert proxy.paths().count("/v1/credentials") == 1


def test_connection_refused_retries_then_69(shm_dir, marker) -> None:
    env = base_env(None, STRONGHOLD_PROXY_URL=f"http://127.0.0.1:{free_port()}", STRONGHOLD_BOOTSTRAP_TOKEN="b")
    env["A_FILE"] = "stronghold://stripe/live"
    result = run(["--dir", str(shm_dir), "--startup-timeout", "1", "--", *MARKER_CMD, str(marker)], env)
    assert_failed_cleanly(result, 69, shm_dir, marker, "connection refused")
    assert "retrying" in result.stderr
    assert "gave up after the start-up timeout" in result.stderr


def test_persistent_503_gives_up_after_startup_timeout(proxy: TestProxy, shm_dir, marker) -> None:
    proxy.script("/v1/credentials", *[Answer(503, {"error": "busy"})] * 1000)
    env = base_env(proxy, A_FILE="stronghold://stripe/live")
    result = run(["--dir", str(shm_dir), "--startup-timeout", "1.5", "--", *MARKER_CMD, str(marker)], env)
    assert_failed_cleanly(result, 69, shm_dir, marker, "503")
    assert proxy.paths().count("/v1/credentials") >= 2, "a 503 is retried"


def test_command_not_found_127_before_any_request(proxy: TestProxy, shm_dir) -> None:
    result = run(
        ["--dir", str(shm_dir), "--", "no-such-command-xyz"], base_env(proxy, A_FILE="stronghold://stripe/live")
    )
    assert result.code == 127
    assert "no-such-command-xyz: command not found" in result.stderr
    assert proxy.requests == []
    assert not shm_dir.exists()


def test_command_not_executable_126(proxy: TestProxy, tmp_path, shm_dir) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    os.chmod(script, 0o644)
    result = run(["--", str(script)], base_env(proxy, A="stronghold://stripe/live"))
    assert result.code == 126
    assert "not executable" in result.stderr
    no_refs = run(["--", str(script)], base_env())
    assert no_refs.code == 126


def test_no_references_and_no_proxy_needed() -> None:
    result = run(["--", "sh", "-c", "exit 7"], base_env())
    assert result.code == 7
    assert result.stderr == ""


@pytest.mark.parametrize("mode", [[], ["--no-refresh"]])
def test_delivery_failure_after_issue_revokes_and_leaves_nothing(proxy: TestProxy, shm_dir, marker, mode) -> None:
    shm_dir.mkdir(mode=0o700)
    (shm_dir / "B").mkdir()  # a directory where the token file must go
    env = base_env(proxy, A_FILE="stronghold://stripe/live", B_FILE="stronghold://postgres/app")
    result = run(["--dir", str(shm_dir), *mode, "--", *MARKER_CMD, str(marker)], env)
    assert result.code == 78, result.stderr
    assert f"cannot write {shm_dir}/B" in result.stderr
    assert not marker.exists()
    assert sorted(p.name for p in shm_dir.iterdir()) == ["B"], "the A file written first is removed again"
    assert proxy.bodies("/v1/leases/revoke") == [{"lease_ids": proxy.leases_issued}]


@pytest.mark.parametrize(
    "url", ["ftp://user:hunter2secret@proxy.example", "http://user:hunter2secret@127.0.0.1:1", "https://h:99999999"]
)
def test_bad_proxy_url_is_78_and_never_echoed(url: str) -> None:
    env = base_env(STRONGHOLD_PROXY_URL=url, STRONGHOLD_BOOTSTRAP_TOKEN="b", K="stronghold://a")
    result = run(["--", "true"], env)
    assert result.code == 78
    assert "proxy URL" in result.stderr
    assert "hunter2secret" not in result.stderr and url not in result.stderr


def test_forgotten_double_dash_shows_the_corrected_command_line(tmp_path) -> None:
    marker = tmp_path / "ran"
    result = run(["--startup-timeout", "5", "touch", str(marker)], base_env())
    assert result.code == 64
    line = one_error(result)
    assert "after --" in line
    assert f"stronghold-init --startup-timeout 5 -- touch {marker}" in line
    assert "invalid choice" not in line
    assert not marker.exists()


def test_unknown_flag_with_a_value_is_named_with_a_suggestion() -> None:
    result = run(["--proxyurl", "http://127.0.0.1:9", "--", "true"], base_env())
    assert result.code == 64
    line = one_error(result)
    assert "--proxyurl" in line and "did you mean --proxy?" in line
    assert "invalid choice" not in line


def test_unknown_flag_after_a_subcommand_is_named_too() -> None:
    result = run(["sidecar", "--health-listn", "127.0.0.1:0"], base_env())
    assert result.code == 64
    line = one_error(result)
    assert "--health-listn" in line and "--health-listen" in line


def test_negative_grace_names_the_flag() -> None:
    result = run(["--grace", "-1", "--", "true"], base_env())
    assert result.code == 64
    line = one_error(result)
    assert "--grace" in line and "'-1'" in line and "seconds" in line
    assert "_seconds" not in line


@pytest.mark.parametrize("args", [["--", "true"], ["check"], ["fetch"], ["sidecar"]])
def test_non_linux_is_a_clear_78(args: list[str]) -> None:
    done = subprocess.run(
        [PYTHON, "-c", NON_LINUX, *args],
        env=base_env(KEY_FILE="stronghold://a"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 78, done.stderr
    errors = error_lines(done.stderr)
    assert len(errors) == 1 and "needs Linux" in errors[0] and "darwin" in errors[0]
    assert "container" in errors[0]
