"""Token files and token variables (docs/token-files.md): a file's trailing newline is stripped and
accepted; a line break inside a file, or any newline in a variable, is 78 naming where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import TestProxy, base_env, run

DOC = (Path(__file__).resolve().parent.parent / "docs" / "token-files.md").read_text()


def file_env(proxy: TestProxy, token_file: Path) -> dict[str, str]:
    env = base_env(proxy, A="stronghold://stripe/live", STRONGHOLD_BOOTSTRAP_TOKEN_FILE=str(token_file))
    del env["STRONGHOLD_BOOTSTRAP_TOKEN"]
    return env


def test_a_token_file_with_a_trailing_newline_is_accepted(proxy: TestProxy, tmp_path) -> None:
    token_file = tmp_path / "bootstrap-token"
    token_file.write_text(proxy.token + "\n")
    result = run(["--", "sh", "-c", 'test -n "$A"'], file_env(proxy, token_file))
    assert result.code == 0, result.stderr
    assert "| a file" in DOC and "**accepted**" in DOC


def test_a_token_file_with_a_second_line_is_78_naming_the_file(proxy: TestProxy, tmp_path) -> None:
    token_file = tmp_path / "bootstrap-token"
    token_file.write_text(proxy.token + "\nsecond-line-XYZ\n")
    result = run(["--", "true"], file_env(proxy, token_file))
    assert result.code == 78, result.stderr
    assert str(token_file) in result.stderr and "line break" in result.stderr
    assert proxy.token not in result.stderr and "second-line-XYZ" not in result.stderr
    assert proxy.requests == []


def test_a_token_variable_with_a_trailing_newline_is_78_naming_the_variable(proxy: TestProxy) -> None:
    env = base_env(proxy, A="stronghold://stripe/live")
    env["STRONGHOLD_BOOTSTRAP_TOKEN"] = proxy.token + "\n"
    result = run(["--", "true"], env)
    assert result.code == 78, result.stderr
    assert "STRONGHOLD_BOOTSTRAP_TOKEN" in result.stderr and proxy.token not in result.stderr
    assert proxy.requests == []


@pytest.mark.parametrize("variable", ["VAULT_TOKEN", "BAO_TOKEN", "STRONGHOLD_VAULT_TOKEN"])
def test_a_vault_token_with_a_trailing_newline_is_78_and_never_printed(variable: str) -> None:
    token = "hvs.TRAILINGNEWLINE0123456789"
    env = base_env(None, STRONGHOLD_VAULT_ADDR="http://127.0.0.1:9", K="vault://secret/data/app#K")
    env[variable] = token + "\n"
    result = run(["--log-level", "debug", "--", "true"], env)
    assert result.code == 78, result.stderr
    assert variable in result.stderr and "newline" in result.stderr
    assert "TRAILINGNEWLINE" not in result.stderr + result.stdout


def test_a_bootstrap_token_file_with_a_second_line_is_78_even_at_debug_level(proxy: TestProxy, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(proxy.token + "\nsecond-line-SECRET\n")
    env = base_env(None, STRONGHOLD_PROXY_URL=proxy.url, K="stronghold://stripe/live")
    result = run(["--log-level", "debug", "--bootstrap-token-file", str(token_file), "--", "true"], env)
    assert result.code == 78 and str(token_file) in result.stderr
    assert proxy.token not in result.stderr and "second-line" not in result.stderr
    assert proxy.requests == []


def test_a_bootstrap_token_variable_ending_in_crlf_is_78_even_at_debug_level(proxy: TestProxy) -> None:
    env = base_env(proxy, K="stronghold://stripe/live")
    env["STRONGHOLD_BOOTSTRAP_TOKEN"] = proxy.token + "\r\n"
    result = run(["--log-level", "debug", "--", "true"], env)
    assert result.code == 78 and "STRONGHOLD_BOOTSTRAP_TOKEN" in result.stderr
    assert proxy.token not in result.stderr and proxy.requests == []
