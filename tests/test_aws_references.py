"""aws-sm://, aws-ssm://, aws-sts:// parsing (SPEC 12) and the AWS scrubbing rule: pure logic."""

from __future__ import annotations

import pytest

from injector.errors import ConfigError
from injector.settings.aws_references import region_of
from injector.settings.references import collect_references, misspelt_scheme, parse_reference, passes_to_child

ROLE = "arn:aws:iam::123456789012:role/app"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf"


def test_secret_by_name_with_stage_and_key() -> None:
    ref = parse_reference("DB_PASSWORD_FILE", "aws-sm://prod/db+x=y.z@w?version-stage=AWSPREVIOUS#password")
    assert (ref.scheme, ref.secret, ref.field, ref.extra) == (
        "aws-sm",
        "prod/db+x=y.z@w",
        "password",
        (("version-stage", "AWSPREVIOUS"),),
    )
    assert ref.is_file and ref.uri == "aws-sm://prod/db+x=y.z@w#password"


def test_secret_arn_region_wins() -> None:
    ref = parse_reference("X", f"aws-sm://{SECRET_ARN}")
    assert region_of(ref) == "eu-west-1"
    assert region_of(parse_reference("X", "aws-sm://prod/db")) is None
    assert (
        region_of(parse_reference("X", "aws-ssm://arn:aws:ssm:ap-south-1:123456789012:parameter/a/b")) == "ap-south-1"
    )


def test_parameter_names_keep_their_leading_slash() -> None:
    assert parse_reference("X", "aws-ssm:///prod/db/password").secret == "/prod/db/password"
    assert parse_reference("X", "aws-ssm://plain").secret == "plain"
    assert parse_reference("X", "aws-ssm://plain?version=3").extra == (("version", "3"),)


def test_sts_session_defaults() -> None:
    ref = parse_reference("AWS_SESSION_TOKEN", f"aws-sts://{ROLE}#session-token")
    assert (ref.ttl, ref.scopes, ref.field) == (900, (), "session-token")
    assert dict(ref.extra)["session-name"] == "stronghold-init"
    full = parse_reference(
        "K",
        f"aws-sts://{ROLE}?ttl=1h&policy-arn=arn:aws:iam::aws:policy/A,arn:aws:iam::123456789012:policy/B"
        "&session-name=web#access-key-id",
    )
    assert full.ttl == 3600 and len(full.scopes) == 2 and dict(full.extra)["session-name"] == "web"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("aws-sm://", "empty secret id"),
        ("aws-sm://a b", "may hold only"),
        ("aws-sm://a?version=1", "unknown query key 'version'"),
        ("aws-sm://a?version-stage=A&version-id=" + "0" * 32, "not both"),
        ("aws-sm://a?version-id=short", "bad version-id"),
        ("aws-sm://a#", "json-key"),
        ("aws-sm://arn:aws:secretsmanager:nowhere:1:secret:x", "ARN"),
        ("aws-ssm://", "empty parameter"),
        ("aws-ssm://a#b", "no #fragment"),
        ("aws-ssm://a//b", "may hold only"),
        ("aws-ssm://a?version=x", "number"),
        (f"aws-sts://{ROLE}", "#<field>"),
        (f"aws-sts://{ROLE}#password", "#<field>"),
        ("aws-sts://arn:aws:iam::123456789012:user/u#session-token", "role ARN"),
        (f"aws-sts://{ROLE}?ttl=5m#session-token", "between 15m and 12h"),
        (f"aws-sts://{ROLE}?ttl=13h#session-token", "between 15m and 12h"),
        (f"aws-sts://{ROLE}?policy-arn=ReadOnly#session-token", "policy-arn"),
        (f"aws-sts://{ROLE}?session-name=a#session-token", "session-name"),
        (f"aws-sts://{ROLE}?scope=x#session-token", "unknown query key"),
    ],
)
def test_bad_aws_references_name_the_variable(value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_reference("MY_VAR", value)
    assert caught.value.message.startswith("MY_VAR: ") and fragment in caught.value.message


@pytest.mark.parametrize("value", ["aws-sn://x", "Aws-sm://x", "aws-ssm:/x", "aws_sts://x", "AWS-SSM://x"])
def test_misspelt_aws_schemes_are_caught(value: str) -> None:
    assert misspelt_scheme(value) in ("aws-sm://", "aws-ssm://", "aws-sts://")


@pytest.mark.parametrize("value", ["s3://bucket/key", "https://aws.amazon.com", "arn:aws:iam::1:role/x"])
def test_unrelated_urls_are_not_references(value: str) -> None:
    assert misspelt_scheme(value) is None
    assert collect_references({"X": value}) == []


def test_own_identity_is_scrubbed_but_region_profile_and_endpoints_pass() -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ):
        assert not passes_to_child(name), name
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SSM"):
        assert passes_to_child(name), name


