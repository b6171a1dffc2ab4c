"""The literal gates in front of detect-secrets' plugins (injector/audit/detect.py, TRIGGERS).

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
    assert set(detect.TRIGGERS) <= set(detect.PLUGINS) | set(detect.OUR_RULES)
    assert {name for name, _ in detector._plugins} == set(detect.PLUGINS)  # every plugin we name exists
    line = "nothing here but words = 12"
    for plugin in set(detect.TRIGGERS) - set(detect.OUR_RULES):
        assert not detect._may_match(plugin, line, line.lower(), True), plugin
    assert not detect._may_match("KeywordDetector", line, line.lower(), True)
    assert detect._may_match("KeywordDetector", line, line.lower(), False)  # an unknown word list: no gate


def test_keyword_gate_matches_the_installed_word_list(detector: detect.Detector) -> None:
    """If detect-secrets changes KeywordDetector's words, the gate turns itself off (and this test says so)."""
    assert detector._keyword_gate
    for word in detect.KEYWORD_DENYLIST:
        plain = word.replace("_?", "_").replace("ñ", "n")
        assert any(literal in plain for literal, _ in detect.TRIGGERS["KeywordDetector"]), word


# -- the whole secret, for every plugin (issue #20, item 4) -------------------------------------------

GH = "ghp_Zq8vLm3Nx7Rt2Wp5Ks9Hd4Fj6Gb1Cy0Ea3Ui"
GHO = "gho_Wm2Qz8Rk4Nv7Lp1Xs6Td9Fh3Jb5Gc0Ya2Uex"
PYPI = "pypi-AgEIcHlwaS5vcmc" + "Zq8vLm3Nx7" * 7
WHOLE = {  # plugin -> (a line, the exact secret in it that the fingerprint must be of)
    "AWSKeyDetector": [("id AKIAQ3EGRW7YV2XKPL5M here", "AKIAQ3EGRW7YV2XKPL5M"),
                       ('aws_secret_key = "' + "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" + '"',
                        "Wq7Zr2Kx9Lm4Np6Bv3Cs8Dt1Fy5Gh0Jk2Ma7Qe9R")],
    "AzureStorageKeyDetector": [("DefaultEndpointsProtocol=https;AccountKey=" + "Zk3q" * 22 + ";x=1", "Zk3q" * 22)],
    "BasicAuthDetector": [("url = https://deploy:Vq8zN2kLx7Rw@git.internal/x.git", "Vq8zN2kLx7Rw")],
    "DiscordBotTokenDetector": [("bot MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs x",
                                 "MTk4NjIyNDgzNDcxOTI1MjQ4.Cl2FMQ.ZnCjm1XVW7vRze4b7Cq4se7kKWs")],
    "GitHubTokenDetector": [("GITHUB_TOKEN=" + GH, GH), (f"x {GHO} end", GHO)],
    "GitLabTokenDetector": [("CI=glpat-Xr7Kq2Zm9Wn4Lv8Pt3Bs", "glpat-Xr7Kq2Zm9Wn4Lv8Pt3Bs"),
                            ("t glcbt-a1_Qm8Zr2Kx7Nw4Lp9Vt3Bs end", "glcbt-a1_Qm8Zr2Kx7Nw4Lp9Vt3Bs"),
                            ("r GR1348941Zq8vLm3Nx7Rt2Wp5Ks9H end", "GR1348941Zq8vLm3Nx7Rt2Wp5Ks9H")],
    "JwtTokenDetector": [("auth eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl end",
                          "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl")],
    "MailchimpDetector": [("k 9f3a1c7e5b2d8f4a6c0e1b3d5f7a9c2e-us12 x", "9f3a1c7e5b2d8f4a6c0e1b3d5f7a9c2e-us12")],
    "NpmDetector": [("//registry.npmjs.org/:_authToken=npm_Zq8vLm3Nx7Rt2Wp5Ks9Hd4Fj6Gb1Cy0Ea3U # ci",
                     "npm_Zq8vLm3Nx7Rt2Wp5Ks9Hd4Fj6Gb1Cy0Ea3U")],
    "OpenAIDetector": [("k 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 x",
                        "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")],
    "PypiTokenDetector": [(f"p {PYPI} x", PYPI)],
    "SendGridDetector": [("k 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 x",
                          "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")],
    "SlackDetector": [("t xoxb-1234567890-9876543210-zq8vlm3nx7 x", "xoxb-1234567890-9876543210-zq8vlm3nx7")],
    "SquareOAuthDetector": [("s sq0csp-Zq8vLm3Nx7Rt2Wp5Ks9Hd4Fj6Gb1Cy0Ea3UiQw7Zr2K x",
                             "sq0csp-Zq8vLm3Nx7Rt2Wp5Ks9Hd4Fj6Gb1Cy0Ea3UiQw7Zr2K")],
    "StripeDetector": [("k sk_live_Zq8vLm3Nx7Rt2Wp5Ks9Hd4Fj x", "sk_live_Zq8vLm3Nx7Rt2Wp5Ks9Hd4Fj")],
    "TwilioKeyDetector": [("a AC9f3a1c7e5b2d8f4a6c0e1b3d5f7a9c2e x", "AC9f3a1c7e5b2d8f4a6c0e1b3d5f7a9c2e")],
    "KeywordDetector": [('DB_PASSWORD = "Vq8zN2kLx7Rw4Tp"', "Vq8zN2kLx7Rw4Tp")],
}  # fmt: skip


