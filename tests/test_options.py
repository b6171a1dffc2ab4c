"""One table of options (injector/options.py) drives --help, the settings and docs/configuration.md.

The page's tables are generated from it by scripts/gen-config-docs; these tests
check the page is current and documents every option with its twin and default.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env, run
from injector.config import build_settings
from injector.options import OPTIONS, Option

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
