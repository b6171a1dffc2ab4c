"""One table of options (injector/settings/options.py) drives --help, the settings and docs/configuration.md.

The page's tables are generated from it by scripts/gen-config-docs; these tests
check the page is current and documents every option with its twin and default.
--log-level is taken before or after the subcommand.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TestProxy, base_env, run
from injector.settings.options import OPTIONS, Option
from injector.settings.settings import build_settings

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
TABLE_ROWS = [line for line in PAGE.read_text().splitlines() if line.startswith("| ")]
GENERATOR = ROOT / "scripts" / "gen-config-docs"


def name(option: Option) -> str:
    return option.flag or option.env


def rows_naming(option: Option) -> list[str]:
    names = [name for name in (option.flag, option.env) if name]
    return [row for row in TABLE_ROWS if any(re.search(rf"`{re.escape(name)}[` ]", row) for name in names)]


@pytest.mark.parametrize("option", OPTIONS, ids=name)
def test_the_configuration_page_documents_every_option_with_its_twin_and_default(option: Option) -> None:
    rows = rows_naming(option)
    assert rows, f"no docs/configuration.md table row names {option.flag or option.env}"
    row = rows[0]
    for name in (option.flag, option.env):
        assert name is None or name in row, f"{name} missing from the docs/configuration.md row: {row}"
    assert option.shown_default is None or option.shown_default in row, f"default {option.shown_default}: {row}"


def test_the_configuration_page_is_what_the_generator_writes() -> None:
    done = subprocess.run([sys.executable, str(GENERATOR), "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_check_catches_a_stale_page(tmp_path) -> None:
    """A page missing one option's row (an option added without regenerating) fails --check."""
    stale = tmp_path / "configuration.md"
    shutil.copy(PAGE, stale)
    row = rows_naming(OPTIONS[-1])[0]
    stale.write_text(stale.read_text().replace(row + "\n", ""))
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--check", "--page", str(stale)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "run python scripts/gen-config-docs" in done.stderr
    assert row in done.stdout, "the difference shows the missing row"
    subprocess.run([sys.executable, str(GENERATOR), "--page", str(stale)], check=True, timeout=60)
    assert stale.read_text() == PAGE.read_text(), "regenerating restores it"


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.flag], ids=lambda option: option.flag)
def test_help_shows_every_flag_with_its_twin(option: Option) -> None:
    args = ["sidecar", "--help"] if option.scope == "refresh" else ["--help"]
    text = " ".join(run(args, base_env()).stdout.split())  # argparse wraps lines
    assert option.flag in text
    assert option.env is None or f"[{option.env}]" in text


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.env and o.kind in ("text", "choice")], ids=name)
def test_each_twin_sets_its_setting_and_the_flag_wins(option: Option) -> None:
    value = option.choices[-1] if option.choices else "/some/value"
    settings = build_settings({}, {option.env: value})
    attribute = {"proxy": "proxy_url"}.get(option.dest, option.dest)
    assert getattr(settings, attribute) == value
    if option.flag:
        flagged = option.choices[0] if option.choices else "/from/the/flag"
        assert getattr(build_settings({option.dest: flagged}, {option.env: value}), attribute) == flagged


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.default is not None], ids=name)
def test_defaults_come_from_the_table(option: Option) -> None:
    settings = build_settings({}, {})
    assert getattr(settings, option.dest) == option.default


RUN_MODE = [o for o in OPTIONS if o.flag and o.group not in ("logging",)]


@pytest.mark.parametrize("option", RUN_MODE, ids=name)
def test_every_run_mode_option_has_an_environment_twin(option: Option) -> None:
    """An image whose entrypoint ends in `--` is tuned with -e STRONGHOLD_...: no flag without a twin."""
    assert option.env and option.env.startswith("STRONGHOLD_"), f"{option.flag} has no environment twin"


