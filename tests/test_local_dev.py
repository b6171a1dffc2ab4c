"""The local dev wrapper: `stronghold-init --env-file .env -- CMD` on a laptop (SPEC section 2).

.env holds plain values and references; a variable already set wins; several
files load in order and a later file wins over an earlier one (as Node's
--env-file and Compose's env_file); `${VAR}` never expands a STRONGHOLD_*,
VAULT_* or BAO_* variable; a credential from the environment never goes to an
address from an env file; with no --dir, a per-user tmpfs directory is the fallback.
"""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import TestProxy, base_env, one_error, report_command, run
from injector.delivery.tokendir import MEMORY_FILESYSTEMS, filesystem_type


def write(path, text: str):
    path.write_text(text)
    return str(path)


def test_env_file_references_and_plain_values(proxy: TestProxy, tmp_path, shm_dir) -> None:
    env_file = write(tmp_path / ".env", "STRIPE_KEY=stronghold://stripe/live\nGREETING='hello there'\n# comment\n")
    result = run(["--env-file", env_file, "--dir", str(shm_dir), "--", *report_command()], base_env(proxy))
    assert result.code == 0, result.stderr
    child = result.report()["env"]
    assert child["STRIPE_KEY"] == proxy.issued_values[0]
    assert child["GREETING"] == "hello there"


def test_environment_wins_over_env_files_and_later_file_wins(proxy: TestProxy, tmp_path, shm_dir) -> None:
    first = write(tmp_path / "first.env", "SHARED=from-first\nONLY_FIRST=1\nSET=from-file\n")
    second = write(tmp_path / "second.env", "SHARED=from-second\nONLY_SECOND=2\nKEY=stronghold://stripe/live\n")
    env = base_env(proxy, SET="from-environment")
    result = run(["--env-file", first, "--env-file", second, "--", *report_command()], env)
    assert result.code == 0, result.stderr
    child = result.report()["env"]
    assert child["SET"] == "from-environment"
    assert child["SHARED"] == "from-second"
    assert (child["ONLY_FIRST"], child["ONLY_SECOND"]) == ("1", "2")
    assert child["KEY"] == proxy.issued_values[0]


def test_environment_can_override_a_reference_in_env_file(proxy: TestProxy, tmp_path) -> None:
    env_file = write(tmp_path / ".env", "KEY=stronghold://stripe/live\n")
    result = run(["--env-file", env_file, "--", *report_command()], base_env(proxy, KEY="plain-local-value"))
    assert result.code == 0, result.stderr
    assert result.report()["env"]["KEY"] == "plain-local-value"
    assert proxy.requests == [], "no reference left, so nothing is asked for"


def test_malformed_reference_in_env_file_names_variable_and_file(proxy: TestProxy, tmp_path, shm_dir) -> None:
    env_file = write(tmp_path / "app.env", "OK=1\nBROKEN=stronghold://stripe/live?ttl=forever\n")
    marker = tmp_path / "ran"
    result = run(["--env-file", env_file, "--", "touch", str(marker)], base_env(proxy))
    assert result.code == 78
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1
    assert "BROKEN" in errors[0] and env_file in errors[0] and "bad duration" in errors[0]
    assert not marker.exists()


def test_missing_env_file_is_78(proxy: TestProxy, tmp_path) -> None:
    result = run(["--env-file", str(tmp_path / "nope.env"), "--", "true"], base_env(proxy))
    assert result.code == 78
    assert "nope.env: no such file" in result.stderr


def default_dir_usable() -> bool:
    path = "/run/stronghold"
    probe = path if os.path.isdir(path) else os.path.dirname(path)
    try:
        return os.access(probe, os.W_OK) and filesystem_type(probe) in MEMORY_FILESYSTEMS
    except OSError:
        return False


