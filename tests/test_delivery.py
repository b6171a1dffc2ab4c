"""Env and file delivery, request bodies and scrubbing (SPEC sections 2-4, 6).

Each test runs the real binary against a real proxy on loopback and a real
child that reports what it received.
"""

from __future__ import annotations

import os
import stat

import pytest

from conftest import SECRETS, TestProxy, base_env, report_command, run


def test_env_reference_reaches_child_environment_only(proxy: TestProxy, shm_dir) -> None:
    env = base_env(proxy, STRIPE_KEY="stronghold://stripe/live", PLAIN="kept as is")
    result = run(["--dir", str(shm_dir), "--", *report_command()], env)
    assert result.code == 0, result.stderr
    child = result.report()["env"]
    assert child["STRIPE_KEY"].startswith(SECRETS["stripe/live"] + ".")
    assert child["STRIPE_KEY"] in proxy.issued_values
    assert child["PLAIN"] == "kept as is"
    assert not os.path.exists(shm_dir), "env delivery must not write files"


def test_file_reference_is_written_exactly_with_mode_0400(proxy: TestProxy, shm_dir) -> None:
    env = base_env(proxy, DB_PASSWORD_FILE="stronghold://postgres/app")
    result = run(["--dir", str(shm_dir), "--", *report_command("DB_PASSWORD_FILE")], env)
    assert result.code == 0, result.stderr
    report = result.report()
    assert report["env"]["DB_PASSWORD_FILE"] == str(shm_dir / "DB_PASSWORD")
    delivered = report["files"]["DB_PASSWORD_FILE"]
    assert delivered["data"] == proxy.issued_values[0]  # exact bytes, no added newline
    assert delivered["mode"] == "0o400"
    assert delivered["uid"] == os.getuid()
    assert "DB_PASSWORD" not in report["env"]


def test_created_directory_is_0700_and_removed_at_exit(proxy: TestProxy, shm_dir) -> None:
    env = base_env(proxy, DB_PASSWORD_FILE="stronghold://postgres/app")
    probe = f"import os,stat; print(oct(stat.S_IMODE(os.stat('{shm_dir}').st_mode)))"
    result = run(["--dir", str(shm_dir), "--", "python3", "-c", probe], env)
    assert result.code == 0, result.stderr
    assert result.stdout.strip() == "0o700"
    assert not shm_dir.exists(), "supervisor must remove the directory it created"


def test_stronghold_variables_never_reach_the_child(proxy: TestProxy, shm_dir) -> None:
    env = base_env(proxy, STRIPE_KEY="stronghold://stripe/live", STRONGHOLD_LOG_LEVEL="info", STRONGHOLD_ANYTHING="x")
    result = run(["--dir", str(shm_dir), "--", *report_command()], env)
    assert result.code == 0, result.stderr
    child_env = result.report()["env"]
    assert [name for name in child_env if name.startswith("STRONGHOLD_")] == []


def test_one_request_with_exact_bodies(proxy: TestProxy, shm_dir) -> None:
    env = base_env(
        proxy,
        STRIPE_KEY="stronghold://stripe/live?scope=charges:write,refunds:read&ttl=15m",
        DB_PASSWORD_FILE="stronghold://postgres/app",
    )
    result = run(["--dir", str(shm_dir), "--", "true"], env)
    assert result.code == 0, result.stderr
    assert proxy.bodies("/v1/auth/login") == [{"method": "bootstrap_token", "token": proxy.token}]
    assert proxy.bodies("/v1/credentials") == [
        {
            "requests": [
                {"name": "DB_PASSWORD_FILE", "secret": "postgres/app", "scopes": []},
                {
                    "name": "STRIPE_KEY",
                    "secret": "stripe/live",
                    "scopes": ["charges:write", "refunds:read"],
                    "ttl": 900,
                },
            ]
        }
    ]
    issue = next(r for r in proxy.requests if r.path == "/v1/credentials")
    assert issue.headers["authorization"] == "Bearer " + proxy.session_tokens[0]


def test_bootstrap_token_file_and_flags_win_over_env(proxy: TestProxy, shm_dir, tmp_path) -> None:
    token_file = tmp_path / "bootstrap"
    token_file.write_text(proxy.token + "\n")
    env = base_env(None, STRONGHOLD_PROXY_URL="http://127.0.0.1:1", STRIPE_KEY="stronghold://stripe/live")
    result = run(
        [
            "--proxy",
            proxy.url,
            "--bootstrap-token-file",
            str(token_file),
            "--dir",
            str(shm_dir),
            "--",
            *report_command(),
        ],
        env,
    )
    assert result.code == 0, result.stderr
    assert result.report()["env"]["STRIPE_KEY"] in proxy.issued_values


def test_existing_world_writable_dir_is_refused(proxy: TestProxy, shm_dir) -> None:
    shm_dir.mkdir()
    os.chmod(shm_dir, 0o777)
    result = run(["--dir", str(shm_dir), "--", "true"], base_env(proxy, K_FILE="stronghold://stripe/live"))
    assert result.code == 78
    assert "writable by other users" in result.stderr
    assert list(shm_dir.iterdir()) == []


def test_symlink_dir_is_refused(proxy: TestProxy, shm_dir, tmp_path) -> None:
    real = shm_dir.with_name(shm_dir.name + "-real")
    real.mkdir(mode=0o700)
    try:
        shm_dir.symlink_to(real)
        result = run(["--dir", str(shm_dir), "--", "true"], base_env(proxy, K_FILE="stronghold://stripe/live"))
        assert result.code == 78
        assert "symlink" in result.stderr
        assert list(real.iterdir()) == []
    finally:
        shm_dir.unlink(missing_ok=True)
        real.rmdir()


def test_file_replaces_symlink_at_token_path_without_following_it(proxy: TestProxy, shm_dir, tmp_path) -> None:
    shm_dir.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (shm_dir / "K").symlink_to(victim)
    result = run(
        ["--dir", str(shm_dir), "--no-refresh", "--", "cat", str(shm_dir / "K")],
        base_env(proxy, K_FILE="stronghold://stripe/live"),
    )
    assert result.code == 0, result.stderr
    assert victim.read_text() == "untouched"
    assert stat.S_ISREG(os.lstat(shm_dir / "K").st_mode)
    assert result.stdout == proxy.issued_values[0]


@pytest.mark.parametrize("refs", [{}, {"K": "stronghold://stripe/live"}])
def test_no_lc_ctype_from_python_locale_coercion(proxy: TestProxy, refs: dict[str, str]) -> None:
    env = base_env(proxy, **refs)
    del env["LANG"]  # the C locale: Python would add LC_CTYPE=C.UTF-8 to its own environment
    result = run(["--", "env"], env)
    assert result.code == 0, result.stderr
    assert "LC_CTYPE" not in result.stdout
    env["LC_CTYPE"] = "C.UTF-8"  # given by the user: passed on
    assert "LC_CTYPE=C.UTF-8" in run(["--", "env"], env).stdout
