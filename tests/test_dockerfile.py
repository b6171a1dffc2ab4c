"""examples/Dockerfile keeps every credential out of the image.

There is no Docker engine here, so the Dockerfile is read, not built: no
secret-looking literal in ENV, ARG or RUN; the build-time npm token arrives
through a BuildKit secret mount; runtime keys are references; the bootstrap
token is a file mounted at run time; stronghold-init is the entrypoint.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from injector.settings.references import collect_references

DOCKERFILE = Path(__file__).resolve().parent.parent / "examples" / "Dockerfile"
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL|_KEY$)", re.I)
SECRET_SHAPES = re.compile(
    r"(sk_(live|test)_[0-9A-Za-z]{8,}|npm_[0-9A-Za-z]{20,}|ghp_[0-9A-Za-z]{20,}|AKIA[0-9A-Z]{16}"
    r"|xox[abps]-[0-9A-Za-z-]{10,}|-----BEGIN [A-Z ]*PRIVATE KEY|_authToken=[^$\s\"']{8,})"
)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        result.append((keyword.upper(), rest.strip()))
        current = ""
    return result


def env_pairs(arguments: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(arguments))


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def test_the_parser_sees_the_file(parsed) -> None:
    keywords = {keyword for keyword, _ in parsed}
    assert {"FROM", "RUN", "ENV", "ENTRYPOINT", "CMD", "USER"} <= keywords


def test_no_secret_literal_anywhere(parsed) -> None:
    for keyword, arguments in parsed:
        assert not SECRET_SHAPES.search(arguments), f"secret-looking literal in {keyword}"


def test_no_secret_in_env_or_arg(parsed) -> None:
    for keyword, arguments in parsed:
        if keyword == "ARG":
            name = arguments.split("=", 1)[0]
            assert not SECRET_NAME.search(name), f"ARG {name} would land in the image history"
        if keyword == "ENV":
            for name, value in env_pairs(arguments).items():
                if SECRET_NAME.search(name):
                    ok = value.startswith("stronghold://") or (name.endswith("_FILE") and value.startswith("/run/"))
                    assert ok, f"ENV {name} must be a reference or a path to a runtime-mounted file"
                assert name != "STRONGHOLD_BOOTSTRAP_TOKEN", "the bootstrap token must never be baked in"


def test_runtime_credentials_are_valid_references(parsed) -> None:
    env: dict[str, str] = {}
    for keyword, arguments in parsed:
        if keyword == "ENV":
            env.update(env_pairs(arguments))
    names = [reference.name for reference in collect_references(env)]
    assert "STRIPE_SECRET_KEY" in names
    assert any(name.endswith("_FILE") for name in names)
    assert env["STRONGHOLD_BOOTSTRAP_TOKEN_FILE"].startswith("/run/secrets/")


def test_build_time_token_comes_through_a_secret_mount(parsed) -> None:
    runs = [arguments for keyword, arguments in parsed if keyword == "RUN"]
    npm_runs = [run for run in runs if "npm install" in run or "npm ci" in run]
    assert npm_runs, "the example installs its dependencies"
    for run in npm_runs:
        assert "--mount=type=secret,id=npm_token" in run
        assert "rm -f /tmp/.npmrc" in run, "the token file is removed in the same RUN"


def test_entrypoint_is_stronghold_init_in_exec_form(parsed) -> None:
    entrypoints = [arguments for keyword, arguments in parsed if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoints[-1]) == ["stronghold-init", "--"]
    commands = [arguments for keyword, arguments in parsed if keyword == "CMD"]
    assert json.loads(commands[-1])[0] == "node"


def test_the_app_does_not_run_as_root(parsed) -> None:
    users = [arguments for keyword, arguments in parsed if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")


def test_detector_catches_a_baked_secret() -> None:
    bad = (
        "FROM x\nENV STRIPE_SECRET_KEY=sk_live_51HxAbCdEfGhIjKl\nARG NPM_TOKEN\n"
        'RUN echo "//r/:_authToken=abcdef123456" > .npmrc\n'
    )
    parsed = instructions(bad)
    with pytest.raises(AssertionError):
        test_no_secret_literal_anywhere(parsed)
    with pytest.raises(AssertionError):
        test_no_secret_in_env_or_arg(parsed)
