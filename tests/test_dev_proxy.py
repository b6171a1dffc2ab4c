"""`stronghold-init dev-proxy` as a user runs it (SPEC section 8), and `check`."""

from __future__ import annotations

import signal
import subprocess

import pytest

from conftest import STRONGHOLD, base_env, read_line, run, start

SECRETS_FILE = "stripe/live=sk_test_DEVPROXY\npostgres/app=pg_DEVPROXY\n"


@pytest.fixture
def dev_proxy(tmp_path, processes):
    """A real dev-proxy process on a free port; yields (url, token)."""
    secrets = tmp_path / "secrets.env"
    secrets.write_text(SECRETS_FILE)
    process = start(["dev-proxy", "--secrets", str(secrets), "--listen", "127.0.0.1:0", "--ttl", "120"], base_env())
    processes.append(process)
    url = read_line(process).strip()
    token = read_line(process).strip().removeprefix("bootstrap token: ")
    yield url, token, process


def test_first_line_is_the_url_and_it_serves_a_run(dev_proxy, shm_dir) -> None:
    url, token, _ = dev_proxy
    assert url.startswith("http://127.0.0.1:") and not url.endswith(":0")
    env = base_env(STRONGHOLD_PROXY_URL=url, STRONGHOLD_BOOTSTRAP_TOKEN=token, KEY="stronghold://stripe/live?ttl=1h")
    env["DB_FILE"] = "stronghold://postgres/app"
    result = run(["--dir", str(shm_dir), "--", "sh", "-c", 'echo "$KEY"; cat "$DB_FILE"'], env)
    assert result.code == 0, result.stderr
    key, db = result.stdout.splitlines()
    assert key.startswith("sk_test_DEVPROXY.")
    assert db.startswith("pg_DEVPROXY.")


def test_check_prints_destinations_never_values(dev_proxy, shm_dir) -> None:
    url, token, _ = dev_proxy
    env = base_env(STRONGHOLD_PROXY_URL=url, STRONGHOLD_BOOTSTRAP_TOKEN=token, KEY="stronghold://stripe/live")
    env["DB_FILE"] = "stronghold://postgres/app"
    result = run(["check", "--dir", str(shm_dir)], env)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("KEY ") and "env  KEY" in line for line in lines)
    assert any(line.startswith("DB_FILE ") and f"file {shm_dir}/DB" in line for line in lines)
    assert "DEVPROXY" not in result.stdout + result.stderr
    assert token not in result.stdout + result.stderr
    assert not shm_dir.exists(), "check writes nothing"


def test_check_reports_errors_with_exit_codes(dev_proxy) -> None:
    url, token, _ = dev_proxy
    env = base_env(STRONGHOLD_PROXY_URL=url, STRONGHOLD_BOOTSTRAP_TOKEN=token, KEY="stronghold://no/such")
    assert run(["check"], env).code == 78
    env["STRONGHOLD_BOOTSTRAP_TOKEN"] = "wrong"
    env["KEY"] = "stronghold://stripe/live"
    assert run(["check"], env).code == 77


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stops_cleanly_on_signal(dev_proxy, signum) -> None:
    _, _, process = dev_proxy
    process.send_signal(signum)
    assert process.wait(timeout=10) == 0


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "192.0.2.1:8787", "example.com:80"])
def test_refuses_non_loopback_listen(tmp_path, listen) -> None:
    secrets = tmp_path / "s.env"
    secrets.write_text(SECRETS_FILE)
    done = subprocess.run(
        [STRONGHOLD, "dev-proxy", "--secrets", str(secrets), "--listen", listen],
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 78
    assert "loopback" in done.stderr


def test_given_token_is_not_printed(tmp_path, processes) -> None:
    secrets = tmp_path / "s.env"
    secrets.write_text(SECRETS_FILE)
    process = start(
        ["dev-proxy", "--secrets", str(secrets), "--listen", "127.0.0.1:0", "--token", "tok-GIVEN"], base_env()
    )
    processes.append(process)
    assert read_line(process).startswith("http://127.0.0.1:")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert "tok-GIVEN" not in out + err
