"""The literal gates in front of detect-secrets' plugins (injector/audit/detect.py, PLUGIN_NEEDS).

A plugin is skipped on a line holding none of its literals; these tests prove,
plugin by plugin, that a line the plugin itself matches always passes its
gate (so the gate never costs a finding), and that KeywordDetector's gate is
only used with the word list it was derived from.  Pure logic against the
installed detect-secrets.
"""

from __future__ import annotations

import pytest

from injector.audit import detect

SAMPLES = {  # a line each plugin's own patterns match (case variants where its pattern ignores case)
    "AWSKeyDetector": ["id AKIA" + "ABCDEFGHIJKLMNOP", 'AWS_SECRET_KEY = "' + "A1b2" * 10 + '"'],
    "AzureStorageKeyDetector": ["DefaultEndpointsProtocol=https;AccountKey=" + "a1B2" * 22],
    "BasicAuthDetector": ["url = https://deploy:s3cretValue@git.internal/x.git"],
    "GitHubTokenDetector": ["token ghp_" + "a1B2" * 9, "gho_" + "Zz9y" * 9],
    "GitLabTokenDetector": ["glpat-" + "a1B2c3D4e5" * 2, "GR1348941" + "x1Y2z3W4v5" * 2],
    "JwtTokenDetector": ["auth eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"],
    "MailchimpDetector": ["0123456789abcdef" * 2 + "-us12"],
    "NpmDetector": ["//registry.npmjs.org/:_authToken=npm_" + "a1B2" * 9],
    "OpenAIDetector": ["sk-" + "a1B2" * 5 + "T3BlbkFJ" + "c3D4" * 5],
    "PypiTokenDetector": ["pypi-AgEIcHlwaS5vcmc" + "a1B2c3D4e5" * 7],
    "SendGridDetector": ["SG." + "a1B2c3D4e5F" * 2 + "." + "g6H7i8J9k0L" * 3 + "m1n2o3p4q5"[:10]],
    "SlackDetector": ["XOXB-1234567890-abcdef", "https://HOOKS.SLACK.COM/services/T0001/B0002/abc3"],
    "SquareOAuthDetector": ["sq0csp-" + "a1B2c3D4e5" * 4 + "f6G"],
    "StripeDetector": ["sk_live_" + "a1B2c3D4" * 3, "rk_live_" + "Z9y8X7w6" * 3],
    "TwilioKeyDetector": ["AC" + "0123456789abcdef" * 2, "SK" + "fedcba9876543210" * 2],
    "KeywordDetector": ['PASSWORD = "hunter2isNotGood"', 'db_Pass = "x9y8z7w6v5"', "Secret: 'qwertyuiop12'"],
}


@pytest.fixture(scope="module")
def detector() -> detect.Detector:
    return detect.Detector()


@pytest.mark.parametrize("plugin", sorted(SAMPLES))
def test_a_line_the_plugin_matches_passes_its_gate(detector: detect.Detector, plugin: str) -> None:
    found = dict(detector._plugins)[plugin]
    for line in SAMPLES[plugin]:
        if plugin == "KeywordDetector":
            module = detector._keyword_regexes
            matched = list(found.analyze_string(line, module.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP))  # type: ignore[attr-defined]
        else:
            matched = list(found.analyze_string(line))  # type: ignore[attr-defined]
        assert matched, (plugin, line)  # the sample is real for this plugin
        assert detect._may_match(plugin, line, line.lower(), detector._keyword_gate), (plugin, line)


def test_gates_skip_lines_without_the_literals_and_cover_only_real_plugins(detector: detect.Detector) -> None:
    assert set(detect.PLUGIN_NEEDS) <= set(detect.PLUGINS)
    assert {name for name, _ in detector._plugins} == set(detect.PLUGINS)  # every plugin we name exists
    line = "nothing here but words = 12"
    for plugin in detect.PLUGIN_NEEDS:
        assert not detect._may_match(plugin, line, line.lower(), True), plugin
    assert not detect._may_match("KeywordDetector", line, line.lower(), True)
    assert detect._may_match("KeywordDetector", line, line.lower(), False)  # an unknown word list: no gate


def test_keyword_gate_matches_the_installed_word_list(detector: detect.Detector) -> None:
    """If detect-secrets changes KeywordDetector's words, the gate turns itself off (and this test says so)."""
    assert detector._keyword_gate
    for word in detect.KEYWORD_DENYLIST:
        plain = word.replace("_?", "_").replace("ñ", "n")
        assert any(literal in plain for literal, _ in detect.KEYWORD_NEEDS), word
