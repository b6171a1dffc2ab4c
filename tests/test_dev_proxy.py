"""`stronghold-init dev-proxy` as a user runs it (SPEC section 8), and `check`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest

from conftest import NON_LINUX, PYTHON, STRONGHOLD, base_env, read_line, run, start, wait_for_line, wait_for_log

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
    # Verbatim by default: a laptop's real test key must work against the real service.
    assert key == "sk_test_DEVPROXY"
    assert db == "pg_DEVPROXY"


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


def dev_proxy_process(tmp_path, processes, *args: str, env: dict[str, str] | None = None, text: str = SECRETS_FILE):
    secrets = tmp_path / "secrets.env"
    secrets.write_text(text)
    process = start(["dev-proxy", "--secrets", str(secrets), "--listen", "127.0.0.1:0", *args], env or base_env())
    processes.append(process)
    return read_line(process).strip(), secrets, process


def test_rotate_mints_a_distinct_token_per_issue(tmp_path, processes) -> None:
    url, _, _ = dev_proxy_process(tmp_path, processes, "--rotate", "--token", "tok-ROTATE")
    env = base_env(STRONGHOLD_PROXY_URL=url, STRONGHOLD_BOOTSTRAP_TOKEN="tok-ROTATE", KEY="stronghold://stripe/live")
    first = run(["--", "sh", "-c", 'echo "$KEY"'], env)
    second = run(["--", "sh", "-c", 'echo "$KEY"'], env)
    assert first.code == second.code == 0, first.stderr + second.stderr
    assert first.stdout.startswith("sk_test_DEVPROXY.") and second.stdout.startswith("sk_test_DEVPROXY.")
    assert first.stdout != second.stdout


def test_verbatim_values_do_not_restart_the_app_at_each_refresh(tmp_path, processes) -> None:
    """An unchanged value is not a rotation: refreshes come and go, the app keeps running."""
    url, _, _ = dev_proxy_process(tmp_path, processes, "--ttl", "1", "--token", "tok-STEADY")
    env = base_env(STRONGHOLD_PROXY_URL=url, STRONGHOLD_BOOTSTRAP_TOKEN="tok-STEADY", KEY="stronghold://stripe/live")
    app = start(["--log-level", "debug", "--", "sh", "-c", 'echo "started $KEY"; exec sleep 600'], env)
    processes.append(app)
    assert read_line(app).strip() == "started sk_test_DEVPROXY"
    for _ in range(3):  # three refreshes at ttl 1 s, each with the same value
        wait_for_log(app, "credentials refreshed")
    app.send_signal(signal.SIGTERM)
    out, err = app.communicate(timeout=20)
    assert "credentials rotated" not in err
    assert "started" not in out, "the app was not started a second time"


def test_editing_the_secrets_file_rotates_the_running_app(tmp_path, processes, shm_dir) -> None:
    url, secrets, proxy = dev_proxy_process(tmp_path, processes, "--ttl", "1", "--token", "tok-EDIT")
    env = base_env(STRONGHOLD_PROXY_URL=url, STRONGHOLD_BOOTSTRAP_TOKEN="tok-EDIT", KEY="stronghold://stripe/live")
    env["DB_FILE"] = "stronghold://postgres/app"
    env["STRONGHOLD_DIR"] = str(shm_dir)
    app = start(["--", "sh", "-c", 'echo "key=$KEY db=$(cat "$DB_FILE")"; exec sleep 600'], env)
    processes.append(app)
    assert read_line(app).strip() == "key=sk_test_DEVPROXY db=pg_DEVPROXY"
    # An editor that writes a new file and renames it over the old one, as vim and VS Code do.
    edited = tmp_path / "secrets.env.new"
    edited.write_text("stripe/live=sk_test_EDITED\npostgres/app=pg_EDITED\n")
    os.replace(edited, secrets)
    wait_for_line(app, "key=sk_test_EDITED db=pg_EDITED")
    # And one that writes in place.
    secrets.write_text("stripe/live=sk_test_AGAIN\npostgres/app=pg_EDITED\n")
    wait_for_line(app, "key=sk_test_AGAIN db=pg_EDITED")
    assert "changed; serving 2 secrets" in wait_for_log(proxy, "changed")


def test_token_file_keeps_the_token_out_of_argv(tmp_path, processes) -> None:
    token_file = tmp_path / "dev-token"
    token_file.write_text("tok-FROMFILE-1234\n")
    url, _, process = dev_proxy_process(tmp_path, processes, "--token-file", str(token_file))
    with open(f"/proc/{process.pid}/cmdline", "rb") as handle:
        assert b"tok-FROMFILE" not in handle.read()
    env = base_env(STRONGHOLD_PROXY_URL=url, STRONGHOLD_BOOTSTRAP_TOKEN_FILE=str(token_file))
    env["KEY"] = "stronghold://stripe/live"
    assert run(["--", "sh", "-c", 'echo "$KEY"'], env).stdout == "sk_test_DEVPROXY\n"
    env["STRONGHOLD_BOOTSTRAP_TOKEN"], env["STRONGHOLD_BOOTSTRAP_TOKEN_FILE"] = "wrong-token", ""
    assert run(["--", "true"], env).code == 77
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert "tok-FROMFILE" not in out + err, "a given token is never printed"


def test_token_from_the_environment(tmp_path, processes) -> None:
    url, _, process = dev_proxy_process(tmp_path, processes, env=base_env(STRONGHOLD_DEV_TOKEN="tok-FROMENV-5678"))
    with open(f"/proc/{process.pid}/cmdline", "rb") as handle:
        assert b"tok-FROMENV" not in handle.read()
    env = base_env(STRONGHOLD_PROXY_URL=url, STRONGHOLD_BOOTSTRAP_TOKEN="tok-FROMENV-5678")
    env["KEY"] = "stronghold://stripe/live"
    assert run(["--", "sh", "-c", 'echo "$KEY"'], env).stdout == "sk_test_DEVPROXY\n"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert "tok-FROMENV" not in out + err


def test_token_and_token_file_together_is_78(tmp_path) -> None:
    secrets = tmp_path / "s.env"
    secrets.write_text(SECRETS_FILE)
    token_file = tmp_path / "t"
    token_file.write_text("x" * 20)
    args = ["dev-proxy", "--secrets", str(secrets), "--listen", "127.0.0.1:0", "--token", "a", "--token-file"]
    result = run([*args, str(token_file)], base_env(), timeout=30)
    assert result.code == 78
    assert "--token or --token-file" in result.stderr


def test_port_in_use_is_78_naming_the_address(tmp_path) -> None:
    secrets = tmp_path / "s.env"
    secrets.write_text(SECRETS_FILE)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = run(["dev-proxy", "--secrets", str(secrets), "--listen", address], base_env(), timeout=30)
    assert result.code == 78, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and address in errors[0] and "in use" in errors[0]
    assert "internal error" not in result.stderr


def test_log_level_is_accepted_after_the_subcommand(tmp_path, processes) -> None:
    url, _, _ = dev_proxy_process(tmp_path, processes, "--log-level", "debug", "--token", "tok-LOG")
    assert url.startswith("http://127.0.0.1:")


def test_a_missing_or_broken_secrets_file_keeps_the_last_good_values(tmp_path, processes) -> None:
    """Mid-save, an editor may leave no file or half a file: the proxy keeps serving what it had."""
    url, secrets, _ = dev_proxy_process(tmp_path, processes, "--token", "tok-KEEP")
    env = base_env(STRONGHOLD_PROXY_URL=url, STRONGHOLD_BOOTSTRAP_TOKEN="tok-KEEP", KEY="stronghold://stripe/live")
    secrets.unlink()
    assert run(["--", "sh", "-c", 'echo "$KEY"'], env).stdout == "sk_test_DEVPROXY\n"
    secrets.write_bytes(b"stripe/live=\xff\xfe\n")  # not UTF-8
    assert run(["--", "sh", "-c", 'echo "$KEY"'], env).stdout == "sk_test_DEVPROXY\n"
    secrets.write_text("stripe/live=sk_test_BACK\n")
    assert run(["--", "sh", "-c", 'echo "$KEY"'], env).stdout == "sk_test_BACK\n"


def raw_request(url: str, request: bytes, timeout: float = 20) -> bytes:
    """Send `request` as is and read the answer's status line (the connection stays open from our side)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_negative_content_length_is_refused_at_once_not_read_to_the_end(dev_proxy) -> None:
    """Content-Length: -1 meant read until the client hangs up: memory grew without bound (23 -> 627 MiB)."""
    url, _, process = dev_proxy
    request = b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n" + b"x" * 65536
    assert raw_request(url, request).startswith(b"HTTP/1.1 400 "), "answered without waiting for the end of the stream"
    assert process.poll() is None


