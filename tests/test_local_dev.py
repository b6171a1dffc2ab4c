"""The local dev wrapper: `stronghold-init --env-file .env -- CMD` on a laptop (SPEC section 2).

.env holds plain values and references; a variable already set wins; several
files load in order (the first to set a variable wins, as python-dotenv's
load_dotenv does); with no --dir, a per-user tmpfs directory is the fallback.
"""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import TestProxy, base_env, report_command, run
from injector.delivery import MEMORY_FILESYSTEMS, filesystem_type


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


def test_environment_wins_over_env_files_and_first_file_wins(proxy: TestProxy, tmp_path, shm_dir) -> None:
    first = write(tmp_path / "first.env", "SHARED=from-first\nONLY_FIRST=1\nSET=from-file\n")
    second = write(tmp_path / "second.env", "SHARED=from-second\nONLY_SECOND=2\nKEY=stronghold://stripe/live\n")
    env = base_env(proxy, SET="from-environment")
    result = run(["--env-file", first, "--env-file", second, "--", *report_command()], env)
    assert result.code == 0, result.stderr
    child = result.report()["env"]
    assert child["SET"] == "from-environment"
    assert child["SHARED"] == "from-first"
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