@pytest.mark.skipif(default_dir_usable(), reason="/run/stronghold is usable here, so no fallback happens")
def test_fallback_to_xdg_runtime_dir_on_tmpfs(proxy: TestProxy, shm_dir) -> None:
    shm_dir.mkdir(mode=0o700)
    env = base_env(proxy, KEY_FILE="stronghold://stripe/live", XDG_RUNTIME_DIR=str(shm_dir))
    result = run(["--", *report_command("KEY_FILE")], env)
    assert result.code == 0, result.stderr
    assert result.report()["env"]["KEY_FILE"] == f"{shm_dir}/stronghold/KEY"
    assert not (shm_dir / "stronghold").exists(), "the created directory is removed at exit"


@pytest.mark.skipif(default_dir_usable(), reason="/run/stronghold is usable here, so no fallback happens")
def test_xdg_runtime_dir_on_disk_is_skipped_for_dev_shm(proxy: TestProxy, tmp_path) -> None:
    fallback = f"/dev/shm/stronghold-{os.getuid()}"
    if os.path.exists(fallback):
        pytest.skip(f"{fallback} exists already; not touching it")
    try:
        env = base_env(proxy, KEY_FILE="stronghold://stripe/live", XDG_RUNTIME_DIR=str(tmp_path))
        result = run(["--", *report_command("KEY_FILE")], env)
        assert result.code == 0, result.stderr
        assert result.report()["env"]["KEY_FILE"] == f"{fallback}/KEY"
        assert not os.path.exists(fallback)
    finally:
        shutil.rmtree(fallback, ignore_errors=True)


def test_explicit_dir_is_never_replaced_by_a_fallback(proxy: TestProxy, tmp_path) -> None:
    result = run(["--dir", str(tmp_path / "d"), "--", "true"], base_env(proxy, KEY_FILE="stronghold://stripe/live"))
    assert result.code == 78
    assert "not on tmpfs" in result.stderr


def test_env_files_never_interpolate_credentials(proxy: TestProxy, tmp_path) -> None:
    """`${STRONGHOLD_BOOTSTRAP_TOKEN}` or `${VAULT_TOKEN}` in a .env must not smuggle a credential to the app."""
    env_file = write(
        tmp_path / ".env",
        "INNOCENT=${STRONGHOLD_BOOTSTRAP_TOKEN}\n"
        "ALSO=prefix-${VAULT_TOKEN}-${BAO_TOKEN}\n"
        "DEFAULTED=${STRONGHOLD_PROXY_URL:-none}\n"
        "HOME_TOO=${HOME}/x\n"
        "LOCAL=one\n"
        "BUILT=${LOCAL}-two\n"
        "KEY=stronghold://stripe/live\n",
    )
    env = base_env(proxy, VAULT_TOKEN="hvs.DEVELOPERS_OWN_TOKEN", BAO_TOKEN="bao.DEVELOPERS_TOKEN", HOME="/home/dev")
    result = run(["--env-file", env_file, "--", *report_command()], env)
    assert result.code == 0, result.stderr
    child = result.report()["env"]
    assert child["INNOCENT"] == ""
    assert child["ALSO"] == "prefix--"
    assert child["DEFAULTED"] == "none"
    assert (child["HOME_TOO"], child["BUILT"]) == ("/home/dev/x", "one-two")
    for secret in (proxy.token, "DEVELOPERS_OWN_TOKEN", "DEVELOPERS_TOKEN"):
        assert secret not in result.stdout


def test_later_env_file_sees_earlier_values_in_interpolation(proxy: TestProxy, tmp_path) -> None:
    first = write(tmp_path / "a.env", "HOST=db.local\nPORT=1\n")
    second = write(tmp_path / "b.env", "PORT=5432\nURL=postgres://${HOST}:${PORT}/app\n")
    result = run(["--env-file", first, "--env-file", second, "--", *report_command()], base_env(proxy))
    assert result.code == 0, result.stderr
    assert result.report()["env"]["URL"] == "postgres://db.local:5432/app"


