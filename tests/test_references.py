"""Reference and duration parsing (SPEC section 2): pure logic, then the real binary's one
line for a value that is almost a reference (a look-alike scheme, a vault:// without its
field), while ordinary URLs and prose pass through unchanged."""

from __future__ import annotations

import pytest

from conftest import base_env, one_error, run
from injector.errors import ConfigError
from injector.settings.references import (
    Reference,
    collect_references,
    misspelt_scheme,
    parse_duration,
    parse_reference,
    passes_to_child,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("900", 900), ("90s", 90), ("15m", 900), ("2h", 7200), ("1", 1)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-5", "1.5m", "15 m", "1d", "m", "15M", "1e3", "९"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_full_reference() -> None:
    ref = parse_reference("STRIPE_KEY", "stronghold://stripe/live?scope=charges:write,refunds:read&ttl=15m")
    assert ref == Reference("STRIPE_KEY", "stripe/live", ("charges:write", "refunds:read"), 900)
    assert not ref.is_file and ref.target == "STRIPE_KEY"


def test_file_reference_targets_name_without_suffix() -> None:
    ref = parse_reference("DB_PASSWORD_FILE", "stronghold://postgres/app")
    assert ref.is_file and ref.target == "DB_PASSWORD" and ref.scopes == () and ref.ttl is None


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("stronghold://", "empty secret"),
        ("stronghold:///leading", "start or end"),
        ("stronghold://trailing/", "start or end"),
        ("stronghold://sp ace", "only"),
        ("stronghold://a?colour=red", "unknown query key 'colour'"),
        ("stronghold://a?ttl=soon", "bad duration"),
        ("stronghold://a?ttl=0", "more than zero"),
        ("stronghold://a?scope=", "bad scope"),
        ("stronghold://a?scope=a,,b", "bad scope"),
        ("stronghold://a?ttl=1&ttl=2", "twice"),
        ("stronghold://a?ttl", "no value"),
        ("stronghold://a#field", "fragment"),
    ],
)
def test_bad_references_name_the_variable(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_reference("MY_VAR", value)
    assert caught.value.message.startswith("MY_VAR: ")
    assert fragment in caught.value.message


def test_file_reference_needs_a_plain_name() -> None:
    with pytest.raises(ConfigError, match="_FILE"):
        parse_reference("_FILE", "stronghold://a")


def test_collect_skips_configuration_and_plain_values() -> None:
    refs = collect_references(
        {
            "STRONGHOLD_PROXY_URL": "stronghold://not-a-reference",
            "PLAIN": "hello",
            "B_FILE": "stronghold://b",
            "A": "stronghold://a",
        }
    )
    assert [r.name for r in refs] == ["A", "B_FILE"]


@pytest.mark.parametrize(("env_value", "file_value"), [("stronghold://a", "x"), ("x", "stronghold://a")])
def test_name_and_name_file_together_is_an_error(env_value: str, file_value: str) -> None:
    with pytest.raises(ConfigError, match="KEY and KEY_FILE are both set"):
        collect_references({"KEY": env_value, "KEY_FILE": file_value})


def test_error_names_the_env_file() -> None:
    with pytest.raises(ConfigError, match=r"KEY: unknown query key 'x'.*\(in /some/.env\)"):
        collect_references({"KEY": "stronghold://a?x=1"}, {"KEY": "/some/.env"})


@pytest.mark.parametrize(
    ("value", "meant"),
    [
        ("strongold://a", "stronghold://"),
        ("stronghodl://a", "stronghold://"),  # two letters swapped
        ("stronghold:/a", "stronghold://"),
        ("stronghold:a", "stronghold://"),
        ("STRONGHOLD://a", "stronghold://"),
        ("vault:/secret/data/a#k", "vault://"),
        ("Vault://secret/data/a#k", "vault://"),
        ("valut://secret#k", "vault://"),
        ("vault_token://?policies=a", "vault-token://"),
        ("vault-token:?policies=a", "vault-token://"),
    ],
)
def test_look_alike_schemes_are_recognised(value: str, meant: str) -> None:
    assert misspelt_scheme(value) == meant
    with pytest.raises(ConfigError) as caught:
        collect_references({"KEY": value}, {"KEY": "/p/.env"})
    assert caught.value.message.startswith("KEY: ") and meant in caught.value.message
    assert "/p/.env" in caught.value.message


@pytest.mark.parametrize(
    "value",
    [
        "https://stronghold.example/",
        "http://vault.internal:8200",
        "postgres://user@db/app",
        "redis://cache:6379",
        "s3://bucket/key",
        "salt://top.sls",
        "Vault: the big one",
        "stronghold",
        "x:y",
        "C:\\Users",
        "",
        "stronghold://fine",
    ],
)
def test_ordinary_values_are_not_look_alikes(value: str) -> None:
    assert misspelt_scheme(value) is None


def test_default_policy_option() -> None:
    ref = parse_reference("APP_TOKEN", "vault-token://?policies=a,b&default_policy=true&ttl=1h")
    assert ref.default_policy and ref.scopes == ("a", "b") and ref.ttl == 3600
    assert ref.uri == "vault-token://?policies=a,b&default_policy=true"
    assert not parse_reference("T", "vault-token://?policies=a").default_policy


def test_child_gets_the_address_ca_and_namespace_only() -> None:
    passed = ["BAO_ADDR", "VAULT_ADDR", "BAO_CACERT", "VAULT_CACERT", "BAO_NAMESPACE", "VAULT_NAMESPACE", "HOME"]
    removed = ["BAO_TOKEN", "VAULT_TOKEN", "VAULT_ROLE_ID", "STRONGHOLD_VAULT_ADDR", "STRONGHOLD_PROXY_URL"]
    assert all(passes_to_child(name) for name in passed)
    assert not any(passes_to_child(name) for name in removed)


def test_references_remember_their_env_file() -> None:
    (ref,) = collect_references({"KEY": "stronghold://a"}, {"KEY": "/p/.env"})
    assert ref.origin == "/p/.env"


@pytest.mark.parametrize(
    ("value", "right"),
    [
        ("strongold://stripe/live", "stronghold://"),
        ("stronghold:/stripe/live", "stronghold://"),
        ("Stronghold://stripe/live", "stronghold://"),
        ("vault:/secret/data/app#KEY", "vault://"),
        ("vault-token:?policies=a", "vault-token://"),
    ],
)
def test_look_alike_reference_is_78_naming_the_variable_and_the_spelling(tmp_path, value: str, right: str) -> None:
    marker = tmp_path / "ran"
    result = run(["--", "touch", str(marker)], base_env(STRIPE_KEY=value, OTHER="https://example.com/"))
    assert result.code == 78
    line = one_error(result)
    assert "STRIPE_KEY" in line and right in line
    assert "stripe/live" not in line and "secret/data" not in line, "only the scheme is echoed"
    assert not marker.exists()


def test_vault_reference_without_a_field_says_how_to_write_it() -> None:
    result = run(["--", "true"], base_env(DB_PASSWORD="vault://secret/data/app"))
    assert result.code == 78
    line = one_error(result)
    assert "DB_PASSWORD" in line and "#<field>" in line


def test_ordinary_urls_and_prose_pass_through_unchanged() -> None:
    values = {"A": "https://stronghold.example/", "B": "postgres://u@h/db", "C": "Vault: the big one", "D": "x:y"}
    result = run(["--", "env"], base_env(**values))
    assert result.code == 0, result.stderr
    for name, value in values.items():
        assert f"{name}={value}" in result.stdout
