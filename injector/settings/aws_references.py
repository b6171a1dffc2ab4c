"""Parse aws-sm://, aws-ssm:// and aws-sts:// references (SPEC 12).  Pure: no I/O.

    aws-sm://<secret-id>[?version-stage=<s>|version-id=<id>][#<json-key>]
    aws-ssm://<name>[?version=<n>]
    aws-sts://<role-arn>[?ttl=15m&policy-arn=<arn>,<arn>&session-name=<name>]#<field>

Imported by references.py only when a value starts with `aws-`: a start
without AWS references never compiles these patterns.  Options a reference
carries beyond the common fields go in `Reference.extra` as (key, value) pairs.
"""

from __future__ import annotations

import re

from injector.settings.references import Reference, parse_duration, parse_query

SM_SCHEME = "aws-sm://"
SSM_SCHEME = "aws-ssm://"
STS_SCHEME = "aws-sts://"

_PARTITION = r"aws(?:-[a-z]+)*"
_REGION = r"[a-z]{2}(?:-[a-z]+)+-[0-9]"
_ACCOUNT = r"[0-9]{12}"
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
SECRET_ARN = re.compile(rf"arn:({_PARTITION}):secretsmanager:({_REGION}):{_ACCOUNT}:secret:[A-Za-z0-9/_+=.@-]{{1,512}}")
_PARAMETER_NAME = re.compile(r"/?[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")
PARAMETER_ARN = re.compile(rf"arn:({_PARTITION}):ssm:({_REGION}):{_ACCOUNT}:parameter/[A-Za-z0-9_./-]+")
_ROLE_ARN = re.compile(rf"arn:{_PARTITION}:iam::{_ACCOUNT}:role/[A-Za-z0-9+=,.@_/-]{{1,512}}")
_POLICY_ARN = re.compile(rf"arn:{_PARTITION}:iam::(?:aws|{_ACCOUNT}):policy/[A-Za-z0-9+=,.@_/-]{{1,512}}")
_SESSION_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{2,64}")
_JSON_KEY = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
_VERSION_ID = re.compile(r"[A-Za-z0-9-]{32,64}")
_VERSION_STAGE = re.compile(r"[A-Za-z0-9_+=.@-]{1,256}")
STS_FIELDS = ("access-key-id", "secret-access-key", "session-token", "expiration")
STS_MIN_TTL = 900  # AssumeRole's floor: DurationSeconds below 15 minutes is refused by STS
STS_MAX_TTL = 43200  # and its ceiling (a role's MaxSessionDuration may be lower)
DEFAULT_SESSION_NAME = "stronghold-init"


def region_of(reference: Reference) -> str | None:
    """The region an ARN names (it wins over AWS_REGION), or None."""
    for pattern in (SECRET_ARN, PARAMETER_ARN):
        match = pattern.fullmatch(reference.secret)
        if match:
            return match.group(2)
    return None


def parse_aws(name: str, value: str) -> Reference | None:
    """The reference `value` declares, None if it has none of the AWS schemes; ValueError if bad."""
    if value.startswith(SM_SCHEME):
        return _parse_sm(name, value[len(SM_SCHEME) :])
    if value.startswith(SSM_SCHEME):
        return _parse_ssm(name, value[len(SSM_SCHEME) :])
    if value.startswith(STS_SCHEME):
        return _parse_sts(name, value[len(STS_SCHEME) :])
    return None


def _parse_sm(name: str, body: str) -> Reference:
    rest, hashmark, key = body.partition("#")
    if hashmark and not _JSON_KEY.fullmatch(key):
        raise ValueError("the #json-key is empty, too long or holds a control character")
    secret_id, _, query = rest.partition("?")
    if not secret_id:
        raise ValueError("empty secret id: write aws-sm://<name or ARN>")
    if secret_id.startswith("arn:"):
        if not SECRET_ARN.fullmatch(secret_id):
            raise ValueError(
                "not a Secrets Manager secret ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)"
            )
    elif not _SECRET_NAME.fullmatch(secret_id):
        raise ValueError("a secret name may hold only A-Z a-z 0-9 / _ + = . @ - (at most 512)")
    items = parse_query(query, ("version-stage", "version-id"))
    if len(items) > 1:
        raise ValueError("give version-stage or version-id, not both")
    if "version-id" in items and not _VERSION_ID.fullmatch(items["version-id"]):
        raise ValueError("bad version-id")
    if "version-stage" in items and not _VERSION_STAGE.fullmatch(items["version-stage"]):
        raise ValueError("bad version-stage")
    return Reference(
        name=name, secret=secret_id, scheme="aws-sm", field=key if hashmark else None, extra=tuple(items.items())
    )


def _parse_ssm(name: str, body: str) -> Reference:
    if "#" in body:
        raise ValueError("aws-ssm:// references take no #fragment")
    parameter, _, query = body.partition("?")
    if not parameter:
        raise ValueError("empty parameter name: write aws-ssm:///<path> or aws-ssm://<name>")
    if parameter.startswith("arn:"):
        if not PARAMETER_ARN.fullmatch(parameter):
            raise ValueError("not an SSM parameter ARN (arn:aws:ssm:<region>:<account>:parameter/<name>)")
    elif len(parameter) > 2048 or not _PARAMETER_NAME.fullmatch(parameter):
        raise ValueError("a parameter name may hold only A-Z a-z 0-9 _ . - and / between levels")
    items = parse_query(query, ("version",))
    if "version" in items and not (items["version"].isascii() and items["version"].isdigit()):
        raise ValueError("version must be a number")
    return Reference(name=name, secret=parameter, scheme="aws-ssm", extra=tuple(items.items()))


def _parse_sts(name: str, body: str) -> Reference:
    rest, hashmark, field_name = body.partition("#")
    if not hashmark or field_name not in STS_FIELDS:
        raise ValueError(f"an aws-sts:// reference needs #<field>, one of {', '.join(STS_FIELDS)}")
    role, _, query = rest.partition("?")
    if not _ROLE_ARN.fullmatch(role):
        raise ValueError("not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    items = parse_query(query, ("ttl", "policy-arn", "session-name"))
    ttl = parse_duration(items["ttl"]) if "ttl" in items else STS_MIN_TTL
    if not STS_MIN_TTL <= ttl <= STS_MAX_TTL:
        raise ValueError("ttl must be between 15m and 12h (what STS AssumeRole grants)")
    policies: tuple[str, ...] = ()
    if "policy-arn" in items:
        policies = tuple(items["policy-arn"].split(","))
        if len(policies) > 10 or not all(_POLICY_ARN.fullmatch(p) for p in policies):
            raise ValueError("policy-arn takes at most 10 managed policy ARNs (arn:aws:iam::<account>:policy/<name>)")
    session_name = items.get("session-name", DEFAULT_SESSION_NAME)
    if not _SESSION_NAME.fullmatch(session_name):
        raise ValueError("session-name must be 2-64 of A-Z a-z 0-9 + = , . @ _ -")
    return Reference(
        name=name,
        secret=role,
        scopes=policies,
        ttl=ttl,
        scheme="aws-sts",
        field=field_name,
        extra=(("session-name", session_name),),
    )
