"""One HOST:PORT parser for `dev-proxy --listen` and `sidecar --health-listen` (injector/serving.py):
the same spellings are taken, the same mistakes refused with the same words; an address in use
is 78 naming it, before any credential is issued."""

from __future__ import annotations

import socket

import pytest

from conftest import TestProxy, base_env, one_error, run


def refusal(args: list[str], env: dict[str, str]) -> str:
    result = run(args, env, timeout=30)
    assert result.code == 78, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    return line.split(" ", 3)[-1]  # without "stronghold-init: error: --flag"


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1", "127.0.0.1:99999", "::1:0", ":8080"])
def test_both_listeners_refuse_the_same_addresses_with_the_same_words(
    listen: str, proxy: TestProxy, tmp_path, shm_dir
) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("stripe/live=sk_test_x\n")
    dev = refusal(["dev-proxy", "--secrets", str(secrets), "--listen", listen], base_env())
    sidecar = refusal(
        ["sidecar", "--dir", str(shm_dir), "--health-listen", listen],
        base_env(proxy, A_FILE="stronghold://stripe/live"),
    )
    assert dev == sidecar and "is not HOST:PORT" in dev, (dev, sidecar)
    assert proxy.requests == [], "checked before any credential is asked for"


def test_the_parser_takes_ipv6_in_brackets_and_port_0() -> None:
    from injector.serving import parse_listen

    assert parse_listen("[::1]:0", "--listen") == ("::1", 0)
    assert parse_listen("127.0.0.1:8787", "--listen") == ("127.0.0.1", 8787)


def test_the_webhook_takes_and_refuses_the_same_listen_spellings(tmp_path) -> None:
    """`webhook --listen` goes through serving.parse_listen too: a bad address is the same one line (78)."""
    import subprocess

    from conftest import STRONGHOLD

    cert = tmp_path / "c.pem"
    cert.write_text("")
    done = subprocess.run(
        [
            str(STRONGHOLD),
            "webhook",
            "--listen",
            "::1:8443",
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(cert),
            "--init-image",
            "x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 78, done.stderr
    assert "--listen '::1:8443' is not HOST:PORT (an IPv6 address in brackets: [::1]:8080)" in done.stderr


def test_health_listen_port_in_use_is_78_naming_the_address(proxy: TestProxy, shm_dir) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        env = base_env(proxy, KEY_FILE="stronghold://stripe/live")
        result = run(["sidecar", "--dir", str(shm_dir), "--health-listen", address], env)
    assert result.code == 78
    line = one_error(result)
    assert address in line and "in use" in line
    assert proxy.paths() == [], "bound before any credential is issued"
