"""Bad input everywhere (hypothesis): arbitrary text never crashes, never yields a
partial or invalid value, and always ends in one clear line with exit 78 or 69.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import TestProxy, base_env, run
from injector.errors import BrokenAnswerError, ConfigError
from injector.settings.envfiles import load_env_files
from injector.settings.references import SCHEMES, parse_duration, parse_reference
from injector.sources.proxy import _credentials_from
from injector.sources.transport import Response

text_after_scheme = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="abcXYZ019._/-?&=#,:%* ", max_size=60),
)
references = st.builds(lambda scheme, rest: scheme + rest, st.sampled_from(SCHEMES), text_after_scheme)


@given(references)
def test_reference_parsing_never_crashes(value: str) -> None:
    try:
        reference = parse_reference("VAR", value)
    except ConfigError as exc:
        assert exc.message.startswith("VAR: ") and "\n" not in exc.message
        return
    assert reference.name == "VAR"
    if reference.scheme != "vault-token":
        assert re.fullmatch(r"[A-Za-z0-9._/-]+", reference.secret)
        assert not reference.secret.startswith("/") and not reference.secret.endswith("/")
    assert reference.ttl is None or reference.ttl > 0


@given(st.text(max_size=20))
def test_duration_is_a_positive_integer_or_a_value_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError:
        return
    assert isinstance(seconds, int) and seconds > 0


@given(st.text(max_size=400))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_dotenv_loading_never_crashes(content: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".env", delete=False, encoding="utf-8") as handle:
        handle.write(content)
    try:
        environ: dict[str, str] = {}
        try:
            origins = load_env_files([handle.name], environ)
        except ConfigError as exc:
            assert "\n" not in exc.message
            return
        assert set(origins) == set(environ)
        for name, value in environ.items():
            assert "\0" not in name + value and "=" not in name and name
    finally:
        os.unlink(handle.name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
credential_items = st.fixed_dictionaries(
    {"name": st.sampled_from(["A", "B", "C", 7]), "value": json_values | st.text(max_size=10), "ttl": json_values},
    optional={"lease_id": json_values},
)


@given(st.dictionaries(st.sampled_from(["credentials", "other"]), st.lists(credential_items, max_size=4) | json_values))
def test_answer_validation_delivers_only_valid_values(data: dict) -> None:
    try:
        credentials = _credentials_from(data, ["A", "B"], 0.0)
    except BrokenAnswerError:
        return
    assert [c.name for c in credentials] == ["A", "B"]
    for credential in credentials:
        assert isinstance(credential.value, str) and credential.value and "\0" not in credential.value
        assert isinstance(credential.ttl, int) and not isinstance(credential.ttl, bool) and credential.ttl > 0


@given(st.binary(max_size=200))
def test_any_body_is_json_or_a_broken_answer(body: bytes) -> None:
    try:
        Response(200, body, None).json()
    except BrokenAnswerError:
        pass


@given(references)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_binary_answers_any_reference_with_one_line_and_a_known_code(proxy: TestProxy, value: str) -> None:
    if "\0" in value:
        return  # cannot be in an environment at all
    env = base_env(proxy, K=value, STRONGHOLD_VAULT_ADDR="http://127.0.0.1:1", BAO_TOKEN="t")
    result = run(["--startup-timeout", "0.5", "--", "true"], env)
    assert result.code in (0, 69, 77, 78), result.stderr
    assert "Traceback" not in result.stderr
    if result.code != 0:
        errors = [line for line in result.stderr.splitlines() if ": error: " in line]
        assert len(errors) == 1, result.stderr


def test_property_runs_see_real_failures() -> None:
    """The strategies reach both outcomes, or the properties above would prove little."""
    outcomes = set()
    for value in ("stronghold://ok/path", "stronghold://bad path", "vault://x#", "vault-token://?policies=a"):
        try:
            parse_reference("V", value)
            outcomes.add("ok")
        except ConfigError:
            outcomes.add("error")
    assert outcomes == {"ok", "error"}
    assert json.loads(Response(200, b"{}", None).body) == {}
