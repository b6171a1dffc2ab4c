"""The audit reads an image's .env files with python-dotenv, the parser `--env-file` and the dev proxy use:
what it vouches for is what those would load (issue #21: one dotenv parser, not three)."""

from __future__ import annotations

import io

import pytest
from dotenv import dotenv_values

from injector.audit.detect import parse_dotenv

AWKWARD = [
    'export API_TOKEN="abc def" # trailing comment\n',
    'MULTI="first line\nsecond line"\nNEXT=plain\n',  # a quoted value spans lines
    "QUOTED='it''s # not a comment'\nEMPTY=\n",
    "not a statement at all\nGOOD=value\n",  # a line python-dotenv cannot parse
]


@pytest.mark.parametrize("text", AWKWARD)
def test_the_audit_sees_what_python_dotenv_loads(text: str) -> None:
    loaded = {k: v for k, v in dotenv_values(stream=io.StringIO(text), interpolate=False).items() if v is not None}
    assert dict(parse_dotenv(text)) == loaded


def test_a_line_dotenv_cannot_parse_writes_nothing_to_the_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    assert dict(parse_dotenv("\x1b]0;owned\x07 nonsense\nGOOD=value\n")) == {"GOOD": "value"}
    out, err = capfd.readouterr()
    assert out == "" and err == ""