def test_every_plugin_has_a_whole_value_sample() -> None:
    assert set(WHOLE) == set(detect.PLUGINS)


@pytest.mark.parametrize("plugin", sorted(WHOLE))
def test_the_fingerprint_is_of_the_whole_secret_on_a_line_and_in_a_file(detector: detect.Detector, plugin: str) -> None:
    from injector.audit.findings import Finding, fingerprint

    for line, secret in WHOLE[plugin]:
        on_line = {(rule, value) for rule, _, value in detector.scan_line(line, filename="")}
        assert (f"detect-secrets/{plugin}", secret) in on_line, (plugin, on_line)
        in_file = [
            value for _, _, value in detector.scan_text(f"# config\n{line}\n".encode(), path="/app/settings.txt")
        ]
        if plugin != "DiscordBotTokenDetector":  # no literal to trigger on: not looked for in files (docs/audit.md)
            assert secret in in_file, (plugin, in_file)  # the pre-filter picks the line (one table); the value whole
        assert Finding.of(secret, where="file", rule=plugin).fingerprint == fingerprint(secret)


@pytest.mark.parametrize("plugin", sorted(SAMPLES))
def test_a_line_the_plugin_matches_is_picked_by_the_file_pre_filter(plugin: str) -> None:
    """The pre-filter and the gates read the one table: a plugin's line always reaches the plugin."""
    for line in SAMPLES[plugin]:
        data = f"nothing here\n{line}\nnor here\n".encode()
        lines = list(detect._candidate_lines(data, detect._line_starts(data, keywords=True), keywords=True))
        assert line in lines, (plugin, line)


# -- private keys in linear time, and a time budget per window (items 6) ---------------------------------


def test_pem_blocks_find_what_the_old_pattern_found() -> None:
    import re

    old = re.compile(
        r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----.*?-----END \1PRIVATE KEY(?: BLOCK)?-----", re.DOTALL
    )
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" * 4
    texts = [
        f"x\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\ny",
        f"-----BEGIN PRIVATE KEY-----\n-----BEGIN EC PRIVATE KEY-----\n{body}\n-----END EC PRIVATE KEY-----\n"
        f"-----END PRIVATE KEY-----\n-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nabc\n-----END PGP PRIVATE KEY BLOCK-----",
        "-----BEGIN A PRIVATE KEY-----\n-----END B PRIVATE KEY-----\n",
    ]
    for text in texts:
        assert list(detect.pem_blocks(text)) == [m.group(0) for m in old.finditer(text)], text


def test_a_window_of_begin_lines_is_linear() -> None:
    """4 MiB of BEGIN lines (with and without an END far away) took the old pattern about 70 minutes."""
    import time

    lines = "".join(f"-----BEGIN K{i % 5000} PRIVATE KEY-----\n" for i in range(4 * 1024 * 1024 // 32))
    text = lines + "-----END K1 PRIVATE KEY-----\n"
    started = time.monotonic()
    assert len(list(detect.pem_blocks(text))) == 1
    assert list(detect.Detector().scan_text(lines.encode(), path="/app/key.pem")) == []
    assert time.monotonic() - started < 120  # a deadline for the bug (quadratic), not a speed figure


def test_a_window_past_its_time_budget_refuses_the_target() -> None:
    from injector.audit.errors import BadImageError

    slow = detect.Detector(window_seconds=-1.0)  # every window is already past its budget
    data = b"".join(b'api_key = "Vq8zN2kLx7Rw4Tp%d"\n' % i for i in range(100))
    with pytest.raises(BadImageError, match="refusing to call it clean"):
        list(slow.scan_text(data, path="/app/settings.txt"))
