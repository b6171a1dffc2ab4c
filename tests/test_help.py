"""`--help` as a new user reads it: the top level names the three reference kinds
and the exit codes; each subcommand's help opens with a one-line description.
Real binary."""

from __future__ import annotations

import pytest

from conftest import base_env, run


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