@pytest.mark.parametrize("mode", ["run", "check"])
def test_env_file_cannot_point_the_bootstrap_token_elsewhere(make_proxy, tmp_path, mode: str) -> None:
    """A project .env that sets STRONGHOLD_PROXY_URL gets no credential from the developer's shell."""
    hostile = make_proxy()
    env_file = write(tmp_path / ".env", f"STRONGHOLD_PROXY_URL={hostile.url}\nKEY=stronghold://stripe/live\n")
    env = base_env(STRONGHOLD_BOOTSTRAP_TOKEN="boot-FROM-MY-SHELL-123")
    args = ["--env-file", env_file, "--", "true"] if mode == "run" else ["check", "--env-file", env_file]
    result = run(args, env)
    assert result.code == 78, result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1
    assert "STRONGHOLD_PROXY_URL" in errors[0] and "STRONGHOLD_BOOTSTRAP_TOKEN" in errors[0] and env_file in errors[0]
    assert hostile.requests == [], "nothing was sent to the address from the file"
    assert "boot-FROM-MY-SHELL" not in result.stderr


@pytest.mark.parametrize("mode", ["run", "check"])
@pytest.mark.parametrize(
    ("address_variable", "credentials"),
    [
        ("STRONGHOLD_VAULT_ADDR", {"VAULT_TOKEN": "hvs.MY-SHELL-TOKEN"}),
        ("BAO_ADDR", {"BAO_TOKEN": "bao.MY-SHELL-TOKEN"}),
        ("VAULT_ADDR", {"STRONGHOLD_VAULT_AUTH": "approle", "STRONGHOLD_VAULT_ROLE_ID": "role"}),
    ],
)
def test_env_file_cannot_point_the_vault_token_or_secret_id_elsewhere(
    make_proxy, tmp_path, mode: str, address_variable: str, credentials: dict[str, str]
) -> None:
    hostile = make_proxy()
    secret_id = tmp_path / "secret-id"
    secret_id.write_text("secret-id-FROM-MY-SHELL")
    env_file = write(tmp_path / ".env", f"{address_variable}={hostile.url}\nKEY=vault://secret/data/app#K\n")
    env = base_env(**credentials)
    if "STRONGHOLD_VAULT_AUTH" in credentials:
        env["STRONGHOLD_VAULT_SECRET_ID_FILE"] = str(secret_id)
    args = ["--env-file", env_file, "--", "true"] if mode == "run" else ["check", "--env-file", env_file]
    result = run(args, env)
    assert result.code == 78, result.stderr
    credential_variable = (
        "STRONGHOLD_VAULT_SECRET_ID_FILE" if "STRONGHOLD_VAULT_AUTH" in credentials else next(iter(credentials))
    )
    assert address_variable in result.stderr and credential_variable in result.stderr and env_file in result.stderr
    assert hostile.requests == []
    assert "MY-SHELL" not in result.stderr


def test_address_and_credential_both_from_env_files_are_allowed(proxy: TestProxy, tmp_path) -> None:
    """The project's own dev setup (address and dev token in .env) keeps working."""
    env_file = write(
        tmp_path / ".env",
        f"STRONGHOLD_PROXY_URL={proxy.url}\nSTRONGHOLD_BOOTSTRAP_TOKEN={proxy.token}\nKEY=stronghold://stripe/live\n",
    )
    result = run(["--env-file", env_file, "--", *report_command()], base_env())
    assert result.code == 0, result.stderr
    assert result.report()["env"]["KEY"] == proxy.issued_values[0]


def test_address_from_the_environment_with_env_file_references_is_allowed(proxy: TestProxy, tmp_path) -> None:
    env_file = write(tmp_path / ".env", "KEY=stronghold://stripe/live\nSTRONGHOLD_PROXY_URL=http://127.0.0.1:9\n")
    result = run(["--env-file", env_file, "--", *report_command()], base_env(proxy))
    assert result.code == 0, result.stderr  # the real environment's URL wins, and is the user's own
    assert proxy.paths()[0] == "/v1/auth/login"


def test_look_alike_in_an_env_file_names_the_file(tmp_path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("STRIPE_KEY=Stronghold://stripe/live\n")
    result = run(["--env-file", str(env_file), "--", "true"], base_env())
    assert result.code == 78
    assert str(env_file) in one_error(result)
