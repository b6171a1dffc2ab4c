"""One table of options (injector/settings/options.py) drives --help, the settings and the README's tables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import base_env, run
from injector.settings.options import OPTIONS, Option
from injector.settings.settings import build_settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
TABLE_ROWS = [line for line in README.splitlines() if line.startswith("| ")]


def name(option: Option) -> str:
    return option.flag or option.env


def rows_naming(option: Option) -> list[str]:
    names = [name for name in (option.flag, option.env) if name]
    return [row for row in TABLE_ROWS if any(re.search(rf"`{re.escape(name)}[` ]", row) for name in names)]


@pytest.mark.parametrize("option", OPTIONS, ids=name)
def test_the_readme_documents_every_option_with_its_twin_and_default(option: Option) -> None:
    rows = rows_naming(option)
    assert rows, f"no README table row names {option.flag or option.env}"
    row = rows[0]
    for name in (option.flag, option.env):
        assert name is None or name in row, f"{name} missing from the README row: {row}"
    assert option.shown_default is None or option.shown_default in row, f"default {option.shown_default}: {row}"


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