def test_an_identity_variable_can_itself_be_a_reference() -> None:
    refs = collect_references({"AWS_ACCESS_KEY_ID": f"aws-sts://{ROLE}#access-key-id"})
    assert [r.name for r in refs] == ["AWS_ACCESS_KEY_ID"]


def test_static_poll_and_its_older_names() -> None:
    from injector.settings.settings import build_settings

    assert build_settings({}, {"STRONGHOLD_STATIC_POLL": "1m"}).vault_poll == 60
    assert build_settings({}, {"STRONGHOLD_VAULT_POLL": "2m"}).vault_poll == 120
    assert build_settings({"vault_poll": "3s"}, {"STRONGHOLD_STATIC_POLL": "1m"}).vault_poll == 3


def test_temporary_identity_keys_are_fetched_again_before_they_expire() -> None:
    from injector.sources.aws.client import Keys
    from injector.sources.aws.identity import Identity

    now = [0.0]
    fetched: list[float] = []

    def fetch() -> Keys:
        fetched.append(now[0])
        return Keys("ASIA", "secret", "token", now[0] + 3600)

    identity = Identity(fetch, "test", clock=lambda: now[0])
    identity.keys()
    now[0] = 2600.0  # 1000 s left: more than RENEW_BEFORE (900), still good
    identity.keys()
    assert fetched == [0.0]
    now[0] = 2800.0  # 800 s left: fetched again before it expires
    identity.keys()
    assert fetched == [0.0, 2800.0]
    static = Identity(lambda: Keys("AKIA", "s", None, float("inf")), "static", clock=lambda: now[0])
    assert static.keys() is static.keys() and not static.temporary


def test_sts_answers_are_read_without_an_xml_library() -> None:
    from injector.errors import BrokenAnswerError
    from injector.sources.aws.client import credentials_of

    body = (
        b'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>\n'
        b"<Credentials>\n  <AccessKeyId>ASIAX</AccessKeyId>\n"
        b"  <SecretAccessKey>a&amp;b&lt;c&#x2F;d&#43;</SecretAccessKey>"
        b"<SessionToken>tok==</SessionToken><Expiration>2026-12-02T07:00:00Z</Expiration>\n</Credentials>"
        b"</AssumeRoleResult></AssumeRoleResponse>"
    )
    assert credentials_of(body, "t") == {
        "AccessKeyId": "ASIAX",
        "SecretAccessKey": "a&b<c/d+",
        "SessionToken": "tok==",
        "Expiration": "2026-12-02T07:00:00Z",
    }
    for broken in (b"<html/>", b"<Credentials><AccessKeyId>A</AccessKeyId></Credentials>", b"\xff\xfe"):
        with pytest.raises(BrokenAnswerError):
            credentials_of(broken, "t")


def test_shared_files_parse_crlf_comments_and_nested_blocks() -> None:
    from injector.sources.aws.identity import parse_ini

    text = (
        "# c\r\n[default]\r\nregion = eu-west-1\r\n"
        "[profile  dev]\r\ns3 =\r\n  max_concurrent_requests = 2\r\nregion=us-east-2 \r\n"
    )
    assert parse_ini(text, "f") == {
        "default": {"region": "eu-west-1"},
        "profile dev": {"s3": "", "region": "us-east-2"},
    }
    for bad in ("key = before any section", "[default]\nno equals sign here", "[unclosed\n"):
        with pytest.raises(ConfigError) as caught:
            parse_ini(bad, "the-file")
        assert "line" in caught.value.message and "section" not in caught.value.message.split(":", 1)[1]
