"""The first ten minutes (issue 14): the commonest mistakes each get one clear
line that says what is wrong and how to fix it, with the right exit code, and
the conveniences a new user expects (help, completion, a clear non-Linux error).

Everything runs the real binary; the servers are real (a TestProxy on
loopback, a socket that never answers, the OpenBao dev server).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import uuid

import pytest

from conftest import PYTHON, TestProxy, base_env, run
from testkit.servers import OpenBao, free_port


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ": error: " in line]


def one_error(result) -> str:
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "internal error" not in errors[0] and "Traceback" not in result.stderr
    return errors[0]


# -- the command line ---------------------------------------------------------------


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


def test_log_level_after_a_subcommand_is_accepted(proxy: TestProxy) -> None:
    result = run(["check", "--log-level", "debug"], base_env(proxy, KEY="stronghold://stripe/live"))
    assert result.code == 0, result.stderr
    assert ": debug: " in result.stderr


# -- references that are almost references ---------------------------------------


@pytest.mark.parametrize(
    ("value", "right"),
    [
        ("strongold://stripe/live", "stronghold://"),
        ("stronghold:/stripe/live", "stronghold://"),
        ("Stronghold://stripe/live", "stronghold://"),
        ("vault:/secret/data/app#KEY", "vault://"),
        ("vault-token:?policies=a", "vault-token://"),
    ],
)
def test_look_alike_reference_is_78_naming_the_variable_and_the_spelling(tmp_path, value: str, right: str) -> None:
    marker = tmp_path / "ran"
    result = run(["--", "touch", str(marker)], base_env(STRIPE_KEY=value, OTHER="https://example.com/"))
    assert result.code == 78
    line = one_error(result)
    assert "STRIPE_KEY" in line and right in line
    assert "stripe/live" not in line and "secret/data" not in line, "only the scheme is echoed"
    assert not marker.exists()


def test_look_alike_in_an_env_file_names_the_file(tmp_path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("STRIPE_KEY=Stronghold://stripe/live\n")
    result = run(["--env-file", str(env_file), "--", "true"], base_env())
    assert result.code == 78
    assert str(env_file) in one_error(result)


def test_vault_reference_without_a_field_says_how_to_write_it() -> None:
    result = run(["--", "true"], base_env(DB_PASSWORD="vault://secret/data/app"))
    assert result.code == 78
    line = one_error(result)
    assert "DB_PASSWORD" in line and "#<field>" in line


def test_ordinary_urls_and_prose_pass_through_unchanged() -> None:
    values = {"A": "https://stronghold.example/", "B": "postgres://u@h/db", "C": "Vault: the big one", "D": "x:y"}
    result = run(["--", "env"], base_env(**values))
    assert result.code == 0, result.stderr
    for name, value in values.items():
        assert f"{name}={value}" in result.stdout


# -- the proxy is not where it should be ---------------------------------------------


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


def test_openbao_address_as_the_proxy_url_says_to_use_vault_references(bao: OpenBao) -> None:
    env = base_env(None, STRONGHOLD_PROXY_URL=bao.url, STRONGHOLD_BOOTSTRAP_TOKEN="boot-x-123456")
    env["KEY"] = "stronghold://secret/app"
    result = run(["--", "true"], env)
    assert result.code == 77
    line = one_error(result)
    assert "OpenBao/Vault" in line and "vault://" in line and "STRONGHOLD_VAULT_ADDR" in line


def test_kv_v2_path_without_data_gets_a_hint(bao: OpenBao) -> None:
    path = f"hint-{uuid.uuid4().hex[:8]}"
    bao.ok("POST", f"secret/data/{path}", {"data": {"K": "v"}})
    env = base_env(None, STRONGHOLD_VAULT_ADDR=bao.url, BAO_TOKEN=bao.root_token, KEY=f"vault://secret/{path}#K")
    result = run(["--", "true"], env)
    assert result.code == 78
    line = one_error(result)
    assert "KEY" in line and "KV v2" in line and f"vault://secret/data/{path}#<field>" in line


def test_kv_v2_path_without_data_refused_by_policy_gets_a_conditional_hint(bao: OpenBao) -> None:
    path = f"hint-{uuid.uuid4().hex[:8]}"
    bao.ok("POST", f"secret/data/{path}", {"data": {"K": "v"}})
    name = f"reader-{path}"
    bao.ok("PUT", f"sys/policies/acl/{name}", {"policy": f'path "secret/data/{path}" {{ capabilities = ["read"] }}'})
    token = bao.ok("POST", "auth/token/create", {"policies": [name], "ttl": "5m"})["auth"]["client_token"]
    env = base_env(None, STRONGHOLD_VAULT_ADDR=bao.url, BAO_TOKEN=token, KEY=f"vault://secret/{path}#K")
    result = run(["--", "true"], env)
    assert result.code == 77
    assert "if secret/ is a KV v2 mount" in one_error(result)


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


# -- help, completion, platform -------------------------------------------------------------


def test_top_level_help_names_the_three_reference_kinds_and_the_exit_codes() -> None:
    result = run(["--help"], base_env())
    assert result.code == 0
    for fragment in ("stronghold://", "vault://", "vault-token://", "exit codes", "64", "69", "77", "78", "127"):
        assert fragment in result.stdout


@pytest.mark.parametrize("subcommand", ["check", "fetch", "sidecar", "dev-proxy", "completion"])
def test_every_subcommand_help_has_a_one_line_description(subcommand: str) -> None:
    result = run([subcommand, "--help"], base_env())
    assert result.code == 0
    paragraphs = result.stdout.split("\n\n")
    description = paragraphs[1].strip()
    assert description and "\n" not in description and description.endswith(".")
    assert not description.startswith(("positional", "options"))


def test_bash_completion_completes_subcommands_and_options() -> None:
    script = run(["completion", "bash"], base_env()).stdout
    probe = (
        script
        + '\nCOMP_WORDS=(stronghold-init dev-); COMP_CWORD=1; _shtab_stronghold_init; echo "sub: ${COMPREPLY[*]}"'
        + "\nCOMP_WORDS=(stronghold-init dev-proxy --tok); COMP_CWORD=2; _shtab_stronghold_init;"
        + ' echo "opt: ${COMPREPLY[*]}"\ncomplete -p stronghold-init\n'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "sub: dev-proxy" in done.stdout
    assert "--token" in done.stdout.split("opt: ")[1] and "--token-file" in done.stdout
    assert "complete " in done.stdout and "stronghold-init" in done.stdout


def test_fish_completion_completes_subcommands() -> None:
    script = run(["completion", "fish"], base_env()).stdout
    done = subprocess.run(
        ["fish", "--no-config", "-c", script + '\ncomplete -C "stronghold-init dev-"'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dev-proxy")


def test_zsh_completion_is_valid_zsh() -> None:
    result = run(["completion", "zsh"], base_env())
    assert result.code == 0 and "#compdef stronghold-init" in result.stdout
    done = subprocess.run(["zsh", "-n"], input=result.stdout, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


def test_completion_needs_a_known_shell() -> None:
    result = run(["completion", "powershell"], base_env())
    assert result.code == 64


NON_LINUX = "import sys; sys.platform = 'darwin'; from injector.cli import main; main(sys.argv[1:])"


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


def test_completion_costs_the_entrypoint_nothing() -> None:
    """shtab is imported by `completion` alone, never on the start path."""
    probe = "import sys; from injector import cli; cli.parse(['--', 'true']); print('shtab' in sys.modules)"
    done = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "debug", "dev-proxy", "--secrets", "s.env"],
        ["dev-proxy", "--secrets", "s.env", "--log-level", "debug"],
        ["--log-level", "debug", "check"],
        ["check", "--log-level", "debug"],
        ["--log-level", "warning", "sidecar", "--log-level", "debug"],
    ],
)
def test_log_level_is_taken_before_or_after_the_subcommand(argv: list[str]) -> None:
    """Pure parsing: the level given anywhere is the one used, the later one winning."""
    from injector.cli import parse

    _, options, _ = parse(argv)
    assert options["log_level"] == "debug"


def test_output_into_a_closed_pipe_is_not_an_internal_error() -> None:
    """`stronghold-init completion bash | head -1`: the reader leaving early ends it quietly, as SIGPIPE would."""
    from conftest import STRONGHOLD

    reader_r, writer_w = os.pipe()
    os.close(reader_r)  # nobody will read: the first write fails with EPIPE
    done = subprocess.run(
        [STRONGHOLD, "completion", "bash"], stdout=writer_w, stderr=subprocess.PIPE, text=True, timeout=60
    )
    os.close(writer_w)
    assert "internal error" not in done.stderr, done.stderr
    assert done.returncode == 141, (done.returncode, done.stderr)