def test_a_non_ascii_login_token_is_refused_not_a_traceback(dev_proxy) -> None:
    url, _, process = dev_proxy
    body = '{"method": "bootstrap_token", "token": "t\u00f6ken-\u2603"}'.encode()
    request = b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    assert raw_request(url, request).startswith(b"HTTP/1.1 401 ")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=10)
    assert "Traceback" not in err and "Exception" not in err, err


@pytest.mark.parametrize("caught", ["", "stripe/live=sk_test_NEW\npostgres/a"], ids=["empty", "mid-save"])
def test_a_secrets_file_caught_half_written_keeps_the_last_good_table(tmp_path, processes, caught: str) -> None:
    url, secrets, _ = dev_proxy_process(tmp_path, processes, "--token", "tok-EDIT")
    env = base_env(STRONGHOLD_PROXY_URL=url, STRONGHOLD_BOOTSTRAP_TOKEN="tok-EDIT", KEY="stronghold://postgres/app")
    show = ["--", "sh", "-c", 'echo "$KEY"']
    assert run(show, env).stdout.strip() == "pg_DEVPROXY"
    secrets.write_text(caught)  # what a reader sees while an editor saves
    during = run(show, env)
    assert during.code == 0 and during.stdout.strip() == "pg_DEVPROXY", during.stderr
    secrets.write_text("stripe/live=sk_test_NEW\npostgres/app=pg_NEW\n")  # the save completes
    assert run(show, env).stdout.strip() == "pg_NEW", "a whole edit is still taken"


def test_dev_proxy_starts_on_a_non_linux_platform(tmp_path, processes) -> None:
    secrets = tmp_path / "s.env"
    secrets.write_text("a/b=c\n")
    process = subprocess.Popen(
        [PYTHON, "-c", NON_LINUX, "dev-proxy", "--secrets", str(secrets), "--listen", "127.0.0.1:0"],
        env=base_env(STRONGHOLD_DEV_TOKEN="tok-anywhere"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    processes.append(process)
    assert process.stdout.readline().startswith("http://127.0.0.1:")