SIGRTMIN = int(__import__("signal").SIGRTMIN)
# twin -> (value, setting, what the setting becomes)
TWIN_VALUES = {
    "STRONGHOLD_STARTUP_TIMEOUT": ("2.5", "startup_timeout", 2.5),
    "STRONGHOLD_GRACE": ("0", "grace", 0.0),
    "STRONGHOLD_NO_REFRESH": ("true", "no_refresh", True),
    "STRONGHOLD_MASK_OUTPUT": ("1", "mask_output", True),
    "STRONGHOLD_SIGNAL_GROUP": ("yes", "signal_group", True),
    "STRONGHOLD_ALLOW_DISK": ("on", "allow_disk", True),
    "STRONGHOLD_INSECURE_HTTP": ("1", "insecure_http", True),
    "STRONGHOLD_REMOVE_BOOTSTRAP_TOKEN_FILE": ("1", "remove_bootstrap_token_file", True),
    "STRONGHOLD_ON_EXPIRY": ("exit", "on_expiry", "exit"),
    "STRONGHOLD_REWRITE_SIGNAL": ("TERM:QUIT, RTMIN+3:0", "rewrite_signals", ((15, 3), (SIGRTMIN + 3, 0))),
    "STRONGHOLD_REMAP_EXIT": ("143:0,1:2", "remap_exit", ((143, 0), (1, 2))),
}


@pytest.mark.parametrize("twin", sorted(TWIN_VALUES))
def test_each_new_twin_sets_its_setting(twin: str) -> None:
    value, attribute, expected = TWIN_VALUES[twin]
    assert getattr(build_settings({}, {twin: value}), attribute) == expected
    assert str(build_settings({}, {"STRONGHOLD_ON_ROTATE": "signal:RTMIN+3"}).on_rotate) == "signal:SIGRTMIN+3"


@pytest.mark.parametrize(
    ("twin", "value"),
    [
        ("STRONGHOLD_STARTUP_TIMEOUT", "soon"),
        ("STRONGHOLD_NO_REFRESH", "maybe"),
        ("STRONGHOLD_ON_ROTATE", "signal:NOPE"),
        ("STRONGHOLD_REWRITE_SIGNAL", "TERM"),
        ("STRONGHOLD_ON_EXPIRY", "later"),
    ],
)
def test_a_bad_twin_value_is_78_naming_the_variable(twin: str, value: str) -> None:
    result = run(["--", "true"], base_env(**{twin: value}))
    assert result.code == 78, result.stderr
    assert twin in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_advice_to_raise_the_startup_timeout_can_be_followed_through_the_environment() -> None:
    """The advice "raise --startup-timeout" works in an image whose entrypoint ends in `--`."""
    from conftest import free_port

    env = base_env(STRONGHOLD_PROXY_URL=f"http://127.0.0.1:{free_port()}", STRONGHOLD_BOOTSTRAP_TOKEN="t" * 20)
    env.update(A="stronghold://stripe/live", STRONGHOLD_STARTUP_TIMEOUT="0.5")
    result = run(["--", "true"], env)
    assert result.code == 69, result.stderr
    assert "--startup-timeout 0.5" in result.stderr


def test_an_env_file_cannot_loosen_a_safeguard(tmp_path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("STRONGHOLD_INSECURE_HTTP=1\n")
    result = run(["--env-file", str(env_file), "--", "true"], base_env())
    assert result.code == 78 and "STRONGHOLD_INSECURE_HTTP" in result.stderr, result.stderr


def test_the_env_file_twin_loads_the_files(tmp_path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("GREETING=hello\n")
    result = run(["--", "sh", "-c", 'echo "$GREETING"'], base_env(STRONGHOLD_ENV_FILE=str(env_file)))
    assert result.code == 0 and result.stdout.strip() == "hello", result.stderr


def test_the_table_is_the_only_place_a_default_is_written() -> None:
    """Settings starts every row at the table's default and repeats none of them as a class attribute
    (a copy that can drift: issue #21 found Settings and build_settings repeating the table)."""
    from injector.settings.settings import SETTING_OF, SETTINGS_OPTIONS, Settings

    fresh = Settings()
    for option in SETTINGS_OPTIONS:
        name = SETTING_OF.get(option.dest, option.dest)
        assert name not in Settings.__dict__, f"Settings.{name} repeats the options table's default"
        expected = (
            False
            if option.kind == "switch"
            else ()
            if option.kind in ("append", "rewrite_signal", "remap_exit")
            else option.default
        )
        assert getattr(fresh, name) == expected, name
    assert build_settings({}, {}).startup_timeout == fresh.startup_timeout


def test_log_level_after_a_subcommand_is_accepted(proxy: TestProxy) -> None:
    result = run(["check", "--log-level", "debug"], base_env(proxy, KEY="stronghold://stripe/live"))
    assert result.code == 0, result.stderr
    assert ": debug: " in result.stderr


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
